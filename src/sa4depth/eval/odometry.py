"""Visual-odometry evaluation: KITTI devkit drift (t_err %, r_err deg/100 m), ATE, RPE, 5-frame snippet ATE.

Trajectories are ``T_world_cam``; consecutive relative poses are ``T_{i+1}_i`` (the pose net's ``T_src_tgt``).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

from sa4depth.data.layout import atomic_write_bytes
from sa4depth.eval.depth_metrics import to_numpy

KITTI_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)
"""Sub-sequence lengths in metres of the KITTI odometry devkit."""

ALIGNMENTS = ("none", "scale", "7dof", "6dof")

ANGLES = ("ours", "devkit")
"""Rotation-angle formulas of `rotation_angle`: "ours" (atan2, the default) or "devkit" (arccos)."""


def as_pose_matrices(poses, name: str = "poses") -> np.ndarray:
    """``(N, 4, 4)`` float64 from ``(N, 4, 4)``, ``(N, 3, 4)``, KITTI rows ``(N, 12)``, a `Pose` or torch."""
    arr = to_numpy(poses)
    if arr.ndim == 2 and arr.shape[1] == 12:
        arr = arr.reshape(-1, 3, 4)
    if arr.ndim == 3 and arr.shape[1:] == (3, 4):
        arr = np.concatenate([arr, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (len(arr), 1, 4))], axis=1)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be (N, 4, 4), (N, 3, 4) or (N, 12), got {arr.shape}")
    return arr


def _inv(T: np.ndarray) -> np.ndarray:
    """Inverse of homogeneous transforms ``(..., 4, 4)``.

    A general inverse, as the devkit's ``Matrix::inv``: KITTI's GT rotations are printed to 7 digits and
    are not exactly orthonormal, so the transpose would leave ~1e-7 residuals that accumulate along a
    trajectory and that the arccos of the angle turns into ~1e-2 deg.
    """
    return np.linalg.inv(T)


def rotation_angle(R: np.ndarray, angle: str = "ours") -> np.ndarray:
    """Rotation angles in radians of ``(..., 3, 3)`` matrices, by one of two formulas (`ANGLES`).

    With ``c = (trace(R) - 1) / 2``:

    * ``"devkit"``: ``arccos(clip(c, -1, 1))``, the KITTI devkit's ``rotationError``
      (evaluate_odometry.cpp, which rounds ``c`` to float32) and kitti-odom-eval's ``rotation_error``
      (float64, as here). Use it to reproduce published tables.
    * ``"ours"``: ``atan2(s, c)`` with ``s = |vee(R - R^T)| / 2``.

    For an exactly orthonormal ``R`` both are the rotation angle. They differ on the matrices the metrics
    actually see. ``arccos`` has an infinite slope at 1: an error ``e`` in ``c`` moves a small angle
    ``t`` to ``sqrt(t^2 - 2 e)`` (0 once ``c`` is clipped at 1). KITTI's GT rotations are printed to 7
    digits (``|R^T R - I|`` up to 2e-7), which puts errors of that size into ``c``; the devkit's float32
    adds ~6e-8. The sine from the antisymmetric part only moves by about as much, so ``atan2`` stays
    at the angle of the nearest true rotation. Measured on kitti-odom-eval's example trajectories
    (09 and 10, 7dof): "devkit" differs from "ours" by at most 1.4e-5 deg/100 m in ``r_err`` and by up
    to 1.2% in ``rpe_rot`` (one-frame errors of ~6e-4 rad), while with the GT rotations projected onto
    SO(3) both formulas give the "ours" numbers to 6 digits.

    Example:
        >>> R = np.array([[1.0, -1e-5, 0.0], [1e-5, 1.0, 0.0], [0.0, 0.0, 1.0]])  # 1e-5 rad, rounded
        >>> round(float(rotation_angle(R)), 12), float(rotation_angle(R, "devkit"))
        (1e-05, 0.0)
    """
    if angle not in ANGLES:
        raise ValueError(f"unknown angle {angle!r}; expected one of {ANGLES}")
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    if angle == "devkit":
        return np.arccos(np.clip(cos, -1.0, 1.0))
    skew = R - np.swapaxes(R, -1, -2)
    sin = np.linalg.norm(np.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], -1), axis=-1) / 2.0
    return np.arctan2(sin, cos)


def integrate_relative_poses(T_next_prev, T_world_first=None) -> np.ndarray:
    """Chain consecutive relative poses into a trajectory.

    ``T_world_{i+1} = T_world_i @ inv(T_{i+1}_i)``.

    Args:
        T_next_prev: ``(N, 4, 4)`` relative poses ``T_{i+1}_i`` (maps frame-i points into frame i+1;
            the pose network's ``T_src_tgt`` with target i and source i+1).
        T_world_first: ``(4, 4)`` pose of frame 0; identity by default.

    Returns:
        ``(N + 1, 4, 4)`` camera-to-world poses ``T_world_cam``.

    Example:
        >>> step = np.eye(4); step[2, 3] = -1.0  # frame i sits 1 m behind frame i+1
        >>> integrate_relative_poses(np.stack([step, step]))[:, 2, 3]
        array([0., 1., 2.])
    """
    rel = as_pose_matrices(T_next_prev, "T_next_prev")
    out = np.empty((len(rel) + 1, 4, 4))
    out[0] = np.eye(4) if T_world_first is None else to_numpy(T_world_first)
    T_prev_next = _inv(rel)
    for i in range(len(rel)):
        out[i + 1] = out[i] @ T_prev_next[i]
    return out


def relative_poses(T_world_cam) -> np.ndarray:
    """The inverse of `integrate_relative_poses`: ``T_{i+1}_i = inv(T_world_{i+1}) @ T_world_i``.

    Args:
        T_world_cam: ``(N, 4, 4)`` (or ``(N, 3, 4)`` / KITTI rows) trajectory.

    Returns:
        ``(N - 1, 4, 4)`` relative poses ``T_next_prev``.
    """
    T = as_pose_matrices(T_world_cam, "T_world_cam")
    return _inv(T[1:]) @ T[:-1]


def umeyama_alignment(src, dst, mode: str = "sim3") -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``s, R, t`` with ``dst ~ s * R @ src + t`` (Umeyama, IEEE TPAMI 13(4), 1991).

    Centre both point sets, SVD of the cross-covariance ``Sigma = (dst - mu_d)^T (src - mu_s) / N =
    U D V^T``, ``R = U S V^T`` with ``S = diag(1, 1, det(U) det(V))`` (a reflection is never returned),
    ``s = trace(D S) / var(src)`` (eq. 42, "sim3"; 1 for "se3") and ``t = mu_d - s R mu_s``.
    Mode "scale" is ``R = I, t = 0, s = sum(dst . src) / sum(src . src)`` without centring (the scale
    alignment of monocular odometry, whose trajectories share their first position, the origin).

    Args:
        src: ``(N, 3)`` points to move (e.g. predicted positions).
        dst: ``(N, 3)`` target points (e.g. GT positions).
        mode: "sim3" (7 DoF), "se3" (6 DoF) or "scale" (1 DoF).

    Returns:
        ``(s, R (3, 3), t (3,))``.

    Example:
        >>> src = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
        >>> s, R, t = umeyama_alignment(src, 2 * src + 1)
        >>> round(s, 9), np.allclose(R, np.eye(3)), t
        (2.0, True, array([1., 1., 1.]))
    """
    src, dst = to_numpy(src), to_numpy(dst)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) == 0:
        raise ValueError(f"need two (N, 3) point sets of equal size, got {src.shape} and {dst.shape}")
    if mode == "scale":
        denom = float(np.sum(src * src))
        if denom == 0.0:
            raise ValueError("scale alignment of points that are all at the origin")
        return float(np.sum(dst * src)) / denom, np.eye(3), np.zeros(3)
    if mode not in ("sim3", "se3"):
        raise ValueError(f"unknown alignment mode {mode!r}; expected 'sim3', 'se3' or 'scale'")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    U, D, Vt = np.linalg.svd(xd.T @ xs / len(src))
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    if mode == "sim3":
        var_s = float(np.mean(np.sum(xs**2, axis=1)))
        if var_s == 0.0:
            raise ValueError("sim3 alignment of a point set without spread (all points equal)")
        s = float(np.sum(D * np.diag(S))) / var_s
    else:
        s = 1.0
    return s, R, mu_d - s * R @ mu_s


