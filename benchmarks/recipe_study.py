"""How the CPU recipe was chosen: one Monodepth2 baseline per lever, seed 0, its validation curve.

Each study run trains the baseline (no SA4Depth) on the benchmark world rendered at a given speed, with
validation every 100 steps, and keeps ``curve.json``; nothing is evaluated on the test streets (the
recipe must not be tuned on them). Finished runs are skipped, unfinished ones resume. The committed
curves were made by the same `train` call before this script existed; several were stopped early to
free the cores (``stopped_at_step`` in their ``curve.json``, written by ``--stopped``).

    OMP_NUM_THREADS=1 python benchmarks/recipe_study.py --runs lite0_speed025 lite0_speed075
    python benchmarks/recipe_study.py --table        # benchmarks/results/recipe/summary.md
    python benchmarks/recipe_study.py --motion 0.25 0.75 1.0   # image motion of each world, in pixels
    OMP_NUM_THREADS=1 python benchmarks/recipe_study.py --step-time   # recipe step, baseline vs SA4Depth
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
from pathlib import Path

import numpy as np

from sa4depth.apps.visualize import load_scalars
from sa4depth.config import load_config
from sa4depth.data import synthetic
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.train.run import train

OUT = Path("benchmarks/results/recipe")
STEPS = 1500
COMMON = [
    "data.height=64",
    "data.width=192",
    "loss.automask=false",
    "trainer.val_check_interval=100",
    f"trainer.max_steps={STEPS}",
    "optim.schedule=cosine",
    "optim.warmup_steps=100",
]
LITE0 = ["model.encoder=efficientnet_lite0", "model.pretrained=imagenet"]
SLIM = ["model.encoder=resnet18_slim", "model.pretrained=null"]
# name -> (world speed in m/frame, overrides). Every run uses model.pose_encoder=small, chosen for its
# cost (a fraction of a ResNet-18 per pair); it was not compared with ResNet-18 on the curve.
RUNS = {
    "lite0_speed025": (0.25, [*LITE0, "optim.lr=3e-4"]),
    "lite0_speed075": (0.75, [*LITE0, "optim.lr=3e-4"]),
    "lite0_speed100": (1.0, [*LITE0, "optim.lr=3e-4"]),
    "slim_speed075_4scales": (0.75, [*SLIM, "optim.lr=3e-4"]),
    "slim_speed075_1scale": (0.75, [*SLIM, "optim.lr=3e-4", "loss.num_scales=1"]),
    "slim_speed075_1scale_lr1e-3": (0.75, [*SLIM, "optim.lr=1e-3", "loss.num_scales=1"]),
    # Session 4: the plateau (val AbsRel ~0.27 from step 750 while the training loss keeps falling).
    "slim_speed075_1scale_smooth1e-4": (
        0.75,
        [*SLIM, "optim.lr=3e-4", "loss.num_scales=1", "loss.smoothness_weight=1e-4"],
    ),
    # Every network picks a depth unit of about 1/46 m (the pose net's small initial translations), so
    # min_depth=0.1 clamps everything nearer than ~4.6 m: the near objects predicted twice too far.
    "slim_speed075_1scale_mindepth0.01": (
        0.75,
        [*SLIM, "optim.lr=3e-4", "loss.num_scales=1", "model.min_depth=0.01"],
    ),
    # Does a longer budget move the plateau? The recipe with its cosine stretched over 8000 steps.
    "slim_speed075_1scale_8000steps": (
        0.75,
        [
            *SLIM,
            "optim.lr=3e-4",
            "loss.num_scales=1",
            "trainer.max_steps=8000",
            "trainer.val_check_interval=500",
        ],
    ),
    # The pose net learns no rotation (benchmarks/results/refined_pose): the ResNet-18 pair encoder instead.
    "slim_speed075_1scale_pose_resnet18": (
        0.75,
        [*SLIM, "optim.lr=3e-4", "loss.num_scales=1", "model.pose_encoder=resnet18"],
    ),
    # The pose nets output a constant (no rotation, |t| blind to the speed): Monodepth2's last-layer init.
    "slim_speed075_1scale_pose_init1": (0.75, [*SLIM, "optim.lr=3e-4", "loss.num_scales=1"]),
    # A larger input: 1.67x the image motion in pixels and finer texture, at ~2.5x the step cost.
    "slim_speed075_1scale_96x320": (0.75, [*SLIM, "optim.lr=3e-4", "loss.num_scales=1"]),
}
# Runs that change a module constant for their (single) process: pose_net.LAST_LAYER_INIT_GAIN=1 is
# Monodepth2's default init of the pose decoder's last layer (ours shrinks it 10x).
PATCHES = {"slim_speed075_1scale_pose_init1": ("sa4depth.models.pose_net", "LAST_LAYER_INIT_GAIN", 1.0)}
# Runs at another input size than COMMON's 64x192 (their world is rendered at that size).
SIZES = {"slim_speed075_1scale_96x320": (96, 320)}


def world(speed: float, size: tuple[int, int] = (64, 192)) -> Path:
    """The benchmark set at ``size`` (H, W) rendered with ``speed`` metres per frame at speed factor 1."""
    height, width = size
    suffix = "" if size == (64, 192) else f"_{height}x{width}"
    root = Path(f"data/recipe_world_speed{speed:g}{suffix}")
    default = synthetic.BASE_SPEED["driving"]
    synthetic.BASE_SPEED["driving"] = speed  # one process, one worker: the change reaches the renderer
    try:  # renders a missing world; refuses one of another world version, speed or size
        return synthetic.ensure_benchmark(root, height, width, workers=1)
    finally:
        synthetic.BASE_SPEED["driving"] = default


def run(name: str) -> None:
    speed, overrides = RUNS[name]
    height, width = SIZES.get(name, (64, 192))
    run_dir = OUT / name
    if (run_dir / "curve.json").is_file():
        return
    resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    cfg = load_config(
        None,
        [
            f"output_dir={run_dir}",
            f"data.root={world(speed, (height, width))}",
            "model.pose_encoder=small",
            *COMMON,
            f"data.height={height}",
            f"data.width={width}",
            *overrides,
        ],
    )
    if name in PATCHES:
        module, attribute, value = PATCHES[name]
        setattr(importlib.import_module(module), attribute, value)
    train(cfg, resume=resume, enable_progress_bar=True)
    write_curve(name)


def write_curve(name: str, stopped: bool = False) -> None:
    """``curve.json`` of a run from its logs; ``stopped``: ended early, at its last logged validation."""
    speed, overrides = RUNS[name]
    scalars = load_scalars(OUT / name)
    curve = {t: {"step": s.astype(int).tolist(), "value": v.tolist()} for t, (s, v) in scalars.items()}
    extra = {"stopped_at_step": int(scalars["val/abs_rel"][0][-1])} if stopped else {}
    write_metrics_json(
        OUT / name / "curve.json", {"speed_m_per_frame": speed, "overrides": overrides, **extra, **curve}
    )


def motion_stats(root: Path) -> list[str]:
    """Per training sequence: metres per frame and the ground-truth image motion of the next frame."""
    from sa4depth.data.layout import read_depth, read_poses

    lines = []
    for seq in sorted((root / "sequences").glob("train_*"))[::3]:
        K = np.loadtxt(seq / "cam.txt")
        T = read_poses(seq / "poses.txt")
        depth_files = sorted((seq / "depth").glob("*.npz"))
        flows = []
        for i in range(5, len(depth_files) - 1, 7):
            d = read_depth(depth_files[i])
            v, u = np.nonzero(d > 0)
            X = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]) * d[v, u]
            T_next = np.linalg.inv(T[i + 1]) @ T[i]
            p = K @ (T_next[:3, :3] @ X + T_next[:3, 3:])
            flows.append(np.hypot(p[0] / p[2] - u, p[1] / p[2] - v))
        f = np.concatenate(flows)
        step = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1).mean()
        lines.append(
            f"{root.name}/{seq.name}: {step:.2f} m/frame, motion median {np.median(f):.2f} px, "
            f"90th percentile {np.percentile(f, 90):.1f} px, under 0.5 px {100 * np.mean(f < 0.5):.0f} %"
        )
    return lines


def step_times(repeats: int = 10) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, Adam) of the recipe, one thread, batch 4,
    baseline and + SA4Depth interleaved twice (the machine is shared: compare within one call)."""
    import time

    import torch

    from sa4depth.data.datamodule import build_dataset, collate
    from sa4depth.recipes import recipe_path
    from sa4depth.train.model import DepthPoseModel

    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"monodepth2": [], "monodepth2+sa4depth": []}
    for name in [*times, *times]:
        cfg = load_config(recipe_path("synthetic_cpu"), ["refine.enabled=true"] if "+" in name else [])
        dataset = build_dataset(cfg.data, "train", train=True)
        batch = collate([dataset[i] for i in range(cfg.data.batch_size)])
        model = DepthPoseModel(cfg).train()
        optimizer = torch.optim.Adam(model.parameters(), 1e-4)
        for i in range(3 + repeats):
            start = time.perf_counter()
            optimizer.zero_grad()
            model.training_forward(batch)[0].backward()
            optimizer.step()
            if i >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _value_at(steps: np.ndarray, values: np.ndarray, step: int) -> str:
    """The validation value logged at ``step`` (Lightning logs step 499 for the 500th step), or "-"."""
    hit = values[steps == step - 1] if (steps == step - 1).any() else values[steps == step]
    return f"{hit[0]:.3f}" if hit.size else "-"


