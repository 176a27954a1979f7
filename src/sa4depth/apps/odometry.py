"""KITTI odometry of a checkpoint's pose network (``sa4depth evaluate-odometry --checkpoint``).

Loads the training system (the pose net and, with ``--refine``, the LM refinement) and scores its
trajectory with `sa4depth.eval.kitti_tools`; a trajectory file needs no model (`evaluate_trajectory_file`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sa4depth.data import layout
from sa4depth.data.kitti_odometry import KittiOdometryDataset, sequence_name
from sa4depth.errors import InputError
from sa4depth.eval.kitti_tools import check_odometry_options, odometry_report, predict_relative_poses
from sa4depth.train.run import load_checkpoint

logger = logging.getLogger(__name__)


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
    angle: str = "ours",
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
        batch_size: image pairs per forward pass of the pose net.
        device: torch device to run on (default: CUDA if available, else CPU).
        num_workers: DataLoader worker processes (0: load in the main process).
        angle: rotation-angle formula, "ours" or "devkit" (see `sa4depth.eval.odometry.rotation_angle`).

    Returns:
        The report dict (see `odometry_report`).
    """
    check_odometry_options(alignment, angle)
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
    report = odometry_report(gt, pred_rel, out_dir, name, alignment, extra, angle)
    k = report["kitti"]
    logger.info(
        "sequence %s: t_err %.2f %%, r_err %.2f deg/100m, ATE %.2f m", name, k["t_err"], k["r_err"], k["ate"]
    )
    return report
