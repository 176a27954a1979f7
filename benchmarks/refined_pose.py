"""Does the trained LM improve the pose net's pose on held-out frames, as it runs in training?

For each test pair of the synthetic benchmark set, the checkpoint's own pipeline runs: depth net ->
pose net ``T_src_tgt`` -> LM refinement on that depth (the training path, `PoseRefinement`). Both poses
are scored against ground truth with the scale-free errors a monocular pose has: rotation error (deg)
and the angle between the predicted and the true translation direction (deg); ``improved`` is the share
of pairs where the refined pose is better in both. The ``straight_ahead`` reference is the prior a
pose net can learn first on a street: no rotation, translation along the optical axis. ``speed``: per
test sequence, the mean length of the pose net's and the refined translation in metres, each put in
metres by its frame's median depth scale (ground truth / predicted, as the depth metrics do), against
the true metres per frame: a pose that agrees with its depth in scale moves as fast as the camera. No ground
truth enters the LM, except with ``--depth gt``: the LM then refines on ground-truth depth (sky left
out), which tells a bias of the LM from a bias of the predicted depth it aligns to.

    python benchmarks/refined_pose.py --checkpoints \
        benchmarks/results/converged/monodepth2_sa4depth_seed{0,1,2}/checkpoints/last.ckpt \
        --out benchmarks/results/refined_pose
"""

from __future__ import annotations

import argparse
import platform
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Pose
from sa4depth.train.model import batch_camera
from sa4depth.train.run import load_checkpoint


