"""Plots of a trained model and its runs: trajectories, per-sequence scale factors, training curves.

Each plot is a matplotlib figure on an Agg canvas (no display, no pyplot state) written atomically as PNG.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sa4depth.data.layout import atomic_write_bytes, read_poses
from sa4depth.errors import InputError
from sa4depth.eval.odometry import align_trajectory, integrate_relative_poses, plot_trajectory
from sa4depth.eval.scale_consistency import scale_consistency

SCALES_KEY = "scales_by_sequence"
"""Key of per-frame scale ratios (sequence -> list) in a metrics JSON file, when `evaluate` stores them."""


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, out_png: str | os.PathLike | None, dpi: float | None = None, tight: bool = True) -> bytes:
    """Render a matplotlib figure to PNG bytes and, when ``out_png`` is given, write them atomically.

    Args:
        fig: the figure.
        out_png: the file to write (temp file + rename: a killed run never leaves half a PNG), or None.
        dpi: resolution; None keeps the figure's.
        tight: crop to the drawn content (``bbox_inches="tight"``).

    Returns:
        The PNG bytes.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    data = buf.getvalue()
    if out_png is not None:
        atomic_write_bytes(out_png, data)
    return data


# ------------------------------------------------------------------------------------------ trajectories


def _poses(value) -> np.ndarray:
    if isinstance(value, str | os.PathLike):
        return read_poses(value)
    return np.asarray(value, dtype=np.float64)


def plot_trajectories(
    gt, pred, out_png: str | os.PathLike, alignment: str = "7dof", title: str = ""
) -> dict[str, float]:
    """Top view of a predicted trajectory aligned to the ground truth (`sa4depth.eval.odometry`).

    Args:
        gt: ground-truth ``(N, 4, 4)`` ``T_world_cam`` array or a KITTI ``poses.txt`` path.
        pred: predicted ``(N, 4, 4)`` ``T_world_cam`` array or ``poses.txt`` path, the same ``N`` poses.
        out_png: output PNG.
        alignment: see `sa4depth.eval.odometry.align_trajectory` ("7dof" for monocular predictions).
        title: figure title (the alignment scale is appended).

    Returns:
        ``{"scale": s, "ate": mean position error after alignment}``.
    """
    gt, pred = _poses(gt), _poses(pred)
    if len(gt) != len(pred):
        raise InputError("trajectory", f"{len(gt)} ground-truth poses but {len(pred)} predicted ones")
    gt0, aligned, info = align_trajectory(gt, pred, alignment)
    ate = float(np.linalg.norm(gt0[:, :3, 3] - aligned[:, :3, 3], axis=1).mean())
    label = f"{title}  " if title else ""
    plot_trajectory(
        gt0, aligned, out_png, title=f"{label}({alignment}, scale {info['scale']:.3g}, ATE {ate:.3g})"
    )
    return {"scale": float(info["scale"]), "ate": ate}


