"""KITTI benchmark tools: export Eigen / improved ground truth, full-resolution depth evaluation, odometry.

Entry points of ``sa4depth kitti-export-gt``, ``evaluate-kitti`` (a checkpoint or saved maps:
`evaluate_kitti_depth`, `evaluate_depth_predictions`) and ``evaluate-odometry`` of a trajectory file
(`evaluate_trajectory_file`; a checkpoint's is `sa4depth.apps.odometry.evaluate_odometry`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.data import layout
from sa4depth.data.datamodule import collate
from sa4depth.data.kitti_calib import RawCalib, load_raw_calib
from sa4depth.data.kitti_odometry import KittiOdometryDataset
from sa4depth.data.kitti_raw import (
    gt_depth_candidates,
    load_gt_depth,
    read_kitti_split,
    resolve_split_file,
)
from sa4depth.data.transforms import resize_with_camera
from sa4depth.errors import InputError
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.odometry import (
    ALIGNMENTS,
    ANGLES,
    align_trajectory,
    as_pose_matrices,
    integrate_relative_poses,
    kitti_odometry_metrics,
    plot_trajectory,
    relative_poses,
    snippet_ate,
)
from sa4depth.eval.protocols import get_protocol
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.eval.scale_consistency import scale_consistency
from sa4depth.geometry import Camera
from sa4depth.inference import load_depth_net

logger = logging.getLogger(__name__)

GT_SOURCES = ("velodyne", "proj_depth", "improved")


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


# --- Ground-truth depth export ----------------------------------------------------------------------------


def export_gt_depths(
    root: str | os.PathLike,
    split_file: str | os.PathLike,
    out_npz: str | os.PathLike,
    source: str = "velodyne",
) -> int:
    """Write the ground-truth depth maps of a split, at raw resolution, to one ``.npz`` (atomically).

    Sources:

    * ``"velodyne"``: the raw scan projected exactly as the Eigen protocol does (`project_velodyne`
      with ``projection="eigen"``), which reproduces Monodepth2's ``splits/eigen/gt_depths.npz``
      (697 maps from ``splits/eigen/test_files.txt``); each entry uses its own side's camera.
    * ``"proj_depth"``: pre-projected raw LiDAR (``proj_depth/velodyne*``, see `gt_depth_candidates`).
    * ``"improved"``: the KITTI depth benchmark's accumulated maps (``proj_depth/groundtruth``; 652
      frames of ``splits/eigen_benchmark/test_files.txt``).

    The file holds ``depth_00000``, ``depth_00001``, ... (float32 ``(H, W)`` metres, 0 = unknown) in
    split order, ``lines`` (the entries) and ``source``; `load_gt_depths` reads it back.

    Returns:
        The number of maps written.

    Raises:
        InputError: bad split file, missing calibration, or a frame without ground truth (naming the
            split line and the expected file).
    """
    if source not in GT_SOURCES:
        raise InputError("source", f"must be one of {GT_SOURCES}, got {source!r}")
    root = Path(root)
    split_path = resolve_split_file(root, split_file)
    items = read_kitti_split(split_path)
    calibs: dict[str, RawCalib] = {}
    arrays: dict[str, np.ndarray] = {}
    for i, item in enumerate(items):
        if item.date not in calibs:
            calibs[item.date] = load_raw_calib(root / item.date)
        depth = load_gt_depth(root, item, calibs[item.date], source, projection="eigen")
        if depth is None:
            expected = gt_depth_candidates(root, item, source)[0]
            raise InputError(
                split_path,
                f"line {item.line}: no {source} ground truth for {item.drive} frame {item.frame} "
                f"(expected e.g. {expected})",
            )
        arrays[f"depth_{i:05d}"] = depth.astype(np.float32)
    arrays["lines"] = np.array([f"{it.drive} {it.frame} {it.side}" for it in items])
    arrays["source"] = np.array(source)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    layout.atomic_write_bytes(out_npz, buf.getvalue())
    logger.info("wrote %d %s ground-truth maps to %s", len(items), source, out_npz)
    return len(items)


def load_gt_depths(path: str | os.PathLike, allow_pickle: bool = False) -> list[np.ndarray]:
    """Read the maps of `export_gt_depths` (or Monodepth2's ``gt_depths.npz``, key ``data``).

    Monodepth2 stores maps of different sizes as a pickled object array; reading that needs
    ``allow_pickle=True``, which executes code from the file: only for files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "ground-truth file not found")
    try:
        loaded = np.load(path, allow_pickle=allow_pickle)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise InputError(path, "a .npy array, not an .npz archive of ground-truth maps")
        with loaded as z:
            keys = sorted(k for k in z.files if k.startswith("depth_"))
            if keys:
                return [z[k] for k in keys]
            if "data" in z.files:
                return [np.asarray(d, dtype=np.float32) for d in z["data"]]
    except ValueError as e:
        if "pickle" in str(e):
            raise InputError(
                path,
                "maps stored as pickled objects (Monodepth2 format); pass allow_pickle=True "
                "if you trust the file",
            ) from None
        raise InputError(path, f"cannot read ground truth ({e})") from None
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read ground truth ({e.__class__.__name__})") from None
    raise InputError(path, "no depth maps (expected depth_00000, ... or Monodepth2's 'data')")


