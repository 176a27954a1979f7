"""Check that two runs logged the same TensorBoard scalars before a step (e.g. SA4Depth and its baseline).

Before ``refine.warmup_steps`` SA4Depth trains exactly as its baseline, which is what lets it fork from the
baseline's kept checkpoint (`sa4depth.train.fork`); this prints, per tag, how many points both runs
logged before ``--before`` and whether every one of them is bit-identical.

    python benchmarks/identical_before.py benchmarks/results/size_96x320_3000/sc_depth_seed0 \
        benchmarks/results/size_96x320_3000/sc_depth_sa4depth_seed0 --before 1500
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sa4depth.apps.visualize import load_scalars
from sa4depth.errors import run_script


def compare(a: dict, b: dict, before: int) -> list[tuple[str, int, int, bool]]:
    """Per tag both runs logged: (tag, shared points before ``before``, last shared step, all equal)."""
    rows = []
    for tag in sorted(a.keys() & b.keys()):
        pa = dict(zip(a[tag][0].tolist(), a[tag][1].tolist(), strict=True))
        pb = dict(zip(b[tag][0].tolist(), b[tag][1].tolist(), strict=True))
        shared = sorted(s for s in pa.keys() & pb.keys() if s < before)
        if shared:
            rows.append((tag, len(shared), shared[-1], all(pa[s] == pb[s] for s in shared)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--before", type=int, required=True, help="compare points before this step")
    args = parser.parse_args()
    rows = compare(load_scalars(Path(args.run_a)), load_scalars(Path(args.run_b)), args.before)
    print(f"{args.run_a} vs {args.run_b}, points logged before step {args.before}:\n")
    print("| tag | shared points | last step | identical |\n|---|---|---|---|")
    for tag, n, last, same in rows:
        print(f"| {tag} | {n} | {last} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    run_script(main)
