"""Why does the baseline's held-out AbsRel flatten? Four measurements on one trained checkpoint.

1. ``bins``: AbsRel (and signed relative error) of the median-scaled depth by ground-truth depth range,
   with each range's share of pixels, on held-out streets (``--split``: val for choosing levers, test
   only for describing a finished comparison).
2. ``loss_at``: on training frames (no augmentation), the photometric min-reprojection error (SSIM + L1,
   the training loss without smoothness) with ground-truth depth and poses, with the network's depth
   and poses, with the network's depth (median-scaled) and ground-truth poses, and with a constant
   depth. If ground truth scores far lower than the network, the objective is not what stops training.
3. ``path``: the same error along the straight line from the network's (scaled) disparity to the
   ground-truth disparity, ground-truth poses: a bump would be a local minimum of the objective in
   depth space; a monotone fall means a descent direction exists.
4. ``gradient``: the share of pixels more than 20 % off in disparity where minus the loss gradient
   with respect to that pixel's disparity points towards the ground truth, at image blur 0-4 px
   (a wider basin from coarse images would show as a higher share under blur).
5. ``rotation``: on training frames, the pose net's rotation angle against the true one, the error
   with the pose net's translation and the *true* rotation (given the network's depth), and the cosine
   between minus the gradient with respect to a rotation update and the rotation still missing; and
   whether the pose net looks at the motion at all: its translation for a frame paired with itself,
   with the next frame, and for the pair reversed (a working pose net gives ~0, t and -t).

    python benchmarks/plateau_diagnosis.py \
        benchmarks/results/converged/monodepth2_seed0/checkpoints/last.ckpt --split test
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import kornia
import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import run_script
from sa4depth.eval.protocols import get_protocol
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Pose
from sa4depth.train.model import batch_camera
from sa4depth.train.run import load_checkpoint

BINS = (0.1, 5.0, 10.0, 20.0, 40.0, 80.0)
PATH = (0.0, 0.25, 0.5, 0.75, 1.0)
BLURS = (0, 1, 2, 4)
SKY_DEPTH = 1000.0  # sky (GT depth 0) is placed this far for the ground-truth warp: effectively infinite


def gt_poses(batch: dict) -> list[Pose]:
    return [Pose.from_4x4mat(batch["T_src_tgt"][:, j]) for j in range(batch["T_src_tgt"].shape[1])]


def median_scale(depth: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image median ratio ``(B, 1, 1, 1)`` of ground truth to ``depth`` over pixels with ground truth."""
    valid = gt > 0
    return torch.stack([gt[i][valid[i]].median() / depth[i][valid[i]].median() for i in range(len(gt))]).view(
        -1, 1, 1, 1
    )


@torch.no_grad()
def depth_bins(model, cfg, split: str) -> list[dict]:
    protocol = get_protocol(cfg.eval_protocol)
    loader = DataLoader(build_dataset(cfg.data, split, train=False), batch_size=16, collate_fn=collate)
    sums = np.zeros((len(BINS) - 1, 4))  # |rel| sum, signed rel sum, count, count at the depth floor
    for batch in loader:
        gt = batch["depth"][:, 0]
        pred = model.depth_net.predict_depth(batch["images"][:, 0])[:, 0]
        valid = (gt > protocol.min_depth) & (gt < protocol.max_depth)
        for i in range(len(gt)):
            g, p = gt[i][valid[i]], pred[i][valid[i]]
            at_floor = p < 1.2 * model.cfg.model.min_depth  # the network cannot predict nearer
            p = (p * g.median() / p.median()).clamp(protocol.min_depth, protocol.max_depth)
            rel = (p - g) / g
            for k in range(len(BINS) - 1):
                sel = (g >= BINS[k]) & (g < BINS[k + 1])
                sums[k] += [
                    rel[sel].abs().sum().item(),
                    rel[sel].sum().item(),
                    sel.sum().item(),
                    (sel & at_floor).sum().item(),
                ]
    total = sums[:, 2].sum()
    return [
        {
            "depth_m": [BINS[k], BINS[k + 1]],
            "share": sums[k, 2] / total,
            "abs_rel": sums[k, 0] / max(sums[k, 2], 1),
            "signed_rel": sums[k, 1] / max(sums[k, 2], 1),
            "share_at_depth_floor": sums[k, 3] / max(sums[k, 2], 1),
        }
        for k in range(len(BINS) - 1)
    ]


