"""The built-in default: render the synthetic benchmark world, train baseline and +SA4Depth, compare.

`sa4depth demo` runs it end to end on a laptop CPU (the CPU recipe, `sa4depth.recipes`) and writes a
table with its context, a JSON file and a picture.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from sa4depth.config import load_config
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError
from sa4depth.eval.report_table import format_table, write_metrics_json
from sa4depth.recipes import recipe_path

logger = logging.getLogger(__name__)

VARIANTS = {
    "monodepth2": [],
    "monodepth2+sa4depth": ["refine.enabled=true"],
}
RECIPE = "synthetic_cpu"
# The demo's one change to the recipe: the pose net starts at the world's base speed (0.75 m per frame at
# the ~50 m per depth unit joint training settles on) instead of Monodepth2's identity, so the depth net
# sees motion from the first step. Val AbsRel after 600 steps, seeds 0 / 1 / 2: 0.237 / 0.234 / 0.246
# against the recipe's 0.352 / 0.405 / 0.399 (benchmarks/results/demo_levers). Not yet measured at the
# converged budget, so the recipe and the comparisons made with it keep the identity start.
RECIPE_CHANGES = ["model.pose_forward_init=0.015"]
# The reference row of the table: a constant depth map, median-scaled per image like the models.
CONSTANT_ROW = "constant depth (reference)"
DEMO_RESOLUTION = (64, 192)
QUICK_STEPS = 20
# Measured from a fresh clone on an idle 2-core machine (README, "Two commands"): rendering, both
# trainings side by side and the evaluation.
EXPECTED_MINUTES = {"full": 11, "quick": 1}

COLUMNS = [
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "a1",
    "seq_scale_std",
    "within_seq_cv",
    "pose_depth_ratio",
    "ate_5frame",
]
# Column titles as the README writes them, with the direction that is better.
TITLES = {
    "abs_rel": "AbsRel ↓",
    "sq_rel": "SqRel ↓",
    "rmse": "RMSE (m) ↓",
    "rmse_log": "RMSElog ↓",
    "a1": "δ<1.25 ↑",
    "seq_scale_std": "Seq Scale Std ↓",
    "within_seq_cv": "within-seq CV ↓",
    "pose_depth_ratio": "pose-depth ratio (1 = aligned)",
    "ate_5frame": "5-frame ATE (m) ↓",
}


def flat_summary(results: dict) -> dict[str, float]:
    """The headline numbers of an `evaluate_model` result, flattened for tables."""
    d = results["depth"]
    row = {k: d.get(k) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1")}
    sc = results.get("scale_consistency", {})
    row["seq_scale_std"] = sc.get("seq_scale_std")
    row["within_seq_cv"] = sc.get("within_seq_cv")
    row["pose_depth_ratio"] = results.get("pose_depth_scale_ratio", {}).get("median")
    row["ate_5frame"] = results.get("pose", {}).get("ate_5frame_mean")
    return row


def number_of_sequences(results: dict) -> int:
    """How many test sequences the scale-consistency numbers of one result were computed over."""
    return int(results.get("scale_consistency", {}).get("num_sequences", 0))


def comparison_markdown(rows: dict[str, dict], context: dict, n_sequences: int) -> str:
    """``comparison.md``: what was run (steps, seed, resolution, split, units) and the table.

    Seq Scale Std needs at least two test sequences; with fewer it reads "n/a" instead of a number.
    """
    table_rows = {}
    for name, row in rows.items():
        row = dict(row)
        if n_sequences < 2:
            row["seq_scale_std"] = "n/a: needs >= 2 sequences"
        table_rows[name] = {TITLES[k]: row.get(k) for k in COLUMNS}
    lines = [
        "# sa4depth demo: Monodepth2 vs Monodepth2 + SA4Depth",
        "",
        f"- Training: {context['steps']} steps per model, batch {context['batch_size']}, seed "
        f"{context['seed']}, {context['height']}x{context['width']}, recipe `{context['recipe']}` "
        f"(`{context['recipe_file']}`) with {', '.join(f'`{c}`' for c in RECIPE_CHANGES)}; both models "
        "get the same budget and data.",
        f"- Evaluation: the `{context['split']}` split of `{context['data_root']}` "
        f"({context['frames']} frames from {n_sequences} held-out sequence{'s' if n_sequences != 1 else ''}, "
        "never trained on); "
        "depth per image with median scaling, ground truth in metres (RMSE and ATE in metres).",
        f"- `{CONSTANT_ROW}`: one depth for every pixel, median-scaled like the models, i.e. no "
        "structure learned at all; a trained model should be far below its AbsRel.",
        "- ↓ lower is better, ↑ higher is better; the pose-depth ratio is best at 1. Seq Scale Std: "
        "std / mean of the per-sequence mean scale; within-seq CV: mean coefficient of variation of the "
        "per-frame scale inside a sequence (docs/protocols.md).",
        f"- Training time: {context['train_seconds']}.",
        "",
        format_table(table_rows, precision=4),
        "",
    ]
    return "\n".join(lines)


def depth_figure(models: dict, dataset, out_png: Path, n: int = 4) -> None:
    """A grid of test frames: image, ground truth, then each model's depth, with a colour bar per row.

    All depth panels of a row share one inverse-depth colour scale (the ground truth's 1-99 %
    range), so the models are compared on the same colours; predictions are median-scaled to the
    ground truth first, as the metrics are, and each panel's title carries its AbsRel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors

    from sa4depth.apps.visualize import save_png

    indices = np.linspace(0, len(dataset) - 1, n).astype(int)
    cols = 2 + len(models)
    fig, axes = plt.subplots(
        n,
        cols + 1,
        figsize=(3.2 * cols + 0.5, 1.3 * n + 0.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * cols + [0.05]},
    )
    for r, idx in enumerate(indices):
        sample = dataset[int(idx)]
        image = sample["images"][0]
        gt = sample["depth"][0].numpy()
        valid = gt > 0
        inv_gt = 1.0 / gt[valid]
        norm = colors.Normalize(*np.percentile(inv_gt, [1, 99]))
        axes[r, 0].imshow(image.permute(1, 2, 0).numpy())
        axes[r, 1].imshow(np.ma.masked_where(~valid, 1.0 / np.where(valid, gt, 1.0)), cmap="magma", norm=norm)
        axes[r, 1].set_title("ground truth (sky: none)" if r == 0 else "", fontsize=8)
        with torch.inference_mode():
            for c, (name, model) in enumerate(models.items(), start=2):
                pred = model.depth_net.predict_depth(image[None])[0, 0].numpy()
                pred = pred * np.median(gt[valid]) / np.median(pred[valid])
                abs_rel = float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))
                im = axes[r, c].imshow(1.0 / pred, cmap="magma", norm=norm)
                axes[r, c].set_title(f"{name if r == 0 else ''}  AbsRel {abs_rel:.3f}", fontsize=8)
        bar = fig.colorbar(im, cax=axes[r, -1])
        lo, hi = norm.vmin, norm.vmax
        bar.set_ticks([lo, hi], labels=[f"far {1 / lo:.0f} m", f"near {1 / hi:.1f} m"], fontsize=7)
        for a in axes[r, :-1]:
            a.axis("off")
    axes[0, 0].set_title("image", fontsize=8)
    fig.suptitle("inverse depth, one colour scale per row (the ground truth's)", fontsize=9)
    fig.tight_layout()
    save_png(fig, out_png, dpi=90, tight=False)
    plt.close(fig)


