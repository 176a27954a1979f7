"""The fixed synthetic benchmark set: 18 driving sequences whose held-out test speeds no train one has.

`benchmark_specs` lists its sequences; `benchmark_set` renders them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sa4depth.data.synthetic.sequences import KITTI_INTRINSICS, SequenceSpec
from sa4depth.data.synthetic.trajectories import CAMERA_HEIGHT_RANGE
from sa4depth.data.synthetic.writer import _dataset_meta, _render_specs, _sequence_seed

#: The fixed benchmark set: (split, count, frames, speed factors).
#: Train speeds are the centres of 12 log-uniform strata of 0.5x-2x, so no held-out speed is a train speed.
BENCHMARK_SPLITS = (
    ("train", 12, 60, tuple(round(0.5 * 4 ** ((i + 0.5) / 12), 4) for i in range(12))),
    ("val", 2, 40, (0.7, 1.4)),
    ("test", 4, 40, (0.5, 0.8, 1.25, 2.0)),
)
BENCHMARK_SEED = 2026


def benchmark_specs(scene: str = "driving") -> list[tuple[str, str, SequenceSpec]]:
    """The ``(name, split, spec)`` of every benchmark sequence (see `benchmark_set`)."""
    rng = np.random.default_rng(BENCHMARK_SEED)
    specs = []
    lo, hi = CAMERA_HEIGHT_RANGE[scene]
    for split, count, frames, speeds in BENCHMARK_SPLITS:
        order = rng.permutation(count)
        for j in range(count):
            spec = SequenceSpec(
                scene,
                _sequence_seed(BENCHMARK_SEED, len(specs)),
                frames,
                speeds[order[j]],
                float(rng.uniform(lo, hi)),
            )
            specs.append((f"{split}_{j:02d}", split, spec))
    return specs


def benchmark_set(
    out: str | os.PathLike,
    height: int = 96,
    width: int = 320,
    scene: str = "driving",
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> Path:
    """Render the fixed benchmark set: 12 train x 60 frames, 2 val x 40, 4 held-out test x 40.

    Every sequence has its own street, camera height and speed: train 0.53x-1.89x (log-spaced), val 0.7x
    and 1.4x, test 0.5x, 0.8x, 1.25x and 2x the base speed (none equal to a train speed; 0.5x and 2x lie
    just outside the train range), so per-sequence scale consistency can be measured on the test split.
    Seeds are fixed (`BENCHMARK_SEED`). 960 frames: under a minute at 96 x 320 with 2 workers.
    """
    specs = benchmark_specs(scene)
    options = dict(height=height, width=width, intrinsics=KITTI_INTRINSICS, supersample=3, base_speed=None)
    meta = _dataset_meta(scene, BENCHMARK_SEED, height, width, KITTI_INTRINSICS, 3, None, benchmark=True)
    return _render_specs(out, specs, options, meta, progress, workers, overwrite)
