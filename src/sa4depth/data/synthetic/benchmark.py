"""The fixed synthetic benchmark set: 30 driving sequences whose held-out test speeds no train one has.

`benchmark_specs` lists its sequences; `benchmark_set` renders them; `ensure_benchmark` reuses or renders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from sa4depth.data.synthetic.sequences import KITTI_INTRINSICS, SequenceSpec
from sa4depth.data.synthetic.trajectories import BASE_SPEED, CAMERA_HEIGHT_RANGE, WORLD_VERSION
from sa4depth.data.synthetic.writer import _dataset_meta, _render_specs, _sequence_seed
from sa4depth.errors import InputError

#: The fixed benchmark set: (split, count, frames, speed factors).
#: Train speeds (each a sequence's mean; the speed varies within it) are the centres of 24 log-uniform
#: strata of 0.5x-2x, so no held-out mean speed is a train one. 24 streets since world version 2 (12
#: before): fewer streets to tell apart by their look.
BENCHMARK_SPLITS = (
    ("train", 24, 60, tuple(round(0.5 * 4 ** ((i + 0.5) / 24), 4) for i in range(24))),
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
    """Render the fixed benchmark set: 24 train x 60 frames, 2 val x 40, 4 held-out test x 40.

    Every sequence has its own street, camera height and mean speed: train 0.51x-1.94x (log-spaced), val
    0.7x and 1.4x, test 0.5x, 0.8x, 1.25x and 2x the base speed (none equal to a train speed; 0.5x and 2x
    lie just outside the train range), so per-sequence scale consistency can be measured on the test
    split. Within a sequence the car speeds up, brakes and changes lanes (`trajectories`). Seeds are fixed
    (`BENCHMARK_SEED`). 1680 frames.
    """
    specs = benchmark_specs(scene)
    options = dict(height=height, width=width, intrinsics=KITTI_INTRINSICS, supersample=3, base_speed=None)
    meta = _dataset_meta(scene, BENCHMARK_SEED, height, width, KITTI_INTRINSICS, 3, None, benchmark=True)
    return _render_specs(out, specs, options, meta, progress, workers, overwrite)


def ensure_benchmark(
    root: str | os.PathLike, height: int, width: int, workers: int = 2, progress: bool = True
) -> Path:
    """The benchmark set in ``root``: rendered there if missing, refused if rendered by another world.

    A folder from another `WORLD_VERSION`, base speed or size would silently train on other data, so it is a
    one-line `InputError` naming its meta.yaml (delete the folder to re-render).
    """
    root = Path(root)
    if not (root / "splits").is_dir():
        return benchmark_set(root, height=height, width=width, workers=workers, progress=progress)
    meta_file = root / "meta.yaml"
    try:
        meta = yaml.safe_load(meta_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(
            meta_file, f"cannot read the benchmark's meta.yaml ({e.__class__.__name__})"
        ) from None
    if not isinstance(meta, dict):
        raise InputError(meta_file, f"the benchmark's meta.yaml holds a {type(meta).__name__}, not a mapping")
    # World version 1 wrote no version.
    found = (
        meta.get("world_version", 1),
        *(meta.get(k) for k in ("base_speed_m_per_frame", "height", "width")),
    )
    wanted = (WORLD_VERSION, BASE_SPEED["driving"], height, width)
    if found != wanted:
        describe = "world version {}, {} m/frame, {}x{}".format
        raise InputError(
            meta_file,
            f"rendered as {describe(*found)}, not {describe(*wanted)}: delete the folder to re-render",
        )
    return root