def train_and_evaluate(
    run_dir: Path,
    overrides: list[str],
    split: str = "test",
    progress: bool = False,
    recipe: str | Path | None = None,
    resume: bool = False,
    callbacks: list | None = None,
    overwrite: bool = False,
) -> tuple[dict, object]:
    """Train one configuration (``recipe`` + ``overrides``) into ``run_dir``; evaluate ``last.ckpt``.

    Args:
        run_dir: the run's output folder.
        overrides: ``key=value`` config overrides.
        split: the split to evaluate on.
        progress: show training progress (`StepProgress`, or a progress bar among ``callbacks``).
        recipe: a config file; None for the built-in defaults.
        resume: continue from ``run_dir/checkpoints/last.ckpt``.
        callbacks: extra Lightning callbacks.
        overwrite: replace a run already in ``run_dir`` (else that is an `InputError`).

    Returns:
        The `evaluate_model` results (plus ``train_seconds``, ``train_steps``), also written to
        ``run_dir/metrics_<split>.json``, and the trained `DepthPoseModel`.
    """
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.train.run import load_checkpoint, train

    cfg = load_config(recipe, [f"output_dir={run_dir}", *overrides])
    start = time.time()
    ckpt_dir = train(
        cfg, resume=resume, enable_progress_bar=progress, callbacks=callbacks, overwrite=overwrite
    )
    seconds = time.time() - start
    system, cfg = load_checkpoint(ckpt_dir / "last.ckpt")
    results = evaluate_model(system.model, cfg, split=split)
    results["train_seconds"] = seconds
    results["train_steps"] = cfg.trainer.max_steps
    write_metrics_json(Path(run_dir) / f"metrics_{split}.json", results)
    return results, system.model


