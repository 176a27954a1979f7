"""Synthetic datasets on disk: many sequences rendered (in parallel) into a `layout` folder, atomically.

`render_dataset` draws the sequences' seeds, speeds and camera heights and writes frames, splits, meta.yaml.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from sa4depth.data import layout
from sa4depth.data.synthetic.scenes import SCENES
from sa4depth.data.synthetic.sequences import (
    KITTI_INTRINSICS,
    SequenceSpec,
    _check_spec,
    intrinsics_matrix,
    iter_frames,
)
from sa4depth.data.synthetic.trajectories import BASE_SPEED, CAMERA_HEIGHT_RANGE, WORLD_VERSION
from sa4depth.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _write_sequence(root: Path, name: str, spec: SequenceSpec, options: dict, on_frame=None) -> dict:
    """Render one sequence into ``root/sequences/name`` and return its meta.yaml entry."""
    seq_dir = layout.sequence_dir(root, name)
    poses = []
    for i, image, depth, pose in iter_frames(spec, **options):
        layout.write_image(seq_dir / "images" / f"{layout.frame_name(i)}.png", image)
        layout.write_depth(seq_dir / "depth" / f"{layout.frame_name(i)}.npz", depth)
        poses.append(pose)
        if on_frame is not None:
            on_frame()
    layout.write_poses(seq_dir / "poses.txt", np.stack(poses))
    layout.write_cam(
        seq_dir / "cam.txt", intrinsics_matrix(options["height"], options["width"], options["intrinsics"])
    )
    T = np.stack(poses)
    steps = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=-1)
    R_rel = np.swapaxes(T[:-1, :3, :3], 1, 2) @ T[1:, :3, :3]
    turns = np.degrees(np.arccos(np.clip((np.trace(R_rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)))
    return {
        "name": name,
        "seed": int(spec.seed),
        "frames": int(spec.frames),
        # Exact floats (YAML keeps repr precision): render_sequence(**these) reproduces the sequence.
        "speed_factor": float(spec.speed),
        "speed_m_per_frame": round(spec.speed_m_per_frame(options["base_speed"]), 6),
        "mean_translation_m_per_frame": round(float(steps.mean()), 6),
        # How much the motion varies within the sequence (world version 2 varies speed and heading).
        "translation_range_m_per_frame": [round(float(steps.min()), 4), round(float(steps.max()), 4)],
        "rotation_deg_per_frame": {
            "median": round(float(np.median(turns)), 4),
            "max": round(float(turns.max()), 4),
        },
        "camera_height_m": spec.resolved_height(),
    }


def _write_sequence_job(args) -> dict:
    return _write_sequence(*args)


def _render_specs(
    out,
    specs: list[tuple[str, str, SequenceSpec]],
    options: dict,
    meta: dict,
    progress: bool,
    workers: int,
    overwrite: bool,
) -> Path:
    """Render ``(name, split, spec)`` triples into a temporary folder beside ``out``, then move it there."""
    out = Path(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise InputError(
            out, "output folder already exists and is not empty (pass overwrite=True to replace it)"
        )
    # Locked while in use, so the next run can tell a killed run's leftover from a live one and delete it.
    with layout.staging_folder(out) as tmp:
        entries = _render_all(tmp, specs, options, progress, workers)
        for split in layout.SPLITS:
            items = [(name, i) for name, s, spec in specs if s == split for i in range(1, spec.frames - 1)]
            layout.write_split(tmp / "splits" / f"{split}.txt", items)
        split_of = {name: s for name, s, _ in specs}
        meta = {**meta, "sequences": [{**e, "split": split_of[e["name"]]} for e in entries]}
        import yaml

        layout.atomic_write_text(tmp / "meta.yaml", yaml.safe_dump(meta, sort_keys=False))
        layout.replace_folder(tmp, out)
    log.info("wrote %d synthetic sequences to %s", len(specs), out)
    return out


def _render_all(tmp: Path, specs, options: dict, progress: bool, workers: int) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(spec.frames for _, _, spec in specs)
    columns = (
        TextColumn("rendering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("render", total=total)
        if workers <= 1:
            return [
                _write_sequence(tmp, name, spec, options, on_frame=lambda: bar.advance(task))
                for name, _, spec in specs
            ]
        import multiprocessing

        entries = {}
        context = multiprocessing.get_context("spawn")  # no fork: the parent may run threads (rich, torch)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            jobs = {
                pool.submit(_write_sequence_job, (tmp, name, spec, options)): name for name, _, spec in specs
            }
            for job in as_completed(jobs):
                entry = job.result()
                entries[entry["name"]] = entry
                bar.advance(task, entry["frames"])
        return [entries[name] for name, _, _ in specs]


def _split_counts(n: int, split) -> tuple[int, int, int]:
    if len(split) != 3:
        raise ValueError(f"split must give (train, val, test), got {split!r}")
    if all(isinstance(x, (int, np.integer)) for x in split):
        counts = tuple(int(x) for x in split)
        if sum(counts) != n or min(counts) < 0:
            raise ValueError(f"split counts {counts} must be >= 0 and sum to sequences={n}")
        return counts
    fractions = np.asarray(split, dtype=np.float64)
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {split!r}")
    fractions = fractions / fractions.sum()
    # Round half up; a split with a positive fraction gets at least one sequence while train keeps one.
    val, test = (max(int(math.floor(f * n + 0.5)), int(f > 0)) for f in fractions[1:])
    val = min(val, max(n - 1, 0)) if fractions[0] > 0 else min(val, n)
    test = min(test, max(n - 1 - val, 0)) if fractions[0] > 0 else min(test, n - val)
    return n - val - test, val, test


def _stratified_speeds(rng: np.random.Generator, n: int, speed_range) -> np.ndarray:
    """Log-uniform speed factors, one per stratum of the range, in random order."""
    lo, hi = (float(x) for x in speed_range)
    if not 0 < lo <= hi:
        raise ValueError(f"speed_range must satisfy 0 < low <= high, got {speed_range!r}")
    u = (rng.permutation(n) + rng.random(n)) / n
    return lo * (hi / lo) ** u


def _dataset_meta(scene, seed, height, width, intrinsics, supersample, base_speed, **extra) -> dict:
    return {
        "generator": "sa4depth.data.synthetic",
        "format_version": FORMAT_VERSION,
        "world_version": WORLD_VERSION,
        "scene": scene,
        "seed": int(seed),
        "height": int(height),
        "width": int(width),
        "intrinsics_normalised": [float(x) for x in intrinsics],
        "supersample": int(supersample),
        "base_speed_m_per_frame": float(BASE_SPEED[scene] if base_speed is None else base_speed),
        "sky_depth": "0 = unknown (sky is infinitely far; mask it in any ground-truth warp)",
        "world_frame": "x right, y down, z forward; ground plane y = 0",
        **extra,
    }


def render_dataset(
    out: str | os.PathLike,
    scene: str = "driving",
    sequences: int = 20,
    frames: int = 100,
    height: int = 192,
    width: int = 640,
    seed: int = 0,
    split: Sequence[float] | Sequence[int] = (0.8, 0.1, 0.1),
    speed_range: tuple[float, float] = (0.5, 2.0),
    progress: bool = True,
    workers: int = 1,
    camera_height_range: tuple[float, float] | None = None,
    intrinsics: Sequence[float] = KITTI_INTRINSICS,
    supersample: int = 3,
    base_speed: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Render a synthetic dataset in the `sa4depth.data.layout` format.

    Sequences ``<scene>_000, <scene>_001, ...`` get independent seeds, log-uniform speed factors (one
    per stratum of ``speed_range``, shuffled) and uniform camera heights. The first sequences form the
    train split, then val, then test; split files list every frame with a previous and a next frame.
    Frames are written into a temporary folder beside ``out`` that is renamed at the end (one left by a
    killed run is deleted on the next).

    Args:
        out: dataset root to create (must not exist or be empty, unless ``overwrite``).
        scene: "driving" or "indoor".
        sequences: how many sequences.
        frames: frames per sequence (>= 3).
        height: image height in pixels.
        width: image width in pixels.
        seed: master seed; the same arguments give byte-identical files.
        split: ``(train, val, test)`` fractions of the sequences (rounded; every split with a positive
            fraction gets at least one sequence when there are enough), or counts (ints summing to
            ``sequences``).
        speed_range: range of per-sequence speed factors on `BASE_SPEED`.
        progress: show a rich progress bar.
        workers: processes rendering sequences in parallel (results do not depend on it).
        camera_height_range: metres; default `CAMERA_HEIGHT_RANGE[scene]`.
        intrinsics: normalised ``(fx/W, fy/H, cx/W, cy/H)``.
        supersample: sub-pixel rays per axis at geometric edges (1 = off).
        base_speed: metres per frame at speed factor 1 (default `BASE_SPEED[scene]`).
        overwrite: replace an existing ``out``.

    Returns:
        ``out`` as a Path.
    """
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
    if sequences < 1:
        raise ValueError(f"sequences must be >= 1, got {sequences}")
    counts = _split_counts(sequences, split)
    rng = np.random.default_rng(seed)
    speeds = _stratified_speeds(rng, sequences, speed_range).tolist()
    lo, hi = camera_height_range or CAMERA_HEIGHT_RANGE[scene]
    heights = rng.uniform(lo, hi, sequences).tolist()
    names = [f"{scene}_{i:03d}" for i in range(sequences)]
    splits = [s for s, c in zip(layout.SPLITS, counts, strict=True) for _ in range(c)]
    specs = [
        (names[i], splits[i], SequenceSpec(scene, _sequence_seed(seed, i), frames, speeds[i], heights[i]))
        for i in range(sequences)
    ]
    for _, _, spec in specs:
        _check_spec(spec)
    options = dict(
        height=height,
        width=width,
        intrinsics=tuple(intrinsics),
        supersample=supersample,
        base_speed=base_speed,
    )
    meta = _dataset_meta(
        scene,
        seed,
        height,
        width,
        intrinsics,
        supersample,
        base_speed,
        speed_range=[float(x) for x in speed_range],
    )
    return _render_specs(out, specs, options, meta, progress, workers, overwrite)


def _sequence_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
