"""Convergence basin of the LM: from how far off does it still find the true pose, learned features vs RGB?

On the held-out test snippets of the synthetic benchmark set, with ground-truth depth (so only the
features differ), the ground-truth ``T_src_tgt`` is perturbed by a rotation of ``deg`` degrees about a
random axis and a translation error of ``frac |t|`` in a random direction, and the LM (the trained
checkpoint's own settings: levels, iterations, robust kernel, damping) refines it with:

- ``learned``: the trained checkpoint's feature network (features + confidence);
- ``learned_untrained``: the same network freshly initialised (does training matter?);
- ``rgb_same_strides``: the image itself at the feature network's strides (4, 8, 16 for 3 levels);
- ``rgb_full_resolution``: the image at strides 1, 2, 4 (the ``refine.features=rgb`` training ablation).

A sample converges when the refined pose is within 0.25 deg and 10 % of ``|t|`` of the truth.

    python benchmarks/lm_basin.py --checkpoints \
        benchmarks/results/compare_md2/monodepth2_sa4depth_seed{0,1,2}/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Camera, Pose
from sa4depth.models.feature_net import FeatureNet
from sa4depth.refine import image_pyramid_features
from sa4depth.train.model import batch_camera
from sa4depth.train.run import load_checkpoint

# (rotation deg, translation error as a fraction of |t|), easy to hard.
PERTURBATIONS = [(0.5, 0.1), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0), (8.0, 2.0)]
SUCCESS_DEG, SUCCESS_FRAC = 0.25, 0.10
FEATURES = ("learned", "learned_untrained", "rgb_same_strides", "rgb_full_resolution")


def perturb(T: Pose, deg: float, frac: float, generator: torch.Generator) -> Pose:
    """``T`` moved by ``deg`` about a random axis and by ``frac |t|`` in a random direction."""
    n = T.shape[0]
    axis = F.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    direction = F.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    return Pose.from_aa(axis * math.radians(deg), direction * frac * T.t.norm(dim=-1, keepdim=True)) @ T


def pose_errors(T: Pose, T_gt: Pose) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation error (deg) and translation error relative to ``|t_gt|``."""
    deg, dist = (T.inv() @ T_gt).magnitude()
    return deg, dist / T_gt.t.norm(dim=-1).clamp(min=1e-9)


def feature_pyramids(kind: str, images: torch.Tensor, refinement, untrained: FeatureNet, levels: int):
    """Features and confidences (or None) per level of ``(B, 3, H, W)`` images, coarse to fine."""
    if kind == "learned":
        return refinement.features(images)
    if kind == "learned_untrained":
        out = untrained(images)
        return out["features"], out["confidence"]
    stride = 4 if kind == "rgb_same_strides" else 1
    return image_pyramid_features(images, levels, finest_stride=stride)


