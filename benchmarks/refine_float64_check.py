"""Is the before/after difference of the LM only float32 rounding? Both against a float64 solve.

Usage (results/refine_cost/<name>.json):
    OMP_NUM_THREADS=1 python benchmarks/refine_float64_check.py --before 0d96280 \
        --name lm_float64_check_192x640 --overrides model.encoder=resnet18 model.pose_encoder=resnet18 \
        data.height=192 data.width=640

The LM of the earlier commit runs in float64 (the reference) and in float32, the current LM in float32,
all on the same step's inputs (`refine_before_after.lm_pair`'s); the JSON gives each float32 run's
largest deviation from the reference in the refined pose and in the gradients w.r.t. the LM's inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from refine_before_after import RESULTS, build, import_commit, use_modules
from refine_profile import lm_inputs

from sa4depth.config import load_config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.recipes import recipe_path


def run(lm, args, geometry, dtype):
    """Refined pose and input gradients of ``lm`` on fresh ``dtype`` leaves, both as float64."""
    leaf = lambda t: t.detach().to(dtype).requires_grad_()  # noqa: E731
    a = (
        *([leaf(t) for t in group] for group in args[:4]),
        leaf(args[4]),
        geometry.Camera(args[5].data.to(dtype)),
        geometry.Pose(leaf(args[6].data)),
    )
    leaves = [*(t for group in a[:4] for t in group), a[4], a[6].data]
    T, _ = lm.to(dtype)(*a)
    (T.data * torch.linspace(1, 2, 12, dtype=dtype)).sum().backward()
    return T.data.detach().double(), [t.grad.double() for t in leaves]


def deviation(result, reference) -> dict:
    (T, grads), (T_ref, grads_ref) = result, reference
    return {
        "max_abs_pose": float((T - T_ref).abs().max()),
        "max_abs_input_grad": max(float((g - r).abs().max()) for g, r in zip(grads, grads_ref, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--name", default="lm_float64_check_64x192")
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old = import_commit(args.before, Path(tmp))
        cfg = load_config(recipe_path("synthetic_cpu"), args.overrides)
        dataset = build_dataset(cfg.data, "train", train=True)
        batch = collate([dataset[i] for i in range(cfg.data.batch_size)])
        refine = [*args.overrides, "refine.enabled=true"]
        model_before, model = build(old, refine)[0], build(None, refine)[0]
        inputs = lm_inputs(model, batch)
        with use_modules(old):
            geometry = old["sa4depth.geometry"]
            reference = run(model_before.refinement.lm, inputs, geometry, torch.float64)
            before = run(model_before.refinement.lm, inputs, geometry, torch.float32)
        after = run(model.refinement.lm, inputs, sys.modules["sa4depth.geometry"], torch.float32)
    result = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "before": args.before,
        "overrides": args.overrides,
        "before_float32_vs_before_float64": deviation(before, reference),
        "after_float32_vs_before_float64": deviation(after, reference),
        "after_float32_vs_before_float32": deviation(after, before),
        "max_abs_input_grad_float64": max(float(g.abs().max()) for g in reference[1]),
    }
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=1), f"\nwritten {path}")


if __name__ == "__main__":
    run_script(main)
