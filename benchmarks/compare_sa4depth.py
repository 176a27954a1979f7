"""The mission's proof on this machine: baseline vs +SA4Depth, both pipelines, several seeds, same budget.

Trains every (pipeline, refinement, seed) on the synthetic benchmark set with the same number of steps,
evaluates on the held-out test sequences, and writes per-run JSON plus a mean +- std table.

    python benchmarks/compare_sa4depth.py --steps 600 --seeds 0 1 2 --out benchmarks/results/compare
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sa4depth.data import synthetic
from sa4depth.demo import COLUMNS, DEMO_OVERRIDES, flat_summary, train_and_evaluate
from sa4depth.eval.report_table import write_metrics_json

VARIANTS = {
    "monodepth2": ["loss.pipeline=monodepth2"],
    "monodepth2+sa4depth": ["loss.pipeline=monodepth2", "refine.enabled=true"],
    "sc_depth": ["loss.pipeline=sc_depth", "loss.smoothness_weight=0.1", "loss.num_scales=1"],
    "sc_depth+sa4depth": [
        "loss.pipeline=sc_depth",
        "loss.smoothness_weight=0.1",
        "loss.num_scales=1",
        "refine.enabled=true",
    ],
}


def summarise(runs: dict[str, list[dict]]) -> str:
    header = "| variant | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, rows in runs.items():
        cells = []
        for c in COLUMNS:
            values = np.array([r[c] for r in rows if r.get(c) is not None], dtype=float)
            cells.append("-" if values.size == 0 else f"{values.mean():.4f} ± {values.std():.4f}")
        lines.append(f"| {name} (n={len(rows)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_untrained_reference(args, out: Path) -> None:
    """The same networks before any training: what "learns" has to beat."""
    from sa4depth.config import load_config
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.train.model import DepthPoseModel

    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        cfg = load_config(
            None,
            [
                f"data.root={args.data}",
                f"data.height={args.height}",
                f"data.width={args.width}",
                *DEMO_OVERRIDES,
                *args.overrides,
            ],
        )
        rows.append(flat_summary(evaluate_model(DepthPoseModel(cfg), cfg, split="test")))
    table = summarise({"untrained": rows})
    (out / "untrained.md").write_text(
        f"Command: python benchmarks/compare_sa4depth.py --untrained-reference --seeds "
        f"{' '.join(map(str, args.seeds))}\n\n{table}\n"
    )
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="benchmarks/results/compare")
    parser.add_argument("--data", default="data/synthetic_benchmark_64x192")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--untrained-reference", action="store_true", help="only evaluate the untrained networks (per seed)"
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    args = parser.parse_args()

    out = Path(args.out)
    if args.untrained_reference:
        write_untrained_reference(args, out)
        return
    if not (Path(args.data) / "splits").is_dir():
        synthetic.benchmark_set(args.data, height=args.height, width=args.width)
    runs: dict[str, list[dict]] = {name: [] for name in args.variants}
    for seed in args.seeds:
        for name in args.variants:
            run_dir = out / f"{name.replace('+', '_')}_seed{seed}"
            metrics_file = run_dir / "metrics_test.json"
            if metrics_file.is_file():
                results = json.loads(metrics_file.read_text())
            else:
                overrides = [
                    f"data.root={args.data}",
                    f"data.height={args.height}",
                    f"data.width={args.width}",
                    f"data.batch_size={args.batch_size}",
                    f"trainer.max_steps={args.steps}",
                    f"trainer.seed={seed}",
                    *DEMO_OVERRIDES,
                    *VARIANTS[name],
                    *args.overrides,
                ]
                start = time.time()
                results, _ = train_and_evaluate(run_dir, overrides)
                print(
                    f"{name} seed {seed}: {time.time() - start:.0f} s, "
                    f"abs_rel {results['depth']['abs_rel']:.4f}",
                    flush=True,
                )
            runs[name].append(flat_summary(results))
            table = summarise(runs)
            (out / "summary.md").write_text(
                f"Command: python benchmarks/compare_sa4depth.py --steps {args.steps} --seeds "
                f"{' '.join(map(str, args.seeds))} --height {args.height} --width {args.width} "
                f"{' '.join(args.overrides)}\n\n{table}\n"
            )
            write_metrics_json(
                out / "summary.json",
                {
                    "runs": runs,
                    "steps": args.steps,
                    "seeds": args.seeds,
                    "resolution": [args.height, args.width],
                    "batch_size": args.batch_size,
                    "torch": torch.__version__,
                    "machine": platform.platform(),
                    "threads": torch.get_num_threads(),
                    "overrides": args.overrides,
                },
            )
    print(summarise(runs))


if __name__ == "__main__":
    main()
