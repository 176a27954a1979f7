"""Can the pose net learn motion at all? Train it alone, on ground-truth depth, with the photometric loss.

The CPU recipe's pose net (fresh, the same input, batch, Adam and loss) is trained with the depth fixed
to the ground truth (in units of ``--depth-unit`` metres, near the 46 m that joint training settles
on; sky far away). If it then learns rotation and speed, the pose net and the loss are sound and the
blind pose net of joint training (benchmarks/results/plateau/) is a joint-training degeneracy; if it
does not, the pose net or the loss is broken at this size. Reported on the validation streets every
``--val-every`` steps: rotation error against the true rotation (deg, medians), how per-pair speeds
track the true ones (Pearson r; median relative error after one global scale), and per sequence the
mean predicted speed (``|t|`` times the unit) against the true metres per frame. ``--supervised`` regresses
the ground-truth poses instead (L1 on translation and axis-angle): can the network see motion at all?

    OMP_NUM_THREADS=1 python benchmarks/pose_probe.py --steps 600
"""

from __future__ import annotations

import argparse
import platform
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.config import load_config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Pose
from sa4depth.models import pose_net
from sa4depth.recipes import recipe_path
from sa4depth.train.model import DepthPoseModel, batch_camera

SKY_M = 1000.0


def gt_depth_units(batch: dict, unit: float) -> torch.Tensor:
    depth = batch["depth"]
    return torch.where(depth > 0, depth, torch.full_like(depth, SKY_M)) / unit


def supervised_loss(T: Pose, T_gt: Pose, unit: float) -> torch.Tensor:
    """L1 of translation (in depth units, relative to a typical step) plus the squared rotation-matrix
    difference relative to that of a 0.3 deg rotation (matrices, not angles: acos has no gradient at 0)."""
    step = T_gt.t.norm(dim=-1, keepdim=True).mean() / unit
    rot = ((T.R - T_gt.R) ** 2).sum(dim=(-1, -2)).mean() / (2 * np.deg2rad(0.3) ** 2)
    return (T.t - T_gt.t / unit).abs().sum(-1).mean() / step + rot


def speed_tracking(predicted: np.ndarray, true: np.ndarray) -> dict:
    """How well per-pair speeds follow the true ones: Pearson r, and the median relative error after
    the one least-squares scale of all pairs (a pose net that outputs one speed scores r ~ 0)."""
    scale = float(predicted @ true / (predicted @ predicted))
    return {
        "speed_pearson_r": float(np.corrcoef(predicted, true)[0, 1]),
        "speed_rel_error_median": float(np.median(np.abs(scale * predicted - true) / true)),
    }


@torch.no_grad()
def validate(model: DepthPoseModel, loader: DataLoader, unit: float) -> dict:
    model.eval()
    rot, true_rot, speeds = [], [], defaultdict(list)
    for batch in loader:
        T = model.relative_pose(batch["images"][:, 0], batch["images"][:, -1], 1)
        T_gt = Pose.from_4x4mat(batch["T_src_tgt"][:, -1])
        rot.append((T.inv() @ T_gt).magnitude()[0])
        true_rot.append(T_gt.magnitude()[0])
        for seq, t, t_gt in zip(batch["sequence"], T.t.norm(dim=-1), T_gt.t.norm(dim=-1), strict=True):
            speeds[seq].append((t.item() * unit, t_gt.item()))
    model.train()
    pairs = np.concatenate([np.array(v) for v in speeds.values()])
    return {
        "rotation_error_deg_median": float(torch.cat(rot).median()),
        "true_rotation_deg_median": float(torch.cat(true_rot).median()),
        **speed_tracking(pairs[:, 0], pairs[:, 1]),
        "speed_m_per_frame": {
            s: dict(zip(("predicted", "true"), np.mean(v, axis=0).tolist(), strict=True))
            for s, v in sorted(speeds.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--depth-unit", type=float, default=46.0, help="metres per depth unit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--supervised", action="store_true", help="regress ground-truth poses instead")
    parser.add_argument(
        "--no-batch-norm",
        action="store_true",
        help="the small pose encoder without batch norm (before 2026-12-02)",
    )
    parser.add_argument("--out", default="benchmarks/results/pose_probe")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.pose_encoder=resnet18")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    pose_net.SMALL_ENCODER_BATCH_NORM = not args.no_batch_norm
    cfg = load_config(recipe_path("synthetic_cpu"), args.overrides)
    model = DepthPoseModel(cfg).train()
    generator = torch.Generator().manual_seed(args.seed)
    train_set = build_dataset(cfg.data, "train", train=True)
    loader = DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate, generator=generator
    )
    val_loader = DataLoader(build_dataset(cfg.data, "val", train=False), batch_size=16, collate_fn=collate)
    optimizer = torch.optim.Adam(model.pose_net.parameters(), cfg.optim.lr)
    curve, step = [], 0
    while step < args.steps:
        for batch in loader:
            if not batch["has_depth"].all():
                continue
            images = batch["images"]
            poses = model.predict_poses(batch["images_aug"])
            if args.supervised:
                targets = [Pose.from_4x4mat(batch["T_src_tgt"][:, j]) for j in range(len(poses))]
                loss = sum(
                    supervised_loss(T, T_gt, args.depth_unit) for T, T_gt in zip(poses, targets, strict=True)
                )
            else:
                depth = gt_depth_units(batch, args.depth_unit)
                loss, _ = model.pose_net_objective.photometric(images, depth, poses, batch_camera(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.val_every == 0 or step == args.steps:
                curve.append(
                    {"step": step, "loss": loss.item(), **validate(model, val_loader, args.depth_unit)}
                )
                speeds = ", ".join(
                    f"{v['predicted']:.2f}/{v['true']:.2f}" for v in curve[-1]["speed_m_per_frame"].values()
                )
                print(
                    f"step {step}: rotation error {curve[-1]['rotation_error_deg_median']:.3f} deg "
                    f"(true {curve[-1]['true_rotation_deg_median']:.3f}), per-pair speed r "
                    f"{curve[-1]['speed_pearson_r']:.2f}, error {curve[-1]['speed_rel_error_median']:.2f}, "
                    f"mean speed predicted/true {speeds}",
                    flush=True,
                )
            if step == args.steps:
                break
    mode = (["supervised"] if args.supervised else []) + (["no_batch_norm"] if args.no_batch_norm else [])
    name = "_".join([f"seed{args.seed}", *mode, *(o.replace("=", "-") for o in args.overrides)])
    command = (
        "python benchmarks/pose_probe.py "
        + f"--steps {args.steps} --val-every {args.val_every} --seed {args.seed}"
    )
    command += " --supervised" if args.supervised else ""
    command += " --no-batch-norm" if args.no_batch_norm else ""
    write_metrics_json(
        Path(args.out) / f"{name}.json",
        {"command": " ".join([command, *args.overrides]), "machine": platform.platform(), "curve": curve},
    )


if __name__ == "__main__":
    run_script(main)