def pose_errors(T: Pose, T_gt: Pose) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation error and translation-direction error, both in degrees, of ``(B,)`` poses."""
    deg, _ = (T.inv() @ T_gt).magnitude()
    cos = torch.nn.functional.cosine_similarity(T.t, T_gt.t, dim=-1).clamp(-1.0, 1.0)
    return deg, torch.rad2deg(torch.acos(cos))


@torch.no_grad()
def score(checkpoint: str, depth_source: str = "predicted", split: str = "test") -> dict | None:
    """Errors of the pose net and of the refined pose on every test pair of the checkpoint's dataset.

    Args:
        checkpoint: a trained SA4Depth checkpoint.
        depth_source: ``"predicted"`` (the depth net's, as in training) or ``"gt"`` (ground truth).
        split: the dataset split (val for choosing levers, test for a finished comparison).

    A baseline checkpoint (no refinement) reports its pose net and the reference only (None for
    ``depth_source="gt"``, which would repeat them).
    """
    system, cfg = load_checkpoint(checkpoint)
    model = system.model
    if model.refinement is None and depth_source == "gt":
        return None
    dataset = build_dataset(cfg.data, split, train=False)
    loader = DataLoader(dataset, batch_size=16, shuffle=False, collate_fn=collate)
    errors: dict[str, list[torch.Tensor]] = {"pose_net": [], "refined": [], "straight_ahead": []}
    magnitudes: dict[str, list[torch.Tensor]] = {"pose_net": [], "true": []}  # rotation angles, deg
    # sequence -> (pose-net, refined, true) metres per frame
    speeds: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for batch in loader:
        keep = batch["has_pose"] & (batch["has_depth"] if depth_source == "gt" else True)
        if not keep.any():
            continue
        images = batch["images"][keep]
        camera = batch_camera({"images": images, "K": batch["K"][keep]})
        net_depth = model.depth_from_disp(model.depth_net(images[:, 0])[0])
        gt = batch["depth"][keep]
        depth = net_depth
        if depth_source == "gt":
            depth = gt.clone()
            depth[depth <= 0] = float("nan")  # sky: no depth, no residual
        scale = torch.stack(
            [(g[g > 0].median() / d[g > 0].median()) for g, d in zip(gt, net_depth, strict=True)]
        )
        poses_net = model.predict_poses(images)
        poses_refined = poses_net
        if model.refinement is not None:
            poses_refined, _ = model.refinement(images, depth, camera, poses_net)
        for j, (T_net, T_ref) in enumerate(zip(poses_net, poses_refined, strict=True)):
            T_gt = Pose.from_4x4mat(batch["T_src_tgt"][keep][:, j])
            errors["pose_net"].append(torch.stack(pose_errors(T_net, T_gt), -1))
            magnitudes["pose_net"].append(T_net.magnitude()[0])
            magnitudes["true"].append(T_gt.magnitude()[0])
            errors["refined"].append(torch.stack(pose_errors(T_ref, T_gt), -1))
            if depth_source == "predicted":
                sequences = [q for q, k in zip(batch["sequence"], keep.tolist(), strict=True) if k]
                for i, seq in enumerate(sequences):
                    speeds[seq].append(
                        (
                            (T_net.t[i].norm() * scale[i]).item(),
                            (T_ref.t[i].norm() * scale[i]).item(),
                            T_gt.t[i].norm().item(),
                        )
                    )
            ahead = torch.zeros_like(T_gt.t)
            ahead[:, 2] = T_gt.t[:, 2].sign()  # forward or backward, whichever the source is
            T_ahead = Pose.from_Rt(torch.eye(3).expand(len(ahead), 3, 3), ahead)
            errors["straight_ahead"].append(torch.stack(pose_errors(T_ahead, T_gt), -1))
    e_net, e_ref, e_ahead = (torch.cat(errors[k]).numpy() for k in ("pose_net", "refined", "straight_ahead"))
    out = {"checkpoint": checkpoint, "split": split, "depth": depth_source, "pairs": len(e_net)}
    if model.refinement is None:
        out["depth"] = "none (baseline: no refinement)"
    for name, e in (("pose_net", e_net), ("refined", e_ref), ("straight_ahead", e_ahead)):
        out[name] = {
            "rotation_deg_median": float(np.median(e[:, 0])),
            "rotation_deg_mean": float(e[:, 0].mean()),
            "direction_deg_median": float(np.median(e[:, 1])),
            "direction_deg_mean": float(e[:, 1].mean()),
        }
    out["speed_m_per_frame"] = {
        seq: dict(zip(("pose_net", "refined", "true"), np.mean(v, axis=0).tolist(), strict=True))
        for seq, v in sorted(speeds.items())
    }
    out["rotation_angle_deg_median"] = {k: float(torch.cat(v).median()) for k, v in magnitudes.items()}
    out["improved_rotation"] = float((e_ref[:, 0] < e_net[:, 0]).mean())
    out["improved_direction"] = float((e_ref[:, 1] < e_net[:, 1]).mean())
    out["improved_both"] = float(((e_ref[:, 0] < e_net[:, 0]) & (e_ref[:, 1] < e_net[:, 1])).mean())
    return out


def table(results: list[dict]) -> str:
    """Markdown: one row per checkpoint and depth source; a baseline has no refined pose ("-")."""
    lines = [
        "| checkpoint | pairs | rotation deg, median: pose net -> refined (straight ahead) | direction deg, "
        "median: pose net -> refined (straight ahead) | improved rotation / direction / both |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        baseline = r["depth"].startswith("none")
        source = "baseline" if baseline else f"{r['depth']} depth"
        name = f"{Path(r['checkpoint']).parent.parent.name}, {r['split']}, {source}"
        n, f, a = r["pose_net"], r["refined"], r["straight_ahead"]
        rot = "-" if baseline else f"{f['rotation_deg_median']:.3f}"
        direction = "-" if baseline else f"{f['direction_deg_median']:.2f}"
        improved = (
            "-"
            if baseline
            else (
                f"{100 * r['improved_rotation']:.0f} / {100 * r['improved_direction']:.0f} / "
                f"{100 * r['improved_both']:.0f} %"
            )
        )
        lines.append(
            f"| {name} | {r['pairs']} | {n['rotation_deg_median']:.3f} -> {rot} "
            f"({a['rotation_deg_median']:.3f}) | {n['direction_deg_median']:.2f} -> {direction} "
            f"({a['direction_deg_median']:.2f}) | {improved} |"
        )
    speed_rows = [r for r in results if r["speed_m_per_frame"]]
    if speed_rows:
        sequences = sorted({q for r in speed_rows for q in r["speed_m_per_frame"]})
        lines += [
            "",
            "Speed, m per frame (translation length times the frame's median depth scale): "
            "pose net / refined (true)",
            "",
            "| checkpoint | " + " | ".join(sequences) + " |",
            "|---" * (len(sequences) + 1) + "|",
        ]
        for r in speed_rows:
            cells = []
            for q in sequences:
                v = r["speed_m_per_frame"].get(q)
                if v is None:
                    cells.append("-")
                    continue
                refined = "-" if r["depth"].startswith("none") else f"{v['refined']:.3f}"
                cells.append(f"{v['pose_net']:.3f} / {refined} ({v['true']:.3f})")
            lines.append(f"| {Path(r['checkpoint']).parent.parent.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoints", nargs="+", required=True, help="trained checkpoints (SA4Depth or baseline)"
    )
    parser.add_argument("--depth", nargs="+", default=["predicted"], choices=["predicted", "gt"])
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--out", default="benchmarks/results/refined_pose")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [r for c in args.checkpoints for d in args.depth if (r := score(c, d, args.split)) is not None]
    out = Path(args.out)
    command = "python benchmarks/refined_pose.py --checkpoints " + " ".join(args.checkpoints)
    command += " --depth " + " ".join(args.depth) + f" --split {args.split}"
    write_metrics_json(
        out / "summary.json",
        {
            "command": command,
            "machine": platform.platform(),
            "threads": torch.get_num_threads(),
            "results": results,
        },
    )
    md = table(results)
    atomic_write_text(
        out / "summary.md",
        f"Command: {command}\n\nPairs of the {args.split} split; the checkpoint's own depth and pose net, "
        "its LM settings; errors vs ground truth (translation as a direction: monocular scale is free).\n\n"
        + md
        + "\n",
    )
    print(md)


if __name__ == "__main__":
    run_script(main)
