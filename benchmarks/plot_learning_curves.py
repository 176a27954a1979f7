"""Learning curves of a comparison: held-out AbsRel and pose-depth ratio against the training step.

One column per pipeline, baseline and + SA4Depth overlaid, mean over seeds with a band of +- one std.
Reads the ``curve.json`` that `compare_sa4depth.py` writes into every run folder (validation split).

    python benchmarks/plot_learning_curves.py benchmarks/results/converged   # -> .../learning_curves.png

``--lever LABEL=FOLDER:VARIANT`` (repeated) instead overlays one variant from several result folders,
e.g. a baseline under different recipes, in one column:

    python benchmarks/plot_learning_curves.py --out levers.png \
        --lever recipe=benchmarks/results/pretrained_3000:monodepth2 \
        --lever 96x320=benchmarks/results/size_96x320_3000:monodepth2
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from sa4depth.apps.visualize import save_png
from sa4depth.errors import run_script

PIPELINES = {"monodepth2": "Monodepth2", "sc_depth": "SC-Depth"}
PANELS = (
    ("val/abs_rel", "held-out AbsRel (val streets)"),
    ("val/pose_depth_scale_ratio", "pose-depth ratio"),
)


def load_curves(
    folder: Path, seeds: list[int] | None = None, finished_only: bool = False
) -> dict[str, list[dict]]:
    """Variant folder prefix (e.g. ``monodepth2_sa4depth``) -> the curves of its seeds.

    A finished run has ``curve.json``; a run still training is read from its TensorBoard logs (its curve
    then ends early, and the mean is taken over the steps every seed has reached), unless
    ``finished_only``.
    """
    from sa4depth.apps.visualize import load_scalars

    curves: dict[str, list[dict]] = {}
    for run_dir in sorted(p for p in folder.glob("*_seed*") if p.is_dir()):
        variant, seed = re.fullmatch(r"(.+)_seed(\d+)", run_dir.name).groups()
        if seeds is not None and int(seed) not in seeds:
            continue
        if (run_dir / "curve.json").is_file():
            curve = json.loads((run_dir / "curve.json").read_text())
        elif (run_dir / "tensorboard").is_dir() and not finished_only:
            scalars = load_scalars(run_dir)
            curve = {
                t: {"step": s.astype(int).tolist(), "value": v.tolist()} for t, (s, v) in scalars.items()
            }
        else:
            continue
        curves.setdefault(variant, []).append(curve)
    return curves


def mean_band(runs: list[dict], tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Steps common to every seed, and the mean and std of ``tag`` there."""
    series = [r[tag] for r in runs if tag in r]
    if not series:
        return None
    steps = sorted(set.intersection(*(set(s["step"]) for s in series)))
    values = np.array([[dict(zip(s["step"], s["value"], strict=True))[k] for k in steps] for s in series])
    # The sample standard deviation (as the comparison's tables); one seed has no band.
    std = values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(0), std


def draw_band(ax, runs: list[dict], tag: str, colour: str, name: str) -> None:
    """``tag``'s mean over ``runs`` with a +- one-std band, labelled with the number of seeds."""
    band = mean_band(runs, tag)
    if band is None:
        return
    steps, mean, std = band
    label = f"{name} (mean of {len(runs)} seeds)" if len(runs) > 1 else f"{name} (one seed)"
    ax.plot(steps, mean, color=colour, marker="o", markersize=3, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def finish_axis(ax, tag: str, panel: str, title: str) -> None:
    """Title, labels, grid and legend of one panel; the aligned line at 1 for the pose-depth ratio."""
    if tag == "val/pose_depth_scale_ratio":
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(panel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot(curves: dict[str, list[dict]], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipelines = [p for p in PIPELINES if p in curves or f"{p}_sa4depth" in curves]
    fig, axes = plt.subplots(len(PANELS), len(pipelines), figsize=(5 * len(pipelines), 6.5), squeeze=False)
    for c, pipeline in enumerate(pipelines):
        for r, (tag, panel) in enumerate(PANELS):
            ax = axes[r, c]
            for variant, colour, name in (
                (pipeline, "tab:blue", "baseline"),
                (f"{pipeline}_sa4depth", "tab:red", "+ SA4Depth"),
            ):
                draw_band(ax, curves.get(variant, []), tag, colour, name)
            finish_axis(ax, tag, panel, f"{PIPELINES[pipeline]}: {panel}")
    fig.suptitle("band: +- one sample std over seeds", fontsize=9)
    fig.tight_layout()
    save_png(fig, out_png, dpi=100, tight=False)
    plt.close(fig)


def plot_levers(levers: list[tuple[str, list[dict]]], out_png: Path) -> None:
    """One column: each lever's mean curve (band over its seeds) of every panel's tag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(PANELS), 1, figsize=(6, 6.5), squeeze=False)
    for r, (tag, panel) in enumerate(PANELS):
        ax = axes[r, 0]
        for k, (label, runs) in enumerate(levers):
            draw_band(ax, runs, tag, f"C{k}", label)
        finish_axis(ax, tag, panel, panel)
    fig.suptitle("band: +- one sample std over seeds", fontsize=9)
    fig.tight_layout()
    save_png(fig, out_png, dpi=100, tight=False)
    plt.close(fig)


def parse_lever(text: str) -> tuple[str, Path, str]:
    """``LABEL=FOLDER:VARIANT`` -> (label, folder, variant folder prefix)."""
    label, sep, rest = text.partition("=")
    folder, sep2, variant = rest.rpartition(":")
    if not (sep and sep2 and label and folder and variant):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=FOLDER:VARIANT")
    return label, Path(folder), variant.replace("+", "_")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, nargs="?", help="a compare_sa4depth.py result folder")
    parser.add_argument(
        "--lever",
        type=parse_lever,
        action="append",
        default=[],
        help="LABEL=FOLDER:VARIANT, repeated: overlay these runs instead (needs --out)",
    )
    parser.add_argument("--out", type=Path, help="PNG to write (default: FOLDER/learning_curves.png)")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: every seed found)")
    parser.add_argument("--finished-only", action="store_true", help="leave out runs still training")
    args = parser.parse_args()
    if args.lever:
        if args.out is None:
            raise SystemExit("error: --lever needs --out")
        levers = []
        for label, folder, variant in args.lever:
            runs = load_curves(folder, args.seeds, args.finished_only).get(variant)
            if not runs:
                raise SystemExit(f"error: {folder}: no {variant}_seed<N> run inside")
            levers.append((label, runs))
        plot_levers(levers, args.out)
        print(f"written: {args.out}")
        return
    if args.folder is None:
        raise SystemExit("error: give a result folder or --lever")
    curves = load_curves(args.folder, args.seeds, args.finished_only)
    if not curves:
        raise SystemExit(f"error: {args.folder}: no <variant>_seed<N>/curve.json inside")
    out = args.out or args.folder / "learning_curves.png"
    plot(curves, out)
    print(f"written: {out}")


if __name__ == "__main__":
    run_script(main)
