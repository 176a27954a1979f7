"""Where SA4Depth's training-step overhead goes: the recipe's step split into its refinement parts.

Usage (one thread; results/refine_cost/<name>.json):
    OMP_NUM_THREADS=1 python benchmarks/refine_profile.py --name breakdown_64x192
    OMP_NUM_THREADS=1 python benchmarks/refine_profile.py --name breakdown_192x640 --repeats 5 \
        --overrides model.encoder=resnet18 model.pose_encoder=resnet18 data.height=192 data.width=640

Every part runs on the inputs of a real step (the recipe's first training batch, its current
networks) and all parts are timed round-robin, one call each per round, so a change of machine load
hits them alike; figures are medians. ``step`` is forward + backward + Adam of the whole model; a
part's ``fwd_bwd`` includes its own backward (to its inputs and parameters) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from sa4depth.apps.bench import machine_info
from sa4depth.config import load_config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.geometry import Camera, Pose
from sa4depth.recipes import recipe_path
from sa4depth.refine.residuals import build_level, residual_jacobian
from sa4depth.refine.solver import build_system, lm_step, robust_cost
from sa4depth.train.model import DepthPoseModel, batch_camera
from sa4depth.train.objectives import upsample_to

RESULTS = Path(__file__).resolve().parent / "results" / "refine_cost"


def build(overrides: list[str], refine: bool, seed: int = 0):
    """The recipe's model (+ Adam) with ``overrides``, refinement on or off."""
    torch.manual_seed(seed)
    cfg = load_config(recipe_path("synthetic_cpu"), [*overrides, f"refine.enabled={str(refine).lower()}"])
    model = DepthPoseModel(cfg).train()
    return cfg, model, torch.optim.Adam(model.parameters(), 1e-4)


def train_step(model, optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    model.training_forward(batch)[0].backward()
    optimizer.step()


def leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def lm_inputs(model: DepthPoseModel, batch: dict) -> tuple:
    """The arguments `PoseRefinement` hands the LM in this step, as leaves that take gradients."""
    ref = model.refinement
    images = batch["images_aug"]
    B, N = images.shape[:2]
    S = N - 1
    with torch.no_grad():
        depth = model.depth_from_disp(upsample_to(model.depth_net(images[:, 0])[0], images.shape[-2:]))
        poses = model.predict_poses(images)
        feats, confs = ref.features(images.flatten(0, 1))
    feats = [f.unflatten(0, (B, N)) for f in feats]
    confs = [c.unflatten(0, (B, N)) for c in confs]
    camera = batch_camera(batch)
    return (
        [leaf(f[:, :1].expand(-1, S, -1, -1, -1).transpose(0, 1).flatten(0, 1)) for f in feats],
        [leaf(c[:, :1].expand(-1, S, -1, -1, -1).transpose(0, 1).flatten(0, 1)) for c in confs],
        [leaf(f[:, 1:].transpose(0, 1).flatten(0, 1)) for f in feats],
        [leaf(c[:, 1:].transpose(0, 1).flatten(0, 1)) for c in confs],
        leaf(depth.repeat(S, 1, 1, 1)),
        Camera(camera.data.repeat(S, 1)),
        Pose(leaf(torch.cat([T.data for T in poses]))),
    )


def parts(overrides: list[str]) -> dict:
    """name -> zero-argument callable, one per timed part (the closures share one step's inputs)."""
    cfg, base, base_opt = build(overrides, refine=False)
    cfg, model, opt = build(overrides, refine=True)
    dataset = build_dataset(cfg.data, "train", train=True)
    batch = collate([dataset[i] for i in range(cfg.data.batch_size)])
    ref = model.refinement
    lm = ref.lm
    c = lm.config
    images = batch["images_aug"].flatten(0, 1)
    args = lm_inputs(model, batch)
    feats_tgt, conf_tgt, feats_src, conf_src, depth, camera, T_init = args
    first = len(feats_tgt) - c.levels

    def feature_fwd_bwd():
        feats, confs = ref.features(images)
        sum(f.sum() for f in feats + confs).backward()

    def lm_fwd_bwd():
        T, _ = lm(*args)
        T.data.sum().backward()

    def levels():
        return [
            build_level(
                feats_tgt[first + k],
                conf_tgt[first + k],
                feats_src[first + k],
                conf_src[first + k],
                depth,
                camera,
                c.depth_pool,
            )
            for k in range(c.levels)
        ]

    problems = levels()
    T0 = T_init.detach()

    def lm_part(level: int, upto: str):
        """One LM step of ``level`` at the initial pose (graph recorded), up to and including ``upto``."""
        problem, lam = problems[level], lm.damping(level)

        def run():
            lin = residual_jacobian(T0, problem, c.use_confidence)
            if upto == "residuals":
                return
            rho, rho_prime = robust_cost((lin.residuals**2).sum(1), c.robust, c.robust_scale)
            g, H = build_system(lin.J_feat, lin.J_geom, lin.residuals, lin.weights * rho_prime)
            if upto == "system":
                return
            delta, failed = lm_step(g, H, lam, mask=torch.ones_like(failed_all), eps=c.eps)
            if upto == "solve":
                return
            Pose.from_aa(delta[..., :3], delta[..., 3:]) @ T0

        return run

    failed_all = torch.zeros(T0.shape[0], dtype=torch.bool)
    depth_tgt = depth[: batch["images"].shape[0]].detach()  # the step's depth, as the term sees it

    def pose_photometric_fwd_bwd():
        poses = model.predict_poses(batch["images_aug"])
        reference = model.pose_net_objective.prepare(batch["images"])
        objective = model.pose_net_objective
        loss, _ = objective.photometric(batch["images"], depth_tgt, poses, batch_camera(batch), reference)
        loss.backward()

    def pose_net_fwd_bwd():
        sum(T.data.sum() for T in model.predict_poses(batch["images_aug"])).backward()

    out = {
        "step_baseline": lambda: train_step(base, base_opt, batch),
        "step_sa4depth": lambda: train_step(model, opt, batch),
        "feature_net_fwd": lambda: ref.features(images),
        "feature_net_fwd_bwd": feature_fwd_bwd,
        "lm_fwd": lambda: lm(*args),
        "lm_fwd_bwd": lm_fwd_bwd,
        "lm_build_levels": levels,
        "pose_net_fwd_bwd": pose_net_fwd_bwd,
        "pose_photometric_with_pose_net_fwd_bwd": pose_photometric_fwd_bwd,
        "adam_baseline": base_opt.step,
        "adam_sa4depth": opt.step,
    }
    for k in range(c.levels):
        for upto in ("residuals", "system", "solve", "update"):
            out[f"lm_level{k}_step_upto_{upto}"] = lm_part(k, upto)
    # Gradients for Adam to use (its cost does not depend on their values).
    train_step(base, base_opt, batch)
    train_step(model, opt, batch)
    return out


def time_parts(fns: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="breakdown_64x192")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = machine_info()
    fns = parts(args.overrides)
    times = time_parts(fns, args.repeats)
    med = {k: round(statistics.median(v), 5) for k, v in times.items()}
    result = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "machine_before": before,
        "overrides": args.overrides,
        "repeats": args.repeats,
        "median_s": med,
        "overhead": round(med["step_sa4depth"] / med["step_baseline"] - 1, 4),
        "machine_after": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(med, indent=1), f"\noverhead {result['overhead']:+.1%}\nwritten {path}")


if __name__ == "__main__":
    run_script(main)
