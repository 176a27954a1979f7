"""Performance benchmarks of sa4depth: train step, inference, memory, data, scaling, profile, LM sweep.

Usage (each writes benchmarks/results/<what>.json; see benchmarks/README.md for the numbers):
    python benchmarks/bench_perf.py train --sizes 96x320 192x640 --data-root data/synthetic_benchmark_64x192
    python benchmarks/bench_perf.py inference --batches 1 8
    python benchmarks/bench_perf.py memory --batch 12
    python benchmarks/bench_perf.py data --data-root /tmp/sa4depth_bench_192x640
    python benchmarks/bench_perf.py lm --size 96x320 --levels 1 2 3 --iterations 1 3 5
    python benchmarks/bench_perf.py scaling          # reuses train.json rows; adds lm.json to the plot
    python benchmarks/bench_perf.py profile --sizes 96x320
All but ``lm`` are `sa4depth.apps.bench` (``sa4depth bench <what>``); ``lm`` reuses `bench_lm.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from sa4depth.apps import bench
from sa4depth.errors import run_script

RESULTS = Path(__file__).resolve().parent / "results"


def lm_sweep(size: str, batch: int, levels: list[int], iterations: list[int], repeats: int) -> dict:
    """LM forward+backward (and FeatureNet + LM) seconds per (levels, iterations), via `bench_lm.bench`."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_lm

    from sa4depth.models.feature_net import FeatureNet
    from sa4depth.refine import LMConfig, LMRefiner

    H, W = (int(x) for x in size.split("x"))
    rows_by_levels: dict[str, list[dict]] = {}
    for n_levels in levels:
        torch.manual_seed(0)
        net = FeatureNet(levels=n_levels)
        for iters in iterations:
            lm = LMRefiner(LMConfig(levels=n_levels, iterations=iters))
            t_lm, t_all = bench_lm.bench(net, lm, batch, H, W, repeats, "cpu")
            row = {
                "levels": n_levels,
                "iterations": iters,
                "lm_fwd_bwd_s": t_lm,
                "featurenet_plus_lm_fwd_bwd_s": t_all,
            }
            rows_by_levels.setdefault(str(n_levels), []).append(row)
            logging.info("lm %s", row)
    return {
        "benchmark": "lm_scaling",
        "size": size,
        "batch": batch,
        "repeats": repeats,
        "note": "median seconds; FeatureNet runs on 2*batch images (target + source)",
        "rows_by_levels": rows_by_levels,
    }


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float))
    logging.info("written %s", path)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(sys.argv) > 1 and sys.argv[1] == "lm":
        p = argparse.ArgumentParser(prog="bench_perf.py lm")
        p.add_argument("--size", default="96x320")
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3])
        p.add_argument("--iterations", type=int, nargs="+", default=[1, 3, 5])
        p.add_argument("--repeats", type=int, default=2)
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--output", default=str(RESULTS / "lm.json"))
        args = p.parse_args(sys.argv[2:])
        if args.threads:
            torch.set_num_threads(args.threads)
        before = bench.machine_info()
        result = lm_sweep(args.size, args.batch, args.levels, args.iterations, args.repeats)
        _write(
            Path(args.output),
            {
                "command": " ".join(sys.argv),
                "machine_before": before,
                **result,
                "machine_after": bench.machine_info(),
            },
        )
        return
    parser = argparse.ArgumentParser(prog="bench_perf.py", description=bench.__doc__.splitlines()[0])
    bench.add_arguments(parser)
    args = parser.parse_args()
    if args.output is None:
        args.output = str(RESULTS / f"{args.what}.json")
    result = bench.run(args)
    if args.what == "scaling" and (RESULTS / "lm.json").is_file():
        bench.plot_scaling(result, result["plot"], json.loads((RESULTS / "lm.json").read_text()))


if __name__ == "__main__":
    run_script(main)