def sequence_trajectory(model, cfg, sequence: str | None = None, max_frames: int = 200, batch_size: int = 8):
    """GT and pose-network trajectories of one sequence of a folder dataset (``cfg.data``).

    The pose net's ``T_src_tgt`` for target i and source i+1 is ``T_{i+1}_i``; chaining them
    (`integrate_relative_poses`) gives ``T_world_cam`` up to the network's scale.

    Args:
        model: a `sa4depth.train.model.DepthPoseModel` (its pose net, through ``relative_pose``).
        cfg: the checkpoint's config (data root and training resolution).
        sequence: sequence name; default the first sequence of the test split that has poses.
        max_frames: use at most this many frames from the start.
        batch_size: frame pairs per forward pass of the pose net.

    Returns:
        ``(name, gt (N, 4, 4), pred (N, 4, 4))``.

    Raises:
        InputError: the dataset or the sequence (with poses) is not available.
    """
    import torch

    from sa4depth.data import layout
    from sa4depth.data.folder import SequenceFolder
    from sa4depth.data.transforms import resize_with_camera, to_tensor_images

    root = Path(cfg.data.root)
    if sequence is None:
        split = root / "splits" / f"{cfg.data.test_split}.txt"
        names = list(dict.fromkeys(name for name, _ in layout.read_split(split)))
        with_poses = [n for n in names if (layout.sequence_dir(root, n) / "poses.txt").is_file()]
        if not with_poses:
            raise InputError(split, "no test sequence has ground-truth poses")
        sequence = with_poses[0]
    seq = SequenceFolder(layout.sequence_dir(root, sequence))
    if seq.T_world_cam is None:
        raise InputError(seq.path, "sequence has no poses.txt")
    n = min(len(seq.frames), max_frames)
    if n < 2:
        raise InputError(seq.path, "need at least two frames for a trajectory")
    frames = [
        resize_with_camera(layout.read_image(p), seq.K, cfg.data.height, cfg.data.width)[0]
        for p in seq.frames[:n]
    ]
    images = to_tensor_images(frames)
    rel = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, n - 1, batch_size):
            stop = min(start + batch_size, n - 1)
            rel.append(model.relative_pose(images[start:stop], images[start + 1 : stop + 1], 1).matrix())
    T_next_prev = torch.cat(rel).double().numpy()
    return sequence, seq.T_world_cam[:n], integrate_relative_poses(T_next_prev)


# ------------------------------------------------------------------------------------------ scale plots


