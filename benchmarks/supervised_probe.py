"""Can the recipe's depth network represent the world's depth at all? Train it on ground truth.

The CPU recipe's depth net (same encoder, decoder, input size, batch, Adam schedule) is trained with
ground-truth depth instead of view synthesis: the scale-invariant log loss (Eigen et al. 2014, lambda
0.85) on pixels with depth, so the depth unit stays free as in self-supervision. Validation AbsRel
(median-scaled, the synthetic protocol) every ``--val-every`` steps. If this reaches a far lower AbsRel
than the self-supervised baseline at the same steps, the network and optimizer are not what limits
the baseline; the self-supervised signal is.

    OMP_NUM_THREADS=1 python benchmarks/supervised_probe.py --steps 1500
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sa4depth.config import load_config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.protocols import get_protocol
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.models.depth_net import DepthNet
from sa4depth.recipes import recipe_path
from sa4depth.train.system import warmup_cosine


def silog(depth: torch.Tensor, gt: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """Scale-invariant log loss over pixels with ground truth; ``depth``, ``gt`` ``(B, 1, H, W)``."""
    valid = gt > 0
    d = torch.where(valid, torch.log(depth.clamp(min=1e-6)) - torch.log(gt.clamp(min=1e-6)), 0.0)
    n = valid.flatten(1).sum(1).clamp(min=1)
    mean = d.flatten(1).sum(1) / n
    mean_sq = (d**2).flatten(1).sum(1) / n
    return torch.sqrt((mean_sq - lam * mean**2).clamp(min=1e-12)).mean()


@torch.no_grad()
def validate(net: DepthNet, loader: DataLoader, protocol: str) -> float:
    net.eval()
    acc = DepthMetricAccumulator(get_protocol(protocol))
    for batch in loader:
        depth = net.predict_depth(batch["images"][:, 0])
        for i in torch.nonzero(batch["has_depth"]).flatten().tolist():
            acc.update(depth[i, 0], batch["depth"][i, 0], sequence=batch["sequence"][i])
    net.train()
    return float(acc.compute()["abs_rel"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.encoder=resnet18")
    parser.add_argument("--out", default="benchmarks/results/supervised_probe")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    cfg = load_config(recipe_path("synthetic_cpu"), args.overrides)
    m, o = cfg.model, cfg.optim
    # The same encoder initialisation as training (`model.pretrained=imagenet` loads the packaged Lite0).
    pretrained = m.weights(m.pretrained)
    net = DepthNet(encoder=m.encoder, pretrained=pretrained, min_depth=m.min_depth, max_depth=m.max_depth)
    net.train()
    train_set = build_dataset(cfg.data, "train", train=True)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        train_set, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate, generator=generator
    )
    val_loader = DataLoader(build_dataset(cfg.data, "val", train=False), batch_size=16, collate_fn=collate)
    optimizer = torch.optim.Adam(net.parameters(), o.lr)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, o.warmup_steps, args.steps)
    )
    curve = {"step": [], "val_abs_rel": [], "train_loss": []}
    step, losses = 0, []
    while step < args.steps:
        for batch in loader:
            depth = net.predict_depth(batch["images_aug"][:, 0])
            loss = silog(depth, batch["depth"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if step % args.val_every == 0 or step == args.steps:
                curve["step"].append(step)
                curve["val_abs_rel"].append(validate(net, val_loader, cfg.eval_protocol))
                curve["train_loss"].append(float(np.mean(losses)))
                losses = []
                print(f"step {step}: val AbsRel {curve['val_abs_rel'][-1]:.3f}", flush=True)
            if step == args.steps:
                break
    name = "_".join([f"seed{args.seed}", *(o.replace("=", "-").replace("/", "-") for o in args.overrides)])
    command = f"python benchmarks/supervised_probe.py --steps {args.steps} --seed {args.seed}"
    write_metrics_json(
        Path(args.out) / f"{name}.json",
        {
            "command": " ".join([command, *args.overrides]),
            "recipe": "synthetic_cpu",
            "overrides": args.overrides,
            "loss": "scale-invariant log (lambda 0.85) on ground-truth depth",
            "machine": platform.platform(),
            **curve,
        },
    )


if __name__ == "__main__":
    run_script(main)
