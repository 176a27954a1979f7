"""The built-in default: render the synthetic benchmark world, train baseline and +SA4Depth, compare.

`sa4depth demo` runs it end to end on a laptop CPU and writes a table, a JSON file and pictures.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from sa4depth.config import load_config
from sa4depth.data.layout import atomic_write_text
from sa4depth.eval.report_table import format_table, write_metrics_json

logger = logging.getLogger(__name__)

VARIANTS = {
    "monodepth2": [],
    "monodepth2+sa4depth": ["refine.enabled=true"],
}

DEMO_RESOLUTION = (64, 192)
# ImageNet-pretrained EfficientNet-Lite0 (shipped in a PyPI wheel) learns in a CPU-sized budget; the
# static synthetic world has no objects moving with the camera, so auto-masking only removes signal.
DEMO_OVERRIDES = [
    "model.encoder=efficientnet_lite0",
    "model.pretrained=imagenet",
    "loss.automask=false",
    "trainer.val_check_interval=1.0",
]
QUICK_STEPS = 20
# The budget of the committed comparison (benchmarks/results/compare_md2): on 2 CPU cores about 4 min for
# the baseline and 6 min for +SA4Depth at 64x192, batch 4.
DEFAULT_STEPS = 600

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


def depth_figure(models: dict, dataset, out_png: Path, n: int = 4) -> None:
    """A grid of test frames: image, ground truth, then each model's predicted depth (inverse, magma)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sa4depth.predict import colorize_depth

    indices = np.linspace(0, len(dataset) - 1, n).astype(int)
    cols = 2 + len(models)
    fig, axes = plt.subplots(n, cols, figsize=(3.2 * cols, 1.2 * n + 0.6), squeeze=False)
    for r, idx in enumerate(indices):
        sample = dataset[int(idx)]
        image = sample["images"][0]
        panels = [image.permute(1, 2, 0).numpy()]
        gt = sample["depth"][0].numpy()
        panels.append(colorize_depth(np.where(gt > 0, gt, gt.max())))
        with torch.inference_mode():
            for model in models.values():
                panels.append(colorize_depth(model.depth_net.predict_depth(image[None])[0, 0].numpy()))
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel)
            axes[r, c].axis("off")
    for c, title in enumerate(["image", "ground truth", *models]):
        axes[0, c].set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)


def train_and_evaluate(
    run_dir: Path, overrides: list[str], split: str = "test", progress: bool = False
) -> tuple[dict, object]:
    """Train one configuration (defaults + ``overrides``) into ``run_dir`` and evaluate its last checkpoint.

    Returns:
        The `evaluate_model` results (plus ``train_seconds``) and the trained `DepthPoseModel`.
    """
    from sa4depth.eval.evaluate import evaluate_model
    from sa4depth.train.run import load_checkpoint, train

    cfg = load_config(None, [f"output_dir={run_dir}", *overrides])
    start = time.time()
    ckpt_dir = train(cfg, enable_progress_bar=progress)
    seconds = time.time() - start
    system, cfg = load_checkpoint(ckpt_dir / "last.ckpt")
    results = evaluate_model(system.model, cfg, split=split)
    results["train_seconds"] = seconds
    results["train_steps"] = cfg.trainer.max_steps
    write_metrics_json(Path(run_dir) / f"metrics_{split}.json", results)
    return results, system.model


def run_demo(out: str | Path, steps: int = DEFAULT_STEPS, quick: bool = False, seed: int = 0) -> dict:
    """Render data (once), train each variant with the same step budget, evaluate on held-out sequences."""
    from sa4depth.data import synthetic
    from sa4depth.data.datamodule import build_dataset

    out = Path(out)
    data_root = out / ("data_quick" if quick else "data")
    height, width = DEMO_RESOLUTION
    if not (data_root / "splits").is_dir():
        print(f"rendering the synthetic benchmark world into {data_root} ...")
        if quick:
            synthetic.render_dataset(
                data_root,
                scene="driving",
                sequences=4,
                frames=12,
                height=height,
                width=width,
                seed=seed,
                progress=True,
            )
        else:
            synthetic.benchmark_set(data_root, height=height, width=width)
    steps = QUICK_STEPS if quick else steps
    rows, models, results = {}, {}, {}
    for name, extra in VARIANTS.items():
        print(f"training {name} for {steps} steps ...")
        overrides = [
            f"data.root={data_root}",
            f"data.height={height}",
            f"data.width={width}",
            f"trainer.max_steps={steps}",
            f"trainer.seed={seed}",
            *DEMO_OVERRIDES,
            *extra,
        ]
        results[name], models[name] = train_and_evaluate(
            out / "runs" / name.replace("+", "_"), overrides, progress=True
        )
        rows[name] = flat_summary(results[name])
    table = format_table(rows, COLUMNS, precision=4)
    atomic_write_text(out / "comparison.md", table + "\n")
    write_metrics_json(out / "comparison.json", results)
    cfg = load_config(None, [f"data.root={data_root}", f"data.height={height}", f"data.width={width}"])
    depth_figure(models, build_dataset(cfg.data, "test", train=False), out / "depth_comparison.png")
    print(table)
    print(f"\nwritten: {out / 'comparison.md'}, {out / 'comparison.json'}, {out / 'depth_comparison.png'}")
    return results
