"""How far the trained LM moves the pose net's pose, and which of the two agrees with the ground truth.

For an SA4Depth checkpoint, on the held-out test snippets: the pose net's ``T_src_tgt``, the LM-refined
one (with the network's own predicted depth, exactly as in training) and the ground truth. Reports per
source frame the mean translation norm of each (network units for the two estimates, metres for the
ground truth), the cosine of each translation direction to the ground truth's, and the rotation error.
A healthy run has refined and pose-net directions both close to the ground truth (cosine ~1).

    python benchmarks/lm_agreement.py \
        benchmarks/results/compare_md2/monodepth2_sa4depth_seed0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.geometry import Pose
from sa4depth.train.model import batch_camera
from sa4depth.train.objectives import upsample_to
from sa4depth.train.run import load_checkpoint


@torch.no_grad()
def agreement(checkpoint: str) -> dict:
    system, cfg = load_checkpoint(checkpoint)
    model = system.model
    if model.refinement is None:
        raise SystemExit(f"{checkpoint}: not an SA4Depth checkpoint (refine.enabled is false)")
    loader = DataLoader(build_dataset(cfg.data, "test", train=False), batch_size=16, collate_fn=collate)
    sums: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        keep = batch["has_pose"]
        if not keep.any():
            continue
        images = batch["images"][keep]
        disp = model.depth_net(images[:, 0])[0]
        depth = model.depth_from_disp(upsample_to(disp, tuple(images.shape[-2:])))
        poses = model.predict_poses(images)
        refined, _ = model.refinement(images, depth, batch_camera(batch)[keep], poses)
        for j, (T_net, T_ref) in enumerate(zip(poses, refined, strict=True)):
            T_gt = Pose.from_4x4mat(batch["T_src_tgt"][keep][:, j])
            rows = {
                "t_norm_pose_net": T_net.t.norm(dim=-1),
                "t_norm_refined": T_ref.t.norm(dim=-1),
                "t_norm_ground_truth_m": T_gt.t.norm(dim=-1),
                "cos_pose_net_gt": (F.normalize(T_net.t, dim=-1) * F.normalize(T_gt.t, dim=-1)).sum(-1),
                "cos_refined_gt": (F.normalize(T_ref.t, dim=-1) * F.normalize(T_gt.t, dim=-1)).sum(-1),
                "rot_err_pose_net_deg": (T_net.inv() @ T_gt).magnitude()[0],
                "rot_err_refined_deg": (T_ref.inv() @ T_gt).magnitude()[0],
            }
            for k, v in rows.items():
                sums.setdefault(f"source{j}/{k}", []).append(v)
    out = {k: round(float(torch.cat(v).mean()), 5) for k, v in sums.items()}
    for j in range(len(cfg.data.offsets)):
        out[f"source{j}/refined_over_pose_net_t"] = round(
            out[f"source{j}/t_norm_refined"] / out[f"source{j}/t_norm_pose_net"], 4
        )
    return {"checkpoint": checkpoint, **out}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--output", default="benchmarks/results/lm_agreement.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = [agreement(c) for c in args.checkpoints]
    command = "python benchmarks/lm_agreement.py " + " ".join(args.checkpoints)
    write_metrics_json(Path(args.output), {"command": command, "results": results})
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    run_script(main)
