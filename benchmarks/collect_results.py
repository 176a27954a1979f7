"""One report from the committed SA4Depth runs: pipelines with and without the refinement, and ablations.

Reads the ``summary.json`` that `compare_sa4depth.py` writes in each result folder and writes
``benchmarks/results/sa4depth_report.md``. Nothing is re-run.

    python benchmarks/collect_results.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sa4depth.errors import run_script

RESULTS = Path("benchmarks/results")
COLUMNS = {
    "abs_rel": "AbsRel",
    "sq_rel": "SqRel",
    "rmse": "RMSE",
    "a1": "δ<1.25",
    "seq_scale_std": "Seq Scale Std",
    "within_seq_cv": "within-seq CV",
    "pose_depth_ratio": "pose-depth ratio",
    "ate_5frame": "5-frame ATE",
}
# (row label, result folder, variant name in its summary.json, the command that made the folder)
PIPELINES = [
    (
        "Monodepth2",
        "compare_md2",
        "monodepth2",
        "python benchmarks/compare_sa4depth.py --steps 600 --seeds 0 1 2 3 4 --variants monodepth2 "
        "monodepth2+sa4depth --out benchmarks/results/compare_md2",
    ),
    ("Monodepth2 + SA4Depth", "compare_md2", "monodepth2+sa4depth", "(same)"),
    (
        "SC-Depth",
        "compare_sc",
        "sc_depth",
        "python benchmarks/compare_sa4depth.py --steps 600 --variants sc_depth sc_depth+sa4depth "
        "--out benchmarks/results/compare_sc",
    ),
    ("SC-Depth + SA4Depth", "compare_sc", "sc_depth+sa4depth", "(same)"),
    (
        "SC-Depth + SA4Depth from step 300 (`refine.warmup_steps=300`)",
        "diag_sc_warmup300",
        "sc_depth+sa4depth",
        "python benchmarks/compare_sa4depth.py --steps 600 --seeds 0 1 2 --variants sc_depth+sa4depth "
        "--out benchmarks/results/diag_sc_warmup300 refine.warmup_steps=300",
    ),
]
_ABLATION = "python benchmarks/compare_sa4depth.py --steps 600 --variants monodepth2+sa4depth --out "
ABLATIONS = [
    ("Monodepth2 + SA4Depth (defaults)", "compare_md2", "monodepth2+sa4depth", "see above"),
    (
        "pose net: consistency to the refined pose instead of its own photometric term",
        "ablation_pose_consistency",
        "monodepth2+sa4depth",
        _ABLATION + "benchmarks/results/ablation_pose_consistency refine.pose_photometric_weight=0 "
        "refine.pose_consistency_weight=1",
    ),
    (
        "no gradient through the LM (so the feature network is never trained)",
        "ablation_no_grad_through_lm",
        "monodepth2+sa4depth",
        _ABLATION + "benchmarks/results/ablation_no_grad_through_lm refine.grad_through_lm=false",
    ),
    (
        "refinement from step 300 (`refine.warmup_steps=300`)",
        "diag_md2_warmup300",
        "monodepth2+sa4depth",
        "python benchmarks/compare_sa4depth.py --steps 600 --seeds 0 --variants monodepth2+sa4depth "
        "--out benchmarks/results/diag_md2_warmup300 refine.warmup_steps=300",
    ),
    (
        "raw RGB instead of learned features (strides 1, 2, 4; no confidence)",
        "ablation_rgb_features",
        "monodepth2+sa4depth",
        _ABLATION + "benchmarks/results/ablation_rgb_features refine.features=rgb",
    ),
]


def runs_of(folder: str, variant: str) -> list[dict] | None:
    path = RESULTS / folder / "summary.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())["runs"].get(variant) or None


def cell(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
    digits = 4 if key == "ate_5frame" else 3
    return "-" if v.size == 0 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def welch_t(a: list[dict], b: list[dict], key: str) -> float:
    """Welch's t of ``mean(b) - mean(a)`` (sample std); |t| < ~2.8 is within noise for 3 + 3 runs."""
    x, y = (np.array([r[key] for r in rows], dtype=float) for rows in (a, b))
    se = np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y))
    return float((y.mean() - x.mean()) / se) if se > 0 else float("nan")