def _load_json(value) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    path = Path(value)
    if not path.is_file():
        raise InputError(path, "metrics file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(path, "metrics file is not a JSON object")
    return data


def has_scale_data(results: Mapping) -> bool:
    """Whether an `evaluate` result holds per-frame scales or per-sequence scale statistics."""
    return bool(results.get(SCALES_KEY)) or bool(results.get("scale_consistency", {}).get("seq_means"))


def plot_scale_factors(results, out_png: str | os.PathLike | None = None, title: str = "") -> bytes:
    """The scale-consistency picture: per-frame ``s = median(gt) / median(pred)``, one colour per sequence.

    With per-frame scales (``results["scales_by_sequence"]``), every frame is a dot and each sequence's
    mean a line; a scale-consistent model has all sequences at one height. With only the per-sequence
    summary of `sa4depth.eval.scale_consistency.scale_consistency` (``seq_means``, ``seq_cv``), each
    sequence is its mean with a bar of +-1 std. The dashed line is the mean over sequences.

    Args:
        results: an `evaluate` result dict or the path of its JSON file.
        out_png: where to write the PNG (atomically); None to only return it.
        title: figure title; the Seq Scale Std and within-sequence CV are appended.

    Returns:
        The PNG bytes.
    """
    results = _load_json(results)
    if not has_scale_data(results):
        raise InputError(
            "metrics", "no per-sequence scales (scales_by_sequence or scale_consistency.seq_means) in results"
        )
    fig = _figure(8, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    per_frame = results.get(SCALES_KEY)
    if per_frame:
        names = list(per_frame)
        colors = colormaps["tab20"](np.linspace(0, 1, max(len(names), 2)))
        stats = scale_consistency(per_frame)
        start = 0
        for name, color in zip(names, colors, strict=False):
            s = np.asarray(per_frame[name], dtype=np.float64)
            x = np.arange(start, start + len(s))
            ax.plot(x, s, ".", color=color, markersize=3, label=name)
            ax.hlines(s.mean(), x[0] - 0.4, x[-1] + 0.4, color=color, linewidth=2)
            start += len(s) + max(1, len(s) // 10)
        ax.set_xlabel("frame (sequences side by side)")
        means = list(stats["seq_means"].values())
    else:
        stats = results["scale_consistency"]
        names = list(stats["seq_means"])
        colors = colormaps["tab20"](np.linspace(0, 1, max(len(names), 2)))
        means = [stats["seq_means"][n] for n in names]
        stds = [stats["seq_cv"].get(n, 0.0) * m for n, m in zip(names, means, strict=True)]
        for i, (name, m, sd, color) in enumerate(zip(names, means, stds, colors, strict=False)):
            ax.errorbar([i], [m], yerr=[sd], fmt="o", color=color, capsize=3, label=name)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("sequence")
    ax.axhline(float(np.mean(means)), color="0.3", linestyle="--", linewidth=1)
    ax.set_ylabel("scale  median(gt) / median(pred)")
    ax.grid(True, linewidth=0.3)
    if len(names) <= 30:
        ncol = max(1, math.ceil(len(names) / 15))
        ax.legend(fontsize=7, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=2)
    summary = f"Seq Scale Std {stats['seq_scale_std']:.3f}, CV in seq {stats['within_seq_cv']:.3f}"
    ax.set_title(f"{title}  {summary}" if title else summary, fontsize=10)
    return save_png(fig, out_png)


# -------------------------------------------------------------------------------------- training curves


def event_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Folders under ``<run>/tensorboard`` (or ``run_dir`` itself) that hold TensorBoard event files."""
    run_dir = Path(run_dir)
    base = run_dir / "tensorboard" if (run_dir / "tensorboard").is_dir() else run_dir
    return sorted({p.parent for p in base.rglob("events.out.tfevents.*")})


def load_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar logged to TensorBoard in a run: tag -> ``(steps, values)``, sorted by step.

    Resumed runs write several event files; their points are merged, the last value per step kept.

    Raises:
        InputError: the run has no event files.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    dirs = event_dirs(run_dir)
    if not dirs:
        raise InputError(run_dir, "no TensorBoard event files (expected under <run>/tensorboard/)")
    merged: dict[str, dict[int, float]] = {}
    for d in dirs:
        acc = EventAccumulator(str(d), size_guidance={SCALARS: 0})  # 0 = keep every point
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                merged.setdefault(tag, {})[int(event.step)] = float(event.value)
    return {
        tag: (np.array(sorted(points)), np.array([points[s] for s in sorted(points)]))
        for tag, points in merged.items()
    }


def _tag_order(tag: str) -> tuple[int, str]:
    rank = {"train/loss": 0, "val/abs_rel": 1, "val/a1": 2, "val/pose_depth_scale_ratio": 3}
    group = 4 if tag.startswith("val/") else 5 if tag.startswith("train/") else 6
    return rank.get(tag, group), tag


Scalars = dict[str, tuple[np.ndarray, np.ndarray]]
"""One run's scalars as `load_scalars` returns them: tag -> ``(steps, values)``."""
BOOKKEEPING_TAGS = {"epoch", "train/skipped_steps"}
"""Scalars that count rather than measure; left out of the default curves."""


def constant_tags(runs: Mapping[str, Scalars]) -> dict[str, float]:
    """Tags whose every logged value, over all ``runs``, is one number (at least two points in all), with it.

    Such a series (``val/count``, ``val/n_skipped``) is a flat line: a panel that shows nothing.
    """
    constant = {}
    for tag in {t for scalars in runs.values() for t in scalars}:
        values = np.concatenate([scalars[tag][1] for scalars in runs.values() if tag in scalars])
        if len(values) >= 2 and np.all(values == values[0]):
            constant[tag] = float(values[0])
    return constant


def default_tags(runs: Mapping[str, Scalars], max_panels: int = 9) -> list[str]:
    """Choose the tags `plot_scalars` draws by default.

    Each logged tag once, training loss and validation metrics first, without `BOOKKEEPING_TAGS` and
    `constant_tags`.

    Args:
        runs: run name -> its scalars (`load_scalars`).
        max_panels: the most tags to return.

    Returns:
        The tags in drawing order.
    """
    skip = BOOKKEEPING_TAGS | set(constant_tags(runs))
    tags = {t for scalars in runs.values() for t in scalars} - skip
    return sorted(tags, key=_tag_order)[:max_panels]


def plot_scalars(
    runs: Mapping[str, Scalars],
    out_png: str | os.PathLike | None = None,
    tags: Sequence[str] | None = None,
    max_panels: int = 9,
) -> bytes:
    """Plot one panel per scalar tag with every run's curve overlaid.

    Each run has one colour in every panel, and two or more runs get a legend; a curve of 20 or more
    points is drawn faint with a smoothed one on top.

    Args:
        runs: run name -> its scalars (`load_scalars`).
        out_png: where to write the PNG (atomically); None to only return it.
        tags: tags to draw; default `default_tags`.
        max_panels: the most panels drawn when ``tags`` is None (ignored otherwise).

    Returns:
        The PNG bytes.

    Raises:
        InputError: a requested tag no run logged, or nothing to draw.
    """
    return save_png(_curves_figure(runs, tags, max_panels), out_png)


def _curves_figure(runs: Mapping[str, Scalars], tags: Sequence[str] | None, max_panels: int):
    """The figure of `plot_scalars`: one axes per tag (titled with it), one line per run (labelled)."""
    from matplotlib import colormaps

    logged = {t for scalars in runs.values() for t in scalars}
    tags = default_tags(runs, max_panels) if tags is None else list(tags)
    missing = [t for t in tags if t not in logged]
    if missing:
        raise InputError("scalars", f"no scalar {missing[0]!r} logged (have: {', '.join(sorted(logged))})")
    if not tags:
        raise InputError("scalars", "no scalars logged that change (constant ones are left out)")
    cols = min(3, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig = _figure(4.0 * cols, 2.8 * rows)
    colors = colormaps["tab10"](np.arange(len(runs)) % 10)
    for i, tag in enumerate(tags):
        ax = fig.add_subplot(rows, cols, i + 1)
        for (name, scalars), color in zip(runs.items(), colors, strict=True):
            if tag not in scalars:
                continue
            steps, values = scalars[tag]
            smooth = len(values) >= 20  # then the raw curve is drawn faint under a smoothed one
            style = "-" if len(steps) > 1 else "o"
            raw = ax.plot(steps, values, style, color=color, linewidth=0.8, alpha=0.4 if smooth else 1.0)
            line = ax.plot(steps, _ema(values, 0.9), color=color, linewidth=1.5) if smooth else raw
            line[0].set_label(name)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3)
        if len(runs) > 1 and i == 0:  # the same colours in every panel: one legend says which is which
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_training_curves(
    run_dir: str | os.PathLike | Mapping[str, str | os.PathLike],
    out_png: str | os.PathLike | None = None,
    tags: Sequence[str] | None = None,
    max_panels: int = 9,
) -> bytes:
    """One panel per logged scalar (loss, validation metrics, ...) from the runs' TensorBoard files.

    Args:
        run_dir: a training run folder (with ``tensorboard/``) or a folder of event files; or run name ->
            such a folder, to overlay several runs (`plot_scalars`).
        out_png: where to write the PNG (atomically); None to only return it.
        tags: scalar tags to draw; default `default_tags` (the training loss and validation metrics first,
            bookkeeping and constant series left out, at most ``max_panels``).
        max_panels: the most panels drawn when ``tags`` is None (ignored otherwise).

    Returns:
        The PNG bytes.

    Raises:
        InputError: a run has no event files, a requested tag is not logged, or nothing is left to draw.
    """
    folders = run_dir if isinstance(run_dir, Mapping) else {Path(run_dir).name: run_dir}
    runs = {name: load_scalars(folder) for name, folder in folders.items()}
    try:
        return plot_scalars(runs, out_png, tags, max_panels)
    except InputError as e:  # blame the run folder the scalars came from
        where = run_dir if not isinstance(run_dir, Mapping) else ", ".join(map(str, folders.values()))
        raise InputError(where, e.problem) from None


def _ema(values: np.ndarray, decay: float) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out = np.empty_like(values, dtype=np.float64)
    acc = 0.0
    for i, v in enumerate(values):
        acc = decay * acc + (1 - decay) * v
        out[i] = acc / (1 - decay ** (i + 1))
    return out