def photometric(model, images, depth, poses, camera) -> torch.Tensor:
    """Mean min-reprojection error over pixels that some source sees; differentiable in ``depth``."""
    _, info = model.pose_net_objective.photometric(images, depth, poses, camera)
    error = info["error"]
    return error[error < 100].mean()  # invalid in every source: the loss's constant, no information


def training_batches(cfg, count: int, batch_size: int = 8):
    generator = torch.Generator().manual_seed(0)
    dataset = build_dataset(cfg.data, "train", train=False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)
    for n, batch in enumerate(loader):
        if n == count:
            return
        yield batch


def losses_and_gradients(model, cfg, batches: int) -> dict:
    at: dict[str, list[float]] = {}
    path: dict[float, list[float]] = {a: [] for a in PATH}
    agree: dict[int, list[float]] = {s: [] for s in BLURS}
    for batch in training_batches(cfg, batches):
        images, camera = batch["images"], batch_camera(batch)
        valid = batch["depth"] > 0
        gt = torch.where(valid, batch["depth"], torch.full_like(batch["depth"], SKY_DEPTH))
        with torch.no_grad():
            depth = model.depth_from_disp(model.depth_net(images[:, 0])[0])
            scaled = depth * median_scale(depth, batch["depth"])
            T_gt = gt_poses(batch)
            rows = {
                "gt_depth_gt_poses": photometric(model, images, gt, T_gt, camera),
                "net_depth_net_poses": photometric(model, images, depth, model.predict_poses(images), camera),
                "net_depth_scaled_gt_poses": photometric(model, images, scaled, T_gt, camera),
                "constant_depth_gt_poses": photometric(
                    model, images, torch.full_like(gt, batch["depth"][valid].median().item()), T_gt, camera
                ),
            }
            for name, value in rows.items():
                at.setdefault(name, []).append(value.item())
            for a in PATH:
                disp = (1 - a) / scaled + a / gt
                path[a].append(photometric(model, images, 1 / disp, T_gt, camera).item())
        gt_disp = torch.where(valid, 1 / batch["depth"].clamp(min=1e-3), torch.zeros_like(gt))
        for sigma in BLURS:
            blurred = images
            if sigma:
                size = (4 * sigma + 1, 4 * sigma + 1)
                flat = kornia.filters.gaussian_blur2d(
                    images.flatten(0, 1), size, (float(sigma), float(sigma))
                )
                blurred = flat.view_as(images)
            disp = (1 / scaled).requires_grad_(True)
            (grad,) = torch.autograd.grad(photometric(model, blurred, 1 / disp, T_gt, camera), disp)
            want = gt_disp - disp.detach()
            off = valid & (want.abs() > 0.2 * gt_disp) & (grad != 0)
            agree[sigma].append(((-grad).sign() == want.sign())[off].float().mean().item())
    return {
        "loss_at": {k: float(np.mean(v)) for k, v in at.items()},
        "path": [{"fraction_to_gt": a, "loss": float(np.mean(v))} for a, v in path.items()],
        "gradient_points_to_gt": [{"blur_px": s, "share": float(np.mean(v))} for s, v in agree.items()],
    }