# --- Full-resolution depth evaluation ---------------------------------------------------------------------


def evaluate_depth_full_resolution(
    predict: Callable[[torch.Tensor], torch.Tensor],
    root: str | os.PathLike,
    split_file: str | os.PathLike,
    gt_depths: list[np.ndarray],
    height: int,
    width: int,
    protocol: str = "kitti_eigen",
    batch_size: int = 8,
) -> dict:
    """Depth metrics of a predictor against raw-resolution ground truth (the benchmark protocol).

    Each target image is resized to ``height x width`` as in training (`resize_with_camera`), predicted,
    and scored by `DepthMetricAccumulator` against its full-size map: the prediction's
    ``protocol.resized_quantity`` is resized to the map (for the KITTI protocols its disparity, inverted
    after, exactly as Monodepth2's ``evaluate_depth.py``), then crop, depth range and median scaling per
    ``protocol``.

    Args:
        predict: images ``(B, 3, height, width)`` in [0, 1] -> depth ``(B, 1, height, width)``.
        root: KITTI raw root.
        split_file: the split the maps were exported from (same order).
        gt_depths: maps from `load_gt_depths`.
        height: network input height in pixels (the images are resized to it).
        width: network input width in pixels.
        protocol: a `sa4depth.eval.protocols` name.
        batch_size: images per prediction call.

    Returns:
        dict with ``depth`` (metric means and scale statistics), ``scale_consistency`` (per drive),
        ``protocol`` and ``count``.
    """
    root = Path(root)
    split_path = resolve_split_file(root, split_file)
    items = read_kitti_split(split_path)
    if len(items) != len(gt_depths):
        raise InputError(split_path, f"{len(items)} entries but {len(gt_depths)} ground-truth maps")
    accumulator = DepthMetricAccumulator(get_protocol(protocol))
    calibs: dict[str, RawCalib] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = []
        for item in chunk:
            if item.date not in calibs:
                calibs[item.date] = load_raw_calib(root / item.date)
            stem = root / item.drive / f"image_0{item.cam}" / "data" / f"{item.frame:010d}"
            path = next(
                (stem.with_suffix(s) for s in (".png", ".jpg") if stem.with_suffix(s).is_file()), None
            )
            if path is None:
                raise InputError(split_path, f"line {item.line}: image {stem}.png not found")
            image = layout.read_image(path)
            images.append(resize_with_camera(image, calibs[item.date].K(item.cam), height, width)[0])
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            depth = predict(batch)
        for j, item in enumerate(chunk):
            accumulator.update(depth[j, 0], gt_depths[start + j], sequence=item.drive)
    return _depth_results(accumulator)


def _depth_results(accumulator: DepthMetricAccumulator) -> dict:
    """Collect the results dict of a filled depth-metric accumulator.

    Args:
        accumulator: the accumulator after every image was added with `DepthMetricAccumulator.update`.

    Returns:
        dict with ``protocol``, ``depth`` (`DepthMetricAccumulator.compute`), ``count`` and, when the
        images were given sequences, ``scale_consistency``.
    """
    results = {
        "protocol": accumulator.protocol.name,
        "depth": accumulator.compute(),
        "count": len(accumulator.per_image),
    }
    by_sequence = accumulator.scales_by_sequence()
    if by_sequence:
        results["scale_consistency"] = scale_consistency(by_sequence)
    return results