def table() -> str:
    lines = [
        f"Command: python benchmarks/recipe_study.py --runs <name> (seed 0, {STEPS} steps, validation split)",
        "",
        "| run | world m/frame | val AbsRel at 500 / 1000 / last (mean of the last 3 validations) |",
        "|---|---|---|",
    ]
    for name in RUNS:
        path = OUT / name / "curve.json"
        if not path.is_file():
            continue
        curve = json.loads(path.read_text())
        steps, values = np.array(curve["val/abs_rel"]["step"]), np.array(curve["val/abs_rel"]["value"])

        lines.append(
            f"| {name} | {curve['speed_m_per_frame']} | {_value_at(steps, values, 500)} / "
            f"{_value_at(steps, values, 1000)} / {values[-3:].mean():.3f} "
            f"(step {steps[-1]}{', stopped early' if 'stopped_at_step' in curve else ''}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=[], help="study runs to train")
    parser.add_argument(
        "--stopped", nargs="+", choices=list(RUNS), default=[], help="write curve.json of runs ended early"
    )
    parser.add_argument("--table", action="store_true", help="write benchmarks/results/recipe/summary.md")
    parser.add_argument(
        "--motion", type=float, nargs="+", default=[], help="print image motion of these worlds"
    )
    parser.add_argument("--step-time", action="store_true", help="time the recipe's training step")
    args = parser.parse_args()
    if args.step_time:
        times = step_times()
        base = times["monodepth2"]
        for name, t in times.items():
            print(f"{name}: {t:.3f} s per step ({100 * (t / base - 1):+.0f} %)")
    for speed in args.motion:
        print("\n".join(motion_stats(world(speed))))
    for name in args.runs:
        run(name)
    for name in args.stopped:
        write_curve(name, stopped=True)
    if args.table:
        text = table()
        atomic_write_text(OUT / "summary.md", text + "\n")
        print(text)


if __name__ == "__main__":
    run_script(main)
