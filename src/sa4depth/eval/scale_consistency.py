"""Scale consistency of a monocular model: across sequences, within a sequence, and between pose and depth.

Implements the "Scale consistency" measures of docs/method.md; every std here is the population std (ddof=0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from sa4depth.eval.depth_metrics import to_numpy


def scale_consistency(per_frame: Mapping[str, Sequence[float]]) -> dict:
    """Seq Scale Std and within-sequence coefficient of variation of per-frame median scales.

    With ``s_ki = median(gt) / median(pred)`` for frame i of sequence k (the ``"scale"`` that
    `sa4depth.eval.depth_metrics.compute_depth_metrics` returns, or
    `DepthMetricAccumulator.scales_by_sequence`), and ``m_k = mean_i s_ki``:

    * ``seq_scale_std = std_k(m_k) / mean_k(m_k)``: how much the predicted scale differs from one
      sequence to another (the paper's "Seq Scale Std", 0 for a perfectly consistent model);
    * ``within_seq_cv = mean_k(std_i(s_ki) / m_k)``: how much it wanders inside one sequence.

    All stds are population stds (ddof=0): with 13 sequences a sample std would be 4% larger.

    Args:
        per_frame: sequence name -> per-frame scale ratios (list, numpy or torch; at least one each).

    Returns:
        dict with ``seq_scale_std``, ``within_seq_cv``, ``seq_means`` (name -> m_k), ``seq_cv``
        (name -> std/mean), ``num_sequences`` and ``num_frames``.

    Example:
        >>> r = scale_consistency({"a": [1.0, 1.0], "b": [3.0, 3.0]})
        >>> r["seq_scale_std"], r["within_seq_cv"]
        (0.5, 0.0)
    """
    if not per_frame:
        raise ValueError("scale_consistency needs at least one sequence")
    seq_means: dict[str, float] = {}
    seq_cv: dict[str, float] = {}
    num_frames = 0
    for name, scales in per_frame.items():
        s = to_numpy(scales).reshape(-1)
        if s.size == 0:
            raise ValueError(f"sequence {name!r} has no scale ratios")
        num_frames += s.size
        seq_means[name] = float(s.mean())
        seq_cv[name] = float(s.std() / s.mean())
    means = np.array(list(seq_means.values()))
    return {
        "seq_scale_std": float(means.std() / means.mean()),
        "within_seq_cv": float(np.mean(list(seq_cv.values()))),
        "seq_means": seq_means,
        "seq_cv": seq_cv,
        "num_sequences": len(seq_means),
        "num_frames": num_frames,
    }


def _translations(t) -> np.ndarray:
    """``(N, 3)`` translations from vectors ``(N, 3)`` or matrices ``(N, 4, 4)`` / ``(N, 3, 4)``."""
    arr = to_numpy(t)
    if arr.ndim >= 2 and arr.shape[-2:] in ((4, 4), (3, 4)):
        arr = arr[..., :3, 3]
    if arr.shape[-1] != 3:
        raise ValueError(f"expected translations (N, 3) or poses (N, 4, 4), got {arr.shape}")
    return arr.reshape(-1, 3)


def pose_depth_scale_ratio(t_gt, t_pred, s_depth) -> np.ndarray:
    """Per frame pair, ``(|t_gt| / |t_pred|) / s_depth``: 1 when the pose and depth networks share one scale.

    ``|t_gt| / |t_pred|`` is the factor that makes the predicted translation metric; ``s_depth =
    median(gt) / median(pred)`` (the target frame's depth scale) is the factor that makes the predicted
    depth metric. A ratio above 1 means the pose network's scene is smaller than the depth network's.

    Args:
        t_gt: GT relative translations ``(N, 3)`` (or relative poses ``(N, 4, 4)``) in metres.
        t_pred: predicted relative translations (or poses) of the same pairs, same direction convention.
        s_depth: depth scale per pair ``(N,)`` or one number.

    Returns:
        ``(N,)`` ratios; inf or NaN where ``|t_pred|`` is 0 (`pose_depth_ratio_summary` drops those).

    Example:
        >>> pose_depth_scale_ratio([[0.0, 0.0, 1.0]], [[0.0, 0.0, 0.5]], 2.0)
        array([1.])
    """
    norm_gt = np.linalg.norm(_translations(t_gt), axis=-1)
    norm_pred = np.linalg.norm(_translations(t_pred), axis=-1)
    if norm_gt.shape != norm_pred.shape:
        raise ValueError(f"t_gt has {norm_gt.size} pairs but t_pred has {norm_pred.size}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return norm_gt / norm_pred / to_numpy(s_depth)


def pose_depth_ratio_summary(ratios) -> dict[str, float]:
    """Mean, median, population std and mean |log ratio| of pose-depth scale ratios.

    Non-finite or non-positive ratios (a zero predicted or GT translation) are dropped and counted.

    Returns:
        dict with ``mean``, ``median``, ``std`` (ddof=0), ``mean_abs_log`` (0 when every ratio is 1;
        symmetric in over- and under-estimation), ``count`` and ``n_dropped``.

    Example:
        >>> pose_depth_ratio_summary([2.0, 0.5])["mean_abs_log"] == math.log(2.0)
        True
    """
    r = to_numpy(ratios).reshape(-1)
    keep = np.isfinite(r) & (r > 0)
    r_kept = r[keep]
    if r_kept.size == 0:
        stats = dict.fromkeys(("mean", "median", "std", "mean_abs_log"), math.nan)
    else:
        stats = {
            "mean": float(r_kept.mean()),
            "median": float(np.median(r_kept)),
            "std": float(r_kept.std()),
            "mean_abs_log": float(np.abs(np.log(r_kept)).mean()),
        }
    return {**stats, "count": int(r_kept.size), "n_dropped": int(r.size - r_kept.size)}