def apply_alignment(T_world_cam, scale: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Move a trajectory by a similarity: positions ``s R p + t``, orientations ``R @ R_i``."""
    T = as_pose_matrices(T_world_cam).copy()
    T[:, :3, 3] = scale * T[:, :3, 3] @ R.T + t
    T[:, :3, :3] = R @ T[:, :3, :3]
    return T


def align_trajectory(gt, pred, alignment: str = "7dof") -> tuple[np.ndarray, np.ndarray, dict]:
    """Express both trajectories relative to their first frame, then align ``pred`` to ``gt``.

    Args:
        gt: ``(N, 4, 4)`` GT ``T_world_cam``.
        pred: ``(N, 4, 4)`` predicted ``T_world_cam`` (e.g. from `integrate_relative_poses`).
        alignment: "none"; "scale" (`umeyama_alignment` mode "scale" on positions); "7dof" (sim3);
            "6dof" (se3).

    Returns:
        ``(gt0, pred_aligned, info)``: both ``(N, 4, 4)`` with ``gt0[0] = I``, and info with
        ``scale``, ``R``, ``t`` of the alignment.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {alignment!r}; expected one of {ALIGNMENTS}")
    gt, pred = as_pose_matrices(gt, "gt"), as_pose_matrices(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt has {len(gt)} poses but pred has {len(pred)}")
    # Re-anchoring at frame 0 leaves the devkit errors unchanged (they use only inv(T_a) @ T_b) and makes
    # the un-centred scale alignment and the unaligned ATE meaningful for any GT origin.
    gt, pred = _inv(gt[0]) @ gt, _inv(pred[0]) @ pred
    if alignment == "none":
        s, R, t = 1.0, np.eye(3), np.zeros(3)
    else:
        mode = {"scale": "scale", "7dof": "sim3", "6dof": "se3"}[alignment]
        s, R, t = umeyama_alignment(pred[:, :3, 3], gt[:, :3, 3], mode)
    return gt, apply_alignment(pred, s, R, t), {"scale": s, "R": R, "t": t}


def _frame_positions(frames, n_gt: int, n_pred: int) -> np.ndarray:
    """``(n_gt,)`` index into the prediction of each GT frame, -1 where the frame has no prediction."""
    frames = np.arange(n_gt) if frames is None else np.asarray(frames)
    if frames.ndim != 1 or len(frames) != n_pred:
        raise ValueError(f"{n_pred} predicted poses but {frames.size} frame indices")
    if frames.dtype.kind not in "iu" or (len(frames) and (frames[0] < 0 or frames[-1] >= n_gt)):
        raise ValueError(f"frame indices must be integers in [0, {n_gt}), got {frames[:3]}...")
    if np.any(np.diff(frames) <= 0):
        raise ValueError("frame indices must be strictly increasing")
    position = np.full(n_gt, -1)
    position[frames] = np.arange(n_pred)
    return position


def kitti_segment_errors(
    gt, pred, lengths=KITTI_LENGTHS, step: int = 10, *, frames=None, angle: str = "ours"
) -> dict[str, np.ndarray]:
    """Per-segment errors of the KITTI odometry devkit (``calcSequenceErrors`` of evaluate_odometry.cpp).

    For every first frame ``f = 0, step, 2 step, ...`` of the GT and every length ``L``: the last frame is
    the first ``l`` with ``dist[l] > dist[f] + L``, ``dist`` being the cumulative GT path length (segments
    running past the end are skipped); ``E = inv(inv(P_f) P_l) @ (inv(G_f) G_l)``; ``t_err = |t(E)| / L``
    and ``r_err = rotation_angle(E) / L``. With ``frames`` (predictions for some GT frames only), ``dist``
    is still the whole GT's and a segment whose first or last frame has no prediction is skipped, as
    kitti-odom-eval's ``calc_sequence_errors`` does: segment starts stay at the GT's frames 0, 10, 20, ...
    Computed in float64 where the devkit uses float32, so a segment end can differ when a distance ties
    a length to ~1e-7 m.

    Args:
        gt: ``(M, 4, 4)`` GT ``T_world_cam`` of consecutive frames 0 .. M-1.
        pred: ``(N, 4, 4)`` predicted ``T_world_cam``, already aligned if wanted (``N = M`` without
            ``frames``).
        lengths: segment lengths in metres.
        step: frame step between first frames (10 = one second in KITTI).
        frames: ``(N,)`` strictly increasing GT frame indices of the predictions; None = all M frames.
        angle: "ours" or "devkit" (see `rotation_angle`).

    Returns:
        dict of ``(S,)`` arrays in the devkit's order (first frame, then length): ``first_frame``,
        ``last_frame`` (GT frame indices), ``length`` (m), ``t_err`` (fraction of the length), ``r_err``
        (rad/m).
    """
    gt, pred = as_pose_matrices(gt, "gt"), as_pose_matrices(pred, "pred")
    if frames is None and gt.shape != pred.shape:
        raise ValueError(f"gt has {len(gt)} poses but pred has {len(pred)}")
    position = _frame_positions(frames, len(gt), len(pred))
    lengths = np.asarray(lengths, dtype=np.float64)
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1))])
    first = np.repeat(np.arange(0, len(gt), step), len(lengths))
    length = np.tile(lengths, len(first) // len(lengths))
    last = np.searchsorted(dist, dist[first] + length, side="right")  # first index with dist > target
    ok = last < len(gt)
    ok[ok] = (position[first[ok]] >= 0) & (position[last[ok]] >= 0)
    first, last, length = first[ok], last[ok], length[ok]
    delta_gt = _inv(gt[first]) @ gt[last]
    delta_pred = _inv(pred[position[first]]) @ pred[position[last]]
    err = _inv(delta_pred) @ delta_gt
    return {
        "first_frame": first,
        "last_frame": last,
        "length": length,
        "t_err": np.linalg.norm(err[:, :3, 3], axis=1) / length,
        "r_err": rotation_angle(err[:, :3, :3], angle) / length,
    }


def kitti_odometry_metrics(
    gt,
    pred,
    alignment: str = "7dof",
    lengths=KITTI_LENGTHS,
    step: int = 10,
    *,
    frames=None,
    angle: str = "ours",
) -> dict[str, float | int | str | dict]:
    """KITTI devkit drift, whole-trajectory ATE and 1-frame RPE of a predicted trajectory.

    These are the numbers of Huangying-Zhan/kitti-odom-eval (``kitti_odometry.py``): both trajectories
    are re-anchored at the first predicted frame, aligned on the predicted frames' positions, then
    scored. With ``angle="devkit"`` they match it to rounding (pinned in tests/eval/test_odometry.py
    against its published example numbers); the default ``angle="ours"`` changes only the rotation
    errors (``r_err``, ``rpe_rot``).

    Args:
        gt: ``(M, 4, 4)`` GT ``T_world_cam`` (e.g. ``read_poses("09.txt")``), every frame.
        pred: ``(N, 4, 4)`` predicted ``T_world_cam``, e.g. ``integrate_relative_poses(T_next_prev)``;
            ``N = M`` unless ``frames`` is given.
        alignment: see `align_trajectory`; say which one you report (monocular methods usually use
            "scale" or "7dof"; "none" only makes sense for metric poses).
        lengths: segment lengths in metres (see `kitti_segment_errors`).
        step: frames between segment starts (see `kitti_segment_errors`).
        frames: ``(N,)`` strictly increasing GT frame indices of the predictions (a KITTI file with a
            leading frame index); None = all M frames.
        angle: "ours" or "devkit" (see `rotation_angle`).

    Returns:
        dict with ``t_err`` (%) and ``r_err`` (deg/100 m): the devkit's mean over ALL segments (every
        first frame and length; ``t_err_by_length`` / ``r_err_by_length`` give the per-length means);
        ``ate`` (m): RMSE of aligned positions, ``sqrt(mean |p_gt - p_pred|^2)``; ``rpe_trans`` (m) and
        ``rpe_rot`` (deg): mean over pairs of consecutive frames (both predicted) of the error of the
        relative pose ``inv(inv(G_i) G_{i+1}) @ inv(P_i) P_{i+1}``; ``rpe_pairs``; ``n_segments``;
        ``frames`` (predicted frames used); ``alignment``; ``angle``; ``align_scale``. ``t_err``/``r_err``
        are NaN without any segment (GT path shorter than the shortest length), ``rpe_*`` without a pair.
    """
    gt = as_pose_matrices(gt, "gt")
    pred = as_pose_matrices(pred, "pred")
    if frames is None and gt.shape != pred.shape:
        raise ValueError(f"gt has {len(gt)} poses but pred has {len(pred)}")
    position = _frame_positions(frames, len(gt), len(pred))
    matched = np.flatnonzero(position >= 0)
    gt0, pred_al, info = align_trajectory(gt[matched], pred, alignment)
    seg = kitti_segment_errors(gt, pred_al, lengths, step, frames=matched, angle=angle)
    n_seg = len(seg["length"])
    to_deg_100m = 180.0 / math.pi * 100.0
    by_len_t, by_len_r = {}, {}
    for L in np.unique(seg["length"]):
        sel = seg["length"] == L
        by_len_t[int(L)] = float(seg["t_err"][sel].mean() * 100.0)
        by_len_r[int(L)] = float(seg["r_err"][sel].mean() * to_deg_100m)
    pair = np.flatnonzero(np.diff(matched) == 1)  # k such that frames k and k + 1 are consecutive
    rpe = _inv(_inv(gt0[pair]) @ gt0[pair + 1]) @ (_inv(pred_al[pair]) @ pred_al[pair + 1])
    has_pairs = len(pair) > 0
    return {
        "t_err": float(seg["t_err"].mean() * 100.0) if n_seg else math.nan,
        "r_err": float(seg["r_err"].mean() * to_deg_100m) if n_seg else math.nan,
        "t_err_by_length": by_len_t,
        "r_err_by_length": by_len_r,
        "ate": float(np.sqrt(np.mean(np.sum((gt0[:, :3, 3] - pred_al[:, :3, 3]) ** 2, axis=1)))),
        "rpe_trans": float(np.linalg.norm(rpe[:, :3, 3], axis=1).mean()) if has_pairs else math.nan,
        "rpe_rot": float(np.degrees(rotation_angle(rpe[:, :3, :3], angle)).mean()) if has_pairs else math.nan,
        "rpe_pairs": len(pair),
        "n_segments": n_seg,
        "frames": len(matched),
        "alignment": alignment,
        "angle": angle,
        "align_scale": info["scale"],
    }


def _relative_pair(gt_rel, pred_rel) -> tuple[np.ndarray, np.ndarray]:
    gt_rel, pred_rel = as_pose_matrices(gt_rel, "gt_rel"), as_pose_matrices(pred_rel, "pred_rel")
    if gt_rel.shape != pred_rel.shape or len(gt_rel) == 0:
        raise ValueError(f"need equally many (>= 1) poses: {len(gt_rel)} GT, {len(pred_rel)} predicted")
    return gt_rel, pred_rel


def _snippet_positions(steps: np.ndarray) -> np.ndarray:
    """Positions ``(len(steps) + 1, 3)`` of the chain ``steps[0] @ steps[1] @ ...`` starting at the origin."""
    pos = np.zeros((len(steps) + 1, 3))
    T = np.eye(4)
    for k, step in enumerate(steps):
        T = T @ step
        pos[k + 1] = T[:3, 3]
    return pos


def snippet_error(gt_rel, pred_rel, *, error: str = "monodepth2", monodepth2_chain: bool = False) -> float:
    """Scale-aligned position error of ONE snippet of consecutive relative poses (Monodepth2 / SfMLearner).

    The ``K`` relative poses are chained into positions ``p_k`` of frame ``k`` in frame 0 (``p_0 = 0``): the
    translation of ``T_0_k = inv(T_1_0) @ inv(T_2_1) @ ... @ inv(T_k_{k-1})``. The prediction gets the
    least-squares scale ``s = sum(p_gt . p_pred) / sum(p_pred . p_pred)`` (no rotation, no translation:
    both snippets start at the origin, which is all Monodepth2's offset step does); a prediction without
    motion gets ``s = 0``. With ``n = K + 1`` positions the error is

    * ``error="monodepth2"`` (default, comparable with published numbers):
      ``sqrt(sum_k |s p_pred_k - p_gt_k|^2) / n``; note the division by n outside the root: not an RMSE;
    * ``error="rmse"``: ``sqrt(sum_k |s p_pred_k - p_gt_k|^2 / n)``.

    ``monodepth2_chain=True`` chains the poses as Monodepth2's ``dump_xyz`` does,
    ``T_1_0 @ T_2_1 @ ...`` (the inverses, in the reverse of the true order); on KITTI its numbers differ
    slightly from the true chain's.

    Args:
        gt_rel: ``(K, 4, 4)`` GT relative poses ``T_{i+1}_i`` of consecutive frames.
        pred_rel: ``(K, 4, 4)`` predicted ``T_{i+1}_i`` (the pose network's ``T_src_tgt``, tgt i, src i+1).
        error: ``"monodepth2"`` or ``"rmse"``, as above.
        monodepth2_chain: chain the poses as Monodepth2's ``dump_xyz`` does, as above.

    Example:
        >>> step = np.eye(4); step[2, 3] = -1.0
        >>> snippet_error(np.stack([step] * 4), np.stack([0.5 * step + 0.5 * np.eye(4)] * 4))
        0.0
    """
    if error not in ("monodepth2", "rmse"):
        raise ValueError(f"unknown error {error!r}; expected 'monodepth2' or 'rmse'")
    gt_rel, pred_rel = _relative_pair(gt_rel, pred_rel)
    # True chain: right-multiply by T_{j}_{j+1} = inv(T_{j+1}_j); Monodepth2: by T_{j+1}_j itself.
    p_gt = _snippet_positions(gt_rel if monodepth2_chain else _inv(gt_rel))
    p_pred = _snippet_positions(pred_rel if monodepth2_chain else _inv(pred_rel))
    denom = np.sum(p_pred**2)
    scale = np.sum(p_gt * p_pred) / denom if denom > 0 else 0.0
    sq = float(np.sum((scale * p_pred - p_gt) ** 2))
    n = len(p_gt)
    return math.sqrt(sq) / n if error == "monodepth2" else math.sqrt(sq / n)


def snippet_ate(
    gt_rel,
    pred_rel,
    snippet_length: int = 5,
    *,
    error: str = "monodepth2",
    monodepth2_chain: bool = False,
) -> dict[str, float | int | np.ndarray]:
    """5-frame snippet ATE of a whole sequence, Monodepth2's ``evaluate_pose.py`` protocol.

    Every frame starts a snippet of ``snippet_length`` frames (``snippet_length - 1`` relative poses),
    scored by `snippet_error`; as in Monodepth2, the last ``snippet_length - 2`` snippets run into the
    end of the sequence and are shorter. Mean and population std (ddof=0) over snippets.

    Args:
        gt_rel: ``(M, 4, 4)`` GT relative poses ``T_{i+1}_i`` (``relative_poses(read_poses(...))``).
        pred_rel: ``(M, 4, 4)`` predicted ``T_{i+1}_i`` (the pose network's ``T_src_tgt``, tgt i, src i+1).
        snippet_length: frames per snippet (5 in Monodepth2).
        error: ``"monodepth2"`` or ``"rmse"`` (see `snippet_error`).
        monodepth2_chain: chain the poses as Monodepth2 does (see `snippet_error`).

    Returns:
        dict with ``mean``, ``std``, ``count`` and ``per_snippet`` ``(M,)``.
    """
    if snippet_length < 2:
        raise ValueError("snippet_length must be at least 2")
    gt_rel, pred_rel = _relative_pair(gt_rel, pred_rel)
    n = snippet_length - 1
    kwargs = {"error": error, "monodepth2_chain": monodepth2_chain}
    errors = np.array(
        [snippet_error(gt_rel[i : i + n], pred_rel[i : i + n], **kwargs) for i in range(len(gt_rel))]
    )
    return {
        "mean": float(errors.mean()),
        "std": float(errors.std()),
        "count": len(errors),
        "per_snippet": errors,
    }


def plot_trajectory(gt, pred, out_png: str | os.PathLike, title: str = "") -> None:
    """Top view (x right, z forward) of GT and predicted camera positions, written atomically as PNG.

    Args:
        gt: ``(N, 4, 4)`` ``T_world_cam`` or ``(N, 3)`` positions (None to plot only ``pred``).
        pred: same for the prediction (align it first, e.g. with `align_trajectory`).
        out_png: output path; its folder is created.
        title: figure title.
    """
    # The object API with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for poses, label, style in ((gt, "ground truth", "k-"), (pred, "prediction", "r-")):
        if poses is None:
            continue
        arr = to_numpy(poses)
        pos = arr[:, :3, 3] if arr.ndim == 3 else arr.reshape(-1, 3)
        ax.plot(pos[:, 0], pos[:, 2], style, linewidth=1.2, label=label)
        ax.plot(pos[:1, 0], pos[:1, 2], "o", color=style[0], markersize=4)
    ax.set_xlabel("x [m]")
    ax.set_ylabel("z [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(out_png, buf.getvalue())