class TakeFreedCores(L.Callback):
    """Before each step, use this machine's cores shared among the trainings still running.

    Side by side the baseline finishes well before SA4Depth (its steps are cheaper); without this the
    core it frees idles while SA4Depth goes on with one thread.

    Args:
        running: how many trainings are still running (the parent lowers it as each one ends).
        cores: the cores to share.
    """

    def __init__(self, running, cores: int):
        self.running, self.cores = running, cores

    def share(self) -> None:
        threads = max(1, self.cores // max(1, self.running.value))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.share()


def _train_child(name: str, run_dir: str, overrides: list[str], running=None, cores: int = 1) -> None:
    """One variant in its own process (the demo trains the variants side by side); see `TakeFreedCores`."""
    callbacks = []
    if running is not None:
        callbacks.append(TakeFreedCores(running, cores))
        callbacks[0].share()
    from sa4depth.train.run import StepProgress

    # Lightning's start and stop notices ("GPU available", "max_steps reached") twice over would bury
    # the progress lines; warnings still show. After the import: importing Lightning sets INFO.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    # Plain lines (not a redrawn bar) even on a terminal: two runs share the screen.
    progress = StepProgress(prefix=f"[{name}] ", plain=True)
    train_and_evaluate(
        Path(run_dir),
        overrides,
        progress=True,
        recipe=recipe_path(RECIPE),
        callbacks=[progress, *callbacks],
        overwrite=True,
    )


def train_variants(runs: dict[str, tuple[Path, list[str]]], parallel: bool) -> None:
    """Train every variant; side by side in separate processes when ``parallel`` (`TakeFreedCores`).

    A failed child is an error naming its run folder (its own message is above it on the screen).
    """
    if not parallel:
        for name, (run_dir, overrides) in runs.items():
            _train_child(name, str(run_dir), overrides)
        return
    ctx = multiprocessing.get_context("spawn")
    running, cores = ctx.Value("i", len(runs)), os.cpu_count() or 2
    procs = {
        name: ctx.Process(target=_train_child, args=(name, str(run_dir), overrides, running, cores))
        for name, (run_dir, overrides) in runs.items()
    }
    for p in procs.values():
        p.start()
    try:
        pending = list(procs.values())
        while pending:
            ended = multiprocessing.connection.wait([p.sentinel for p in pending])
            pending = [p for p in pending if p.sentinel not in ended]
            running.value = len(pending)
        for p in procs.values():
            p.join()
    except KeyboardInterrupt:
        for p in procs.values():
            p.join(timeout=60)  # the children got the same Ctrl-C and save their checkpoints
        raise
    for name, p in procs.items():
        if p.exitcode != 0:
            raise InputError(runs[name][0], f"training {name} failed (exit code {p.exitcode}); see above")


def run_demo(
    out: str | Path,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    parallel: bool | None = None,
) -> dict:
    """Render data (once), train each variant with the same step budget, evaluate on held-out sequences.

    Args:
        out: output folder (data, runs, ``comparison.md``, ``comparison.json``, ``depth_comparison.png``).
        steps: training steps per model; None for the recipe's.
        quick: a smoke run: a tiny world and `QUICK_STEPS` steps.
        seed: training seed.
        parallel: train the variants side by side; None: when the machine has at least 2 cores.

    Returns:
        Variant name -> `evaluate_model` results on the test split.
    """
    from sa4depth.data import synthetic
    from sa4depth.data.datamodule import build_dataset
    from sa4depth.eval.evaluate import constant_depth_reference

    recipe = load_config(recipe_path(RECIPE))
    steps = QUICK_STEPS if quick and steps is None else steps or recipe.trainer.max_steps
    if steps < 1:
        raise InputError("--steps", f"must be at least 1 training step per model, got {steps}")
    parallel = (os.cpu_count() or 1) >= 2 if parallel is None else parallel
    minutes = EXPECTED_MINUTES["quick" if quick else "full"]
    if not quick and steps != recipe.trainer.max_steps:
        minutes = round(minutes * steps / recipe.trainer.max_steps)
    print(
        f"sa4depth demo: {steps} training steps per model; expect about {minutes} min on 2 idle CPU cores "
        "(longer on a busy machine)"
    )
    out = Path(out)
    data_root = out / ("data_quick" if quick else "data")
    height, width = DEMO_RESOLUTION
    if not (data_root / "splits").is_dir():
        print(f"rendering the synthetic benchmark world into {data_root} ...", flush=True)
        if quick:
            synthetic.render_dataset(
                data_root, scene="driving", sequences=4, frames=12, height=height, width=width, seed=seed
            )
    if not quick:
        synthetic.ensure_benchmark(data_root, height, width, workers=2 if parallel else 1)
    common = [
        f"data.root={data_root}",
        f"data.height={height}",
        f"data.width={width}",
        f"trainer.max_steps={steps}",
        f"trainer.seed={seed}",
        f"optim.warmup_steps={min(recipe.optim.warmup_steps, steps // 10)}",
        "trainer.save_best=false",  # the demo evaluates last.ckpt; a best.ckpt would double the disk use
        *RECIPE_CHANGES,
    ]
    if quick:
        common += ["trainer.val_check_interval=1.0", "trainer.log_every_n_steps=5"]  # 5 batches an epoch
    runs = {
        name: (out / "runs" / name.replace("+", "_"), [*common, *extra]) for name, extra in VARIANTS.items()
    }
    print(
        f"training {', '.join(runs)} {'side by side' if parallel else 'one after the other'} ...", flush=True
    )
    start = time.time()
    train_variants(runs, parallel)
    train_seconds = time.time() - start

    from sa4depth.train.run import load_checkpoint

    results, models, rows = {}, {}, {}
    for name, (run_dir, _) in runs.items():
        results[name] = json.loads((run_dir / "metrics_test.json").read_text())
        models[name] = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")[0].model
        rows[name] = flat_summary(results[name])
    cfg = load_config(recipe_path(RECIPE), common)
    test_set = build_dataset(cfg.data, "test", train=False)
    # The floor: what a network that learned no structure scores under the same protocol.
    constant = constant_depth_reference(cfg, "test")
    rows[CONSTANT_ROW] = flat_summary(constant)
    n_seq = number_of_sequences(next(iter(results.values())))
    context = {
        "steps": steps,
        "batch_size": cfg.data.batch_size,
        "seed": seed,
        "height": height,
        "width": width,
        "recipe": RECIPE,
        "recipe_file": f"src/sa4depth/recipes/{RECIPE}.yaml",
        "split": "test",
        "data_root": data_root,
        "frames": len(test_set),
        "train_seconds": ", ".join(f"{n} {results[n]['train_seconds']:.0f} s" for n in runs)
        + f" ({'side by side' if parallel else 'one after the other'}, {train_seconds:.0f} s wall)",
    }
    text = comparison_markdown(rows, context, n_seq)
    atomic_write_text(out / "comparison.md", text)
    write_metrics_json(out / "comparison.json", {**results, CONSTANT_ROW: constant})
    depth_figure(models, test_set, out / "depth_comparison.png")
    print(text)
    print(f"written: {out / 'comparison.md'}, {out / 'comparison.json'}, {out / 'depth_comparison.png'}")
    return results