def table(entries: list[tuple[str, str, str, str]], reference: tuple[str, str] | None) -> list[str]:
    lines = [
        "| model | n | " + " | ".join(COLUMNS.values()) + " | t(AbsRel) | t(Seq Scale Std) |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    base = runs_of(*reference) if reference else None
    for label, folder, variant, _ in entries:
        rows = runs_of(folder, variant)
        if rows is None:
            lines.append(f"| {label} | 0 | " + " | ".join("not run" for _ in COLUMNS) + " | | |")
            continue
        t_cells = ["", ""]
        if base is not None and (folder, variant) != reference and len(rows) > 1:
            t_cells = [f"{welch_t(base, rows, k):+.1f}" for k in ("abs_rel", "seq_scale_std")]
        cells = " | ".join(cell(rows, k) for k in COLUMNS)
        lines.append(f"| {label} | {len(rows)} | {cells} | {' | '.join(t_cells)} |")
    return lines


def lm_agreement_table() -> list[str]:
    path = RESULTS / "lm_agreement.json"
    if not path.is_file():
        return ["(not run: `python benchmarks/lm_agreement.py <checkpoints>`)"]
    data = json.loads(path.read_text())
    lines = [
        f"Command: `{data['command']}` (source 0, the previous frame; means over the test snippets)",
        "",
        "| checkpoint | refined / pose-net translation | cos(pose net, GT) | cos(refined, GT) "
        "| rotation error pose net (deg) | rotation error refined (deg) |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        run = "/".join(Path(r["checkpoint"]).parts[-4:-2])
        lines.append(
            f"| {run} | {r['source0/refined_over_pose_net_t']:.2f} | {r['source0/cos_pose_net_gt']:.3f} "
            f"| {r['source0/cos_refined_gt']:.3f} | {r['source0/rot_err_pose_net_deg']:.3f} "
            f"| {r['source0/rot_err_refined_deg']:.3f} |"
        )
    return lines


def overhead_lines() -> list[str]:
    lines = []
    train = RESULTS / "train_overhead.json"
    if train.is_file():
        data = json.loads(train.read_text())
        entry = data["results"][0]
        where = f"{entry['size']}, batch {entry['batch']}, {entry['encoder']}"
        lines.append(f"Training-step overhead over the baseline, {where} (`{data['command']}`):")
        lines += [f"- {name}: {100 * v:+.0f} %" for name, v in entry["overhead_over_baseline"].items()]
    memory = RESULTS / "memory.json"
    if memory.is_file():
        data = json.loads(memory.read_text())
        lines.append("")
        lines.append(f"Peak RSS, 192x640, batch 12 (`{data['command']}`):")
        lines += [
            f"- {r['variant']}: {r['peak_rss_gib']:.2f} GiB" for r in data["results"] if "peak_rss_gib" in r
        ]
    return lines or ["(not measured)"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(RESULTS / "sa4depth_report.md"))
    args = parser.parse_args()
    out = [
        "# SA4Depth on the synthetic benchmark set: pipelines and ablations",
        "",
        "**Withdrawn as evidence (2026-12-01).** These runs used the world before it was fixed (0.25 m",
        "per frame: about one pixel of motion per frame at 64x192) and 600 steps, where the baselines were",
        "only a little better than a constant depth map (AbsRel 0.75). They are kept for the record; the",
        "comparison that counts is `benchmarks/results/converged/` (the CPU recipe, 3000 steps; README).",
        "",
        "Made by `python benchmarks/collect_results.py` from the `summary.json` of each folder below.",
        "All runs: 64x192, batch 4, 600 steps, ImageNet EfficientNet-Lite0 depth encoder, seeds 0, 1, 2 (and",
        "3, 4 for Monodepth2 +- SA4Depth; n gives the count),",
        "evaluated on the 4 held-out test streets; mean ± std over seeds. t: Welch's t of the row against",
        "the first row of its table (negative = lower); p < 0.05 needs |t| > 2.8 with 3 + 3 runs,",
        "2.3 with 5 + 5.",
        "",
        "## Pipelines with and without SA4Depth",
        "",
        *table(PIPELINES[:2], ("compare_md2", "monodepth2")),
        "",
        *table(PIPELINES[2:], ("compare_sc", "sc_depth")),
        "",
        "## Ablations (Monodepth2 + SA4Depth; one change each)",
        "",
        *table(ABLATIONS, ("compare_md2", "monodepth2+sa4depth")),
        "",
        "## Does the trained LM agree with the ground truth?",
        "",
        *lm_agreement_table(),
        "",
        "## Convergence basin of the trained LM (ground-truth depth)",
        "",
        *(
            (RESULTS / "lm_basin" / "summary.md").read_text().splitlines()
            if (RESULTS / "lm_basin" / "summary.md").is_file()
            else ["(not run)"]
        ),
        "",
        "## Cost",
        "",
        *overhead_lines(),
        "",
        "## Commands",
        "",
        *[f"- {label}: `{command}`" for label, _, _, command in PIPELINES + ABLATIONS[1:]],
        "",
    ]
    Path(args.out).write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    run_script(main)