def evaluate_kitti_depth(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike,
    split_file: str | os.PathLike,
    gt_npz: str | os.PathLike,
    out_json: str | os.PathLike | None = None,
    protocol: str = "kitti_eigen",
    batch_size: int = 8,
    device: str | None = None,
) -> dict:
    """`evaluate_depth_full_resolution` of a checkpoint's depth network; optionally writes a JSON."""
    loaded = load_depth_net(checkpoint)
    cfg = loaded.cfg
    dev = _device(device)
    depth_net = loaded.depth_net.to(dev).eval()
    results = evaluate_depth_full_resolution(
        lambda x: depth_net.predict_depth(x.to(dev)).cpu(),
        root,
        split_file,
        load_gt_depths(gt_npz),
        cfg.data.height,
        cfg.data.width,
        protocol=protocol,
        batch_size=batch_size,
    )
    results["checkpoint"] = str(checkpoint)
    if out_json is not None:
        write_metrics_json(out_json, results)
    return results


# --- Saved depth predictions ------------------------------------------------------------------------------

PRED_KINDS = ("disparity", "depth")
"""What the maps of a predictions file hold (``--pred-kind``)."""


def read_depth_predictions(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` of predicted maps, e.g. the ``disps`` Monodepth2's ``evaluate_depth.py`` saves.

    Returns:
        ``(N, h, w)`` floats as stored.

    Raises:
        InputError: naming the file: missing or not a ``.npy`` array (pickled objects are refused), not
            three dimensions or not floats, or a map with NaN/Inf or a value <= 0 (naming the map).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        maps = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # numpy reads anything without its magic as a pickle
        reason = "not numbers in numpy.save format" if "pickle" in str(e) else str(e).splitlines()[0]
        raise InputError(path, f"cannot read as a .npy array ({reason})") from None
    if not isinstance(maps, np.ndarray):
        maps.close()
        raise InputError(path, "an .npz archive, not a .npy array of N maps")
    if maps.ndim != 3:
        raise InputError(path, f"expected N maps (N, h, w), got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        raise InputError(path, f"expected floats, got {maps.dtype}")
    bad = np.flatnonzero(~np.isfinite(maps).all(axis=(1, 2)))
    if bad.size:
        raise InputError(path, f"map {bad[0]}: NaN or Inf")
    bad = np.flatnonzero((maps <= 0).any(axis=(1, 2)))
    if bad.size:
        raise InputError(
            path, f"map {bad[0]}: values <= 0 (min {maps[bad[0]].min():g}); need depth or disparity > 0"
        )
    return maps


def evaluate_depth_predictions(
    predictions: str | os.PathLike,
    gt_npz: str | os.PathLike,
    out_json: str | os.PathLike | None = None,
    protocol: str = "kitti_eigen",
    pred_kind: str = "disparity",
) -> dict:
    """Score saved depth predictions against ground-truth maps, as Monodepth2's ``--ext_disp_to_eval``.

    Map ``i`` of ``predictions`` (`read_depth_predictions`, at the network's resolution) is scored against
    map ``i`` of ``gt_npz`` (`load_gt_depths`) by `DepthMetricAccumulator`: ``protocol.resized_quantity``
    is resized to the GT size (for the KITTI protocols the disparity, inverted after, exactly as Monodepth2),
    then crop, depth range and median scaling per ``protocol``.

    Args:
        predictions: ``.npy`` of ``(N, h, w)`` maps, in the order of the split the GT was exported from.
        gt_npz: N ground-truth maps from `export_gt_depths`.
        out_json: if given, the results are written there (atomically).
        protocol: a `sa4depth.eval.protocols` name.
        pred_kind: "disparity" (Monodepth2's saved ``disps``; any positive scale) or "depth".

    Returns:
        dict with ``depth`` (metric means and scale statistics), ``protocol``, ``count``, ``predictions``,
        ``gt`` and ``pred_kind``.

    Raises:
        InputError: a bad option, a malformed file (see `read_depth_predictions`, `load_gt_depths`), or a
            map count that differs from the GT's.
    """
    if pred_kind not in PRED_KINDS:
        raise InputError("pred_kind", f"must be one of {PRED_KINDS}, got {pred_kind!r}")
    accumulator = DepthMetricAccumulator(get_protocol(protocol))
    if out_json is not None:
        layout.check_output_file(out_json)
    maps = read_depth_predictions(predictions)
    gt_depths = load_gt_depths(gt_npz)
    if len(maps) != len(gt_depths):
        raise InputError(predictions, f"{len(maps)} maps but {gt_npz} has {len(gt_depths)} ground-truth maps")
    for pred, gt in zip(maps, gt_depths, strict=True):
        accumulator.update(pred, gt, disparity=pred_kind == "disparity")
    results = {
        **_depth_results(accumulator),
        "predictions": str(predictions),
        "gt": str(gt_npz),
        "pred_kind": pred_kind,
    }
    if out_json is not None:
        write_metrics_json(out_json, results)
    return results


# --- Visual odometry --------------------------------------------------------------------------------------


def odometry_report(
    gt_T_world_cam,
    pred_T_next_prev,
    out_dir: str | os.PathLike | None = None,
    sequence: str = "",
    alignment: str = "7dof",
    extra: dict | None = None,
    angle: str = "ours",
) -> dict:
    """Score consecutive relative poses against a ground-truth trajectory; optionally write the outputs.

    The relative poses are chained (`integrate_relative_poses`), aligned (``alignment``) and scored
    with the KITTI devkit drift (t_err %, r_err deg/100 m), ATE and RPE (`kitti_odometry_metrics`);
    the 5-frame snippet ATE (`snippet_ate`, Monodepth2 protocol) uses the relative poses directly.

    Args:
        gt_T_world_cam: ``(N, 4, 4)`` (or KITTI rows ``(N, 12)``) ground-truth poses.
        pred_T_next_prev: ``(N - 1, 4, 4)`` predicted ``T_{i+1}_i`` (the pose net's ``T_src_tgt`` with
            target i and source i + 1).
        out_dir: if given, writes ``odometry_<seq>.json``, ``trajectory_<seq>.png`` (aligned, top view)
            and ``poses_<seq>.txt`` (the predicted trajectory, KITTI format, frame 0 = identity).
        sequence: name used in file names and the report.
        alignment: "7dof", "6dof", "scale" or "none" (see `align_trajectory`).
        extra: more fields for the JSON (checkpoint, options).
        angle: rotation-angle formula, "ours" or "devkit" (see `sa4depth.eval.odometry.rotation_angle`).

    Returns:
        dict with ``sequence``, ``frames``, ``alignment``, ``kitti`` (the `kitti_odometry_metrics`
        dict) and ``ate_5frame`` (``mean``, ``std``, ``count``).
    """
    check_odometry_options(alignment, angle)
    gt = as_pose_matrices(gt_T_world_cam, "gt")
    pred_rel = as_pose_matrices(pred_T_next_prev, "pred_T_next_prev")
    if len(pred_rel) != len(gt) - 1:
        raise ValueError(f"{len(pred_rel)} relative poses for a {len(gt)}-frame ground truth")
    pred = integrate_relative_poses(pred_rel)
    snippets = snippet_ate(relative_poses(gt), pred_rel)
    report = {
        "sequence": sequence,
        "frames": len(gt),
        "alignment": alignment,
        "kitti": kitti_odometry_metrics(gt, pred, alignment, angle=angle),
        "ate_5frame": {k: snippets[k] for k in ("mean", "std", "count")},
        **(extra or {}),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        tag = sequence or "seq"
        gt0, pred_aligned, _ = align_trajectory(gt, pred, alignment)
        write_metrics_json(out_dir / f"odometry_{tag}.json", report)
        plot_trajectory(
            gt0, pred_aligned, out_dir / f"trajectory_{tag}.png", title=f"KITTI {tag} ({alignment})"
        )
        layout.write_poses(out_dir / f"poses_{tag}.txt", pred)
    return report


@torch.inference_mode()
def predict_relative_poses(
    model,
    dataset: KittiOdometryDataset,
    refine: bool = False,
    batch_size: int = 8,
    device: str | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """``T_{t+1}_t`` for each sample (target t, one source t + 1) of ``dataset``.

    Args:
        model: a `sa4depth.train.model.DepthPoseModel` (``pose_net``, ``depth_net``, ``refinement``).
        dataset: built with ``offsets=(1,)``.
        refine: refine each pose with ``model.refinement`` (SA4Depth's LM on learned features), using
            the depth network's prediction for the target frame.
        batch_size: image pairs per forward pass.
        device: torch device to run on (default: CUDA if available, else CPU).
        num_workers: DataLoader worker processes (0: load in the main process).

    Returns:
        ``(len(dataset), 4, 4)`` float64.
    """
    dev = _device(device)
    model = model.to(dev).eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers
    )
    out = []
    for batch in loader:
        images = batch["images"].to(dev)
        T = model.relative_pose(images[:, 0], images[:, 1], offset=1)
        if refine:
            height, width = images.shape[-2:]
            camera = Camera.from_K(batch["K"].to(dev), width, height)
            depth = model.depth_net.predict_depth(images[:, 0])
            (T,), _ = model.refinement(images, depth, camera, [T])
        out.append(T.matrix().to("cpu", torch.float64).numpy())
    return np.concatenate(out)


def check_odometry_options(alignment: str, angle: str) -> None:
    """Raise `InputError` unless ``alignment`` is one of `ALIGNMENTS` and ``angle`` one of `ANGLES`."""
    if alignment not in ALIGNMENTS:
        raise InputError("alignment", f"must be one of {ALIGNMENTS}, got {alignment!r}")
    if angle not in ANGLES:
        raise InputError("angle", f"must be one of {ANGLES}, got {angle!r}")


# --- Trajectory files -------------------------------------------------------------------------------------

ROTATION_TOLERANCE = 1e-3
"""Largest ``|R^T R - I|`` entry accepted in a pose file: lenient enough for poses printed to 4 decimals
(KITTI's own GT reaches 2e-7), strict enough to refuse scaled or sheared matrices."""


def read_kitti_trajectory(path: str | os.PathLike) -> tuple[np.ndarray | None, np.ndarray]:
    """Read a KITTI odometry pose file in either layout that kitti-odom-eval reads.

    * 12 numbers a line: the row-major 3x4 ``T_world_cam`` of frame 0, 1, 2, ... (the devkit's format;
      every frame present);
    * 13 numbers a line: a frame index, then the 12 numbers; frames may be missing (e.g. a method that
      starts at frame 2), indices must increase.

    Blank lines are skipped; one layout per file.

    Returns:
        ``(frames, poses)``: ``(N,)`` int64 frame indices, or None for the 12-number layout, and
        ``(N, 4, 4)`` float64 poses.

    Raises:
        InputError: naming the file and the line: not numbers, a wrong count, NaN/Inf, a frame index
            that is not a non-negative integer or does not increase, a rotation part that is not a
            rotation (``|R^T R - I|`` above `ROTATION_TOLERANCE`, or a reflection), or no pose at all.
    """
    path = Path(path)
    rows, line_numbers = [], []
    for line_no, values in layout.number_lines(path):
        if len(values) not in (12, 13):
            raise InputError(
                path,
                f"line {line_no}: expected 12 numbers (a 3x4 pose) or 13 (frame index + pose), "
                f"found {len(values)}",
            )
        if rows and len(values) != len(rows[0]):
            raise InputError(
                path, f"line {line_no}: {len(values)} numbers, but line {line_numbers[0]} has {len(rows[0])}"
            )
        if not np.isfinite(values).all():
            raise InputError(path, f"line {line_no}: NaN or Inf")
        rows.append(values)
        line_numbers.append(line_no)
    if not rows:
        raise InputError(path, "no poses (empty file)")
    arr = np.asarray(rows)
    frames = None
    if arr.shape[1] == 13:
        index, arr = arr[:, 0], arr[:, 1:]
        bad = np.flatnonzero((index < 0) | (index != np.round(index)))
        if bad.size:
            k = bad[0]
            raise InputError(
                path, f"line {line_numbers[k]}: frame index {index[k]:g} is not a non-negative integer"
            )
        frames = index.astype(np.int64)
        back = np.flatnonzero(np.diff(frames) <= 0)
        if back.size:
            k = back[0] + 1
            raise InputError(
                path,
                f"line {line_numbers[k]}: frame index {frames[k]} does not follow {frames[k - 1]} "
                "(indices must increase)",
            )
    poses = as_pose_matrices(arr)
    R = poses[:, :3, :3]
    deviation = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((deviation > ROTATION_TOLERANCE) | (np.linalg.det(R) <= 0))
    if bad.size:
        k = bad[0]
        what = (
            f"R^T R differs from I by {deviation[k]:.3g} (tolerance {ROTATION_TOLERANCE:g})"
            if deviation[k] > ROTATION_TOLERANCE
            else "det(R) < 0, a reflection"
        )
        raise InputError(path, f"line {line_numbers[k]}: the 3x3 part is not a rotation: {what}")
    return frames, poses


def evaluate_trajectory_file(
    trajectory: str | os.PathLike,
    gt: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    alignment: str = "7dof",
    angle: str = "ours",
) -> dict:
    """Score a KITTI trajectory file against the GT poses as kitti-odom-eval does (``--trajectory``).

    Both files are read by `read_kitti_trajectory`. The GT must list every frame (12 numbers a line, or
    13 with consecutive indices starting at 0). A 12-number prediction must have as many poses as the GT;
    a 13-number one names its frames, which must exist in the GT. The metrics are
    `kitti_odometry_metrics` with those frames: segments start at GT frames 0, 10, 20, ... and are
    skipped when their first or last frame has no prediction, exactly as kitti-odom-eval's
    ``calc_sequence_errors`` (whose path lengths across a gap are wrong unless the first predicted frame
    is 0; ours come from the whole GT); the alignment uses the predicted frames. The 5-frame snippet ATE
    (Monodepth2) is added when the predicted frames are consecutive.

    Args:
        trajectory: predicted ``T_world_cam`` per frame (any origin: re-anchored at its first frame).
        gt: the GT poses of the same sequence, e.g. the devkit's ``poses/09.txt``.
        out_dir: if given, writes ``metrics.json`` (atomically) and ``trajectory.png`` (aligned, top view).
        alignment: "7dof" (default), "6dof", "scale" or "none" (see `align_trajectory`).
        angle: "ours" (default) or "devkit" (see `sa4depth.eval.odometry.rotation_angle`).

    Returns:
        dict with ``t_err`` (%), ``r_err`` (deg/100 m), ``ate`` (m), ``rpe_trans`` (m), ``rpe_rot`` (deg),
        ``n_segments``, ``alignment``, ``angle`` and the other `kitti_odometry_metrics` fields, plus
        ``trajectory``, ``gt``, ``gt_frames``, ``first_frame``, ``missing_frames`` and ``ate_5frame``
        (``mean``, ``std``, ``count``, or None).

    Raises:
        InputError: a malformed file (see `read_kitti_trajectory`), frames that do not fit the GT, or a
            prediction too short to hold one 100 m segment or to be aligned.
    """
    check_odometry_options(alignment, angle)
    trajectory, gt = Path(trajectory), Path(gt)
    gt_frames, gt_poses = read_kitti_trajectory(gt)
    if gt_frames is not None and not np.array_equal(gt_frames, np.arange(len(gt_frames))):
        gap = int(np.flatnonzero(gt_frames != np.arange(len(gt_frames)))[0])
        raise InputError(gt, f"the GT must list every frame from 0; frame {gap} is missing")
    frames, pred = read_kitti_trajectory(trajectory)
    if frames is None:
        if len(pred) != len(gt_poses):
            raise InputError(
                trajectory,
                f"{len(pred)} poses but the GT has {len(gt_poses)}; with missing frames, "
                "start each line with its frame index (13 numbers)",
            )
        frames = np.arange(len(pred))
    elif frames[-1] >= len(gt_poses):
        raise InputError(trajectory, f"frame {frames[-1]} is not in the GT (frames 0-{len(gt_poses) - 1})")
    if len(frames) < 2:
        raise InputError(trajectory, "a single pose: nothing to evaluate")
    try:
        metrics = kitti_odometry_metrics(gt_poses, pred, alignment, frames=frames, angle=angle)
    except ValueError as e:  # a degenerate alignment, e.g. every predicted position the same
        raise InputError(trajectory, f"cannot align the trajectory ({e})") from None
    if metrics["n_segments"] == 0:
        steps = np.diff(gt_poses[frames[0] : frames[-1] + 1, :3, 3], axis=0)
        raise InputError(
            trajectory,
            f"too short for the devkit: frames {frames[0]}-{frames[-1]} cover "
            f"{np.linalg.norm(steps, axis=1).sum():.1f} m of GT path: no 100 m segment has both ends "
            "predicted",
        )
    consecutive = bool(np.all(np.diff(frames) == 1))
    snippets = snippet_ate(relative_poses(gt_poses[frames]), relative_poses(pred)) if consecutive else None
    report = {
        "trajectory": str(trajectory),
        "gt": str(gt),
        **metrics,
        "gt_frames": len(gt_poses),
        "first_frame": int(frames[0]),
        "missing_frames": len(gt_poses) - len(frames),
        "ate_5frame": None if snippets is None else {k: snippets[k] for k in ("mean", "std", "count")},
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        gt0, pred_aligned, _ = align_trajectory(gt_poses[frames], pred, alignment)
        write_metrics_json(out_dir / "metrics.json", report)
        title = f"{trajectory.name} ({alignment})"
        plot_trajectory(gt0, pred_aligned, out_dir / "trajectory.png", title=title)
    return report