@torch.no_grad()
def basin(checkpoint: str, data_root: str | None, seed: int) -> dict:
    system, cfg = load_checkpoint(checkpoint)
    refinement = system.model.refinement
    if refinement is None or refinement.feature_net is None:
        raise SystemExit(f"{checkpoint}: not an SA4Depth checkpoint with learned features")
    if data_root:
        cfg.data.root = data_root
    levels = cfg.refine.levels
    torch.manual_seed(seed)
    untrained = FeatureNet(levels=levels).eval()
    dataset = build_dataset(cfg.data, "test", train=False)
    loader = DataLoader(dataset, batch_size=16, shuffle=False, collate_fn=collate)
    errors = {k: {p: [] for p in PERTURBATIONS} for k in FEATURES}
    initial = {p: [] for p in PERTURBATIONS}
    generator = torch.Generator().manual_seed(seed)
    for batch in loader:
        keep = batch["has_depth"] & batch["has_pose"]
        if not keep.any():
            continue
        images = batch["images"][keep]
        camera = Camera(batch_camera(batch).data[keep])
        depth = batch["depth"][keep].clone()
        depth[depth <= 0] = float("nan")  # sky: no depth, no residual
        B, N = images.shape[:2]
        flat = images.flatten(0, 1)
        pyramids = {k: feature_pyramids(k, flat, refinement, untrained, levels) for k in FEATURES}
        for j in range(1, N):
            T_gt = Pose.from_4x4mat(batch["T_src_tgt"][keep][:, j - 1])
            for p in PERTURBATIONS:
                T0 = perturb(T_gt, *p, generator)
                initial[p].append(torch.stack(pose_errors(T0, T_gt), -1))
                for kind, (feats, confs) in pyramids.items():
                    ft = [f.unflatten(0, (B, N))[:, 0] for f in feats]
                    fs = [f.unflatten(0, (B, N))[:, j] for f in feats]
                    ct = cs = None
                    if confs is not None and kind.startswith("learned"):
                        ct = [c.unflatten(0, (B, N))[:, 0] for c in confs]
                        cs = [c.unflatten(0, (B, N))[:, j] for c in confs]
                    T, _ = refinement.lm(ft, ct, fs, cs, depth, camera, T0)
                    errors[kind][p].append(torch.stack(pose_errors(T, T_gt), -1))
    rows = []
    for p in PERTURBATIONS:
        e0 = torch.cat(initial[p]).numpy()
        row = {"rotation_deg": p[0], "translation_frac": p[1], "samples": len(e0)}
        for kind in FEATURES:
            e = torch.cat(errors[kind][p]).numpy()
            ok = (e[:, 0] < SUCCESS_DEG) & (e[:, 1] < SUCCESS_FRAC)
            row[kind] = {
                "converged": float(ok.mean()),
                "median_rotation_deg": float(np.median(e[:, 0])),
                "median_translation_frac": float(np.median(e[:, 1])),
                "improved": float(((e[:, 0] < e0[:, 0]) & (e[:, 1] < e0[:, 1])).mean()),
            }
        rows.append(row)
    return {"checkpoint": checkpoint, "seed": seed, "rows": rows}


def table(results: list[dict]) -> str:
    lines = [
        "| start error (deg, frac of abs t) | "
        + " | ".join(f"{k}: converged / median final deg, frac" for k in FEATURES)
        + " |",
        "|---" * (len(FEATURES) + 1) + "|",
    ]
    for i, p in enumerate(PERTURBATIONS):
        cells = []
        for kind in FEATURES:
            conv = np.array([r["rows"][i][kind]["converged"] for r in results])
            deg = np.mean([r["rows"][i][kind]["median_rotation_deg"] for r in results])
            frac = np.mean([r["rows"][i][kind]["median_translation_frac"] for r in results])
            cells.append(f"{100 * conv.mean():.0f} ± {100 * conv.std():.0f} % / {deg:.2f}, {frac:.2f}")
        lines.append(f"| {p[0]}, {p[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", required=True, help="trained SA4Depth checkpoints")
    parser.add_argument("--data", default=None, help="dataset root (default: the checkpoint's)")
    parser.add_argument("--out", default="benchmarks/results/lm_basin")
    args = parser.parse_args()
    torch.set_num_threads(1)  # 6x6 solves: a second thread costs more than it brings
    results = [basin(c, args.data, seed) for seed, c in enumerate(args.checkpoints)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(results)
    command = "python benchmarks/lm_basin.py --checkpoints " + " ".join(args.checkpoints)
    (out / "summary.md").write_text(
        f"Command: {command}\n\nConverged: final error < {SUCCESS_DEG} deg and < {SUCCESS_FRAC:.0%} of |t| "
        f"(mean ± std over {len(results)} checkpoints); medians averaged over checkpoints. Ground-truth "
        f"depth, held-out test snippets, both source frames.\n\n{text}\n"
    )
    write_metrics_json(
        out / "summary.json",
        {"command": command, "results": results, "torch": torch.__version__, "machine": platform.platform()},
    )
    print(text)


if __name__ == "__main__":
    run_script(main)
