"""KITTI benchmark tools: export Eigen / improved ground truth, full-resolution depth evaluation, odometry.

Entry points of ``sa4depth kitti-export-gt`` (`export_gt_depths`) and ``sa4depth evaluate-odometry``
(`evaluate_odometry`).
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
from sa4depth.data.kitti_odometry import KittiOdometryDataset, sequence_name
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
        with np.load(path, allow_pickle=allow_pickle) as z:
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
        height, width: network input size.
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
    results = {"protocol": protocol, "depth": accumulator.compute(), "count": len(accumulator.per_image)}
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
    from sa4depth.train.run import load_checkpoint

    system, cfg = load_checkpoint(checkpoint)
    dev = _device(device)
    depth_net = system.model.depth_net.to(dev).eval()
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


# --- Visual odometry --------------------------------------------------------------------------------------


def odometry_report(
    gt_T_world_cam,
    pred_T_next_prev,
    out_dir: str | os.PathLike | None = None,
    sequence: str = "",
    alignment: str = "7dof",
    extra: dict | None = None,
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

    Returns:
        dict with ``sequence``, ``frames``, ``alignment``, ``kitti`` (the `kitti_odometry_metrics`
        dict) and ``ate_5frame`` (``mean``, ``std``, ``count``).
    """
    if alignment not in ALIGNMENTS:
        raise InputError("alignment", f"must be one of {ALIGNMENTS}, got {alignment!r}")
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
        "kitti": kitti_odometry_metrics(gt, pred, alignment),
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
        T = model.pose_net(images[:, 0], images[:, 1])
        if refine:
            height, width = images.shape[-2:]
            camera = Camera.from_K(batch["K"].to(dev), width, height)
            depth = model.depth_net.predict_depth(images[:, 0])
            (T,), _ = model.refinement(images, depth, camera, [T])
        out.append(T.matrix().to("cpu", torch.float64).numpy())
    return np.concatenate(out)


def evaluate_odometry(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike,
    sequence: str | int,
    out_dir: str | os.PathLike,
    alignment: str = "7dof",
    refine: bool = False,
    batch_size: int = 8,
    device: str | None = None,
    num_workers: int = 0,
) -> dict:
    """KITTI odometry of a checkpoint's pose network on one sequence (``sa4depth evaluate-odometry``).

    Runs the pose net on every consecutive pair ``(t, t + 1)`` at the checkpoint's resolution, chains
    the poses and compares them with ``root/poses/<NN>.txt`` as `odometry_report` does (the devkit's
    camera-0 poses, used as they are, as Monodepth2 and the devkit do); writes the JSON, the trajectory
    PNG and the predicted poses to ``out_dir``.

    Args:
        checkpoint: a training checkpoint.
        root: the KITTI odometry ``dataset`` folder.
        sequence: "09", "10" or any sequence with ground truth (00-10).
        out_dir: output folder.
        alignment: "7dof" (default), "6dof", "scale" or "none".
        refine: also run SA4Depth's LM refinement on each pose (the checkpoint must have been trained
            with ``refine.enabled``).
        batch_size, device, num_workers: inference settings (device default: CUDA if available).

    Returns:
        The report dict (see `odometry_report`).
    """
    from sa4depth.train.run import load_checkpoint

    if alignment not in ALIGNMENTS:
        raise InputError("alignment", f"must be one of {ALIGNMENTS}, got {alignment!r}")
    root = Path(root)
    name = sequence_name(sequence) if str(sequence).isdigit() else str(sequence)
    gt_path = root / "poses" / f"{name}.txt"
    if not gt_path.is_file():
        raise InputError(gt_path, "ground-truth poses not found (KITTI has them for sequences 00-10)")
    system, cfg = load_checkpoint(checkpoint)
    if refine and system.model.refinement is None:
        raise InputError(
            checkpoint,
            "--refine needs a checkpoint trained with refine.enabled (SA4Depth); this one has none",
        )
    gt = layout.read_poses(gt_path)
    dataset = KittiOdometryDataset(root, name, cfg.data.height, cfg.data.width, offsets=(1,), train=False)
    pred_rel = predict_relative_poses(system.model, dataset, refine, batch_size, device, num_workers)
    extra = {"checkpoint": str(checkpoint), "refine": refine, "gt_poses": str(gt_path)}
    report = odometry_report(gt, pred_rel, out_dir, name, alignment, extra)
    k = report["kitti"]
    logger.info(
        "sequence %s: t_err %.2f %%, r_err %.2f deg/100m, ATE %.2f m", name, k["t_err"], k["r_err"], k["ate"]
    )
    return report