def rotation_check(model, cfg, batches: int) -> dict:
    """Does the pose net rotate, and does the loss on the network's depth ask it to? (See 5 above.)"""
    angles, true_angles, err_net, err_true_R, cosines = [], [], [], [], []
    t_self, t_next_z, t_reversed_z, t_next_norm = [], [], [], []
    for batch in training_batches(cfg, batches):
        images, camera = batch["images"], batch_camera(batch)
        with torch.no_grad():
            depth = model.depth_from_disp(model.depth_net(images[:, 0])[0])
            poses = model.predict_poses(images)
        T_gt = gt_poses(batch)
        with torch.no_grad():
            a, b = images[:, 0], images[:, -1]  # target and the next frame (offsets -1, 1)
            t_self.append(model.pose_net(a, a).t.norm(dim=-1))
            t_next = model.pose_net(a, b).t
            t_next_norm.append(t_next.norm(dim=-1))
            t_next_z.append(t_next[:, 2])
            t_reversed_z.append(model.pose_net(b, a).t[:, 2])
            true_R = [Pose.from_Rt(Tg.R, Tp.t) for Tg, Tp in zip(T_gt, poses, strict=True)]
            err_net.append(photometric(model, images, depth, poses, camera).item())
            err_true_R.append(photometric(model, images, depth, true_R, camera).item())
        for j, (T_net, T_true) in enumerate(zip(poses, T_gt, strict=True)):
            angles.append(T_net.magnitude()[0])
            true_angles.append(T_true.magnitude()[0])
            update = torch.zeros(len(images), 3, requires_grad=True)
            moved = list(poses)
            moved[j] = Pose.from_aa(update, torch.zeros_like(update)) @ T_net
            (grad,) = torch.autograd.grad(photometric(model, images, depth, moved, camera), update)
            missing = kornia.geometry.conversions.rotation_matrix_to_axis_angle(
                T_true.R @ T_net.R.transpose(-1, -2)
            )
            cosines.append(torch.nn.functional.cosine_similarity(-grad, missing, dim=-1))
    return {
        "pose_net_rotation_deg_median": float(torch.cat(angles).median()),
        "true_rotation_deg_median": float(torch.cat(true_angles).median()),
        "error_pose_net": float(np.mean(err_net)),
        "error_pose_net_translation_true_rotation": float(np.mean(err_true_R)),
        "gradient_cosine_to_missing_rotation_median": float(torch.cat(cosines).median()),
        "pose_net_t_norm_frame_with_itself": float(torch.cat(t_self).mean()),
        "pose_net_t_norm_frame_with_next": float(torch.cat(t_next_norm).mean()),
        "pose_net_t_z_frame_with_next": float(torch.cat(t_next_z).mean()),
        "pose_net_t_z_pair_reversed": float(torch.cat(t_reversed_z).mean()),
    }


def markdown(result: dict) -> str:
    lines = [
        f"Command: {result['command']}",
        "",
        f"Split {result['split']}; 'at floor': predicted within 20 % of model.min_depth (network units).",
        "",
        "| GT depth (m) | share of pixels | AbsRel | signed rel | at floor |",
        "|---|---|---|---|---|",
    ]
    for b in result["bins"]:
        lo, hi = b["depth_m"]
        lines.append(
            f"| {lo:g}-{hi:g} | {b['share']:.3f} | {b['abs_rel']:.3f} | {b['signed_rel']:+.3f} "
            f"| {b['share_at_depth_floor']:.2f} |"
        )
    lines += ["", "| photometric error on training frames | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result["loss_at"].items()]
    lines += ["", "| fraction of the way from the net's disparity to GT (GT poses) | error |", "|---|---|"]
    lines += [f"| {p['fraction_to_gt']:g} | {p['loss']:.4f} |" for p in result["path"]]
    lines += ["", "| image blur (px) | pixels >20 % off whose descent direction points to GT |", "|---|---|"]
    lines += [f"| {g['blur_px']} | {100 * g['share']:.0f} % |" for g in result["gradient_points_to_gt"]]
    lines += ["", "| rotation (training frames, the network's depth) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result["rotation"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a trained baseline (or SA4Depth) checkpoint")
    parser.add_argument("--split", default="val", help="held-out split for 1 (default: val)")
    parser.add_argument("--batches", type=int, default=6, help="training batches of 8 for 2-4 (default 6)")
    parser.add_argument("--out", default="benchmarks/results/plateau")
    args = parser.parse_args()
    system, cfg = load_checkpoint(args.checkpoint)
    model = system.model
    result = {
        "command": f"python benchmarks/plateau_diagnosis.py {args.checkpoint} --split {args.split} "
        f"--batches {args.batches}",
        "machine": platform.platform(),
        "split": args.split,
        "bins": depth_bins(model, cfg, args.split),
        **losses_and_gradients(model, cfg, args.batches),
        "rotation": rotation_check(model, cfg, args.batches),
    }
    out = Path(args.out)
    name = f"{Path(args.checkpoint).parent.parent.name}_{args.split}"
    write_metrics_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    run_script(main)
