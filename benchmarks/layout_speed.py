"""Training step time of the CPU recipe before and after channels-last nets and fused Adam, side by side.

"before": depth and pose nets contiguous, Adam looping over its tensors (the code up to 2026-12-07);
"now": the nets as `DepthNet` and `PoseNet` build them (channels-last) and fused Adam, as
`DepthPoseSystem` configures it in full precision. Both variants (baseline, + SA4Depth) on the same
random batch; the settings alternate within each repeat, so machine load hits them alike. The first
steps' losses are kept in the JSON, to compare.

    OMP_NUM_THREADS=1 python benchmarks/layout_speed.py --out benchmarks/results/layout_speed.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from sa4depth.apps.bench import TrainStep, machine_info, random_batch, summarize
from sa4depth.errors import InputError, run_script
from sa4depth.eval.report_table import write_metrics_json

# The CPU recipe's networks and loss (src/sa4depth/recipes/synthetic_cpu.yaml) at its 64x192, batch 4.
RECIPE = [
    "model.encoder=efficientnet_lite0",
    "model.pretrained=imagenet",
    "model.pose_encoder=efficientnet_lite0",
    "model.pose_pretrained=imagenet",
    "loss.num_scales=1",
    "loss.automask=false",
]
VARIANTS = {"baseline": [], "sa4depth": ["refine.enabled=true"]}


def build(variant: str, setting: str) -> TrainStep:
    """A `TrainStep` as training runs now, or with the nets contiguous and Adam unfused ("before")."""
    step = TrainStep(RECIPE + VARIANTS[variant])
    if setting == "before":
        model = step.model
        model.depth_net.to(memory_format=torch.contiguous_format)
        model.pose_net.to(memory_format=torch.contiguous_format)
        step.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (their losses compared)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name}", f"must be at least 1, got {getattr(args, name)}")
    batch = random_batch(4, 64, 192)
    result = {"command": "python " + " ".join(sys.argv), "machine_before": machine_info(), "variants": {}}
    times = {v: {"before": [], "now": []} for v in VARIANTS}
    losses = {v: {} for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            for setting in ("before", "now"):
                step = build(variant, setting)
                losses[variant][setting] = [step(batch) for _ in range(args.warmup)]
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(batch)
                times[variant][setting].append((time.perf_counter() - start) / args.steps)
    for variant in VARIANTS:
        before, now = (summarize(times[variant][s]) for s in ("before", "now"))
        result["variants"][variant] = {
            "before": before,
            "now": now,
            "speedup": before["median_s"] / now["median_s"],
            "first_losses": losses[variant],
        }
        print(f"{variant}: {before['median_s']:.3f} s -> {now['median_s']:.3f} s per step", flush=True)
    result["machine_after"] = machine_info()
    write_metrics_json(args.out, result)


if __name__ == "__main__":
    run_script(main)
