"""GPU device check: SA4Depth's training cost, memory, inference speed and a short training, on one GPU.

One run of at most 8 minutes that answers the issue's GPU questions with measurements, in this order
(each section's results are written as soon as it ends, so a run cut short still leaves data):

1. ``step``: forward + backward + Adam of the baseline and of + SA4Depth at 192x640, batch 12
   (ResNet-18, Monodepth2 pipeline, default refinement), in float32 and in bf16-mixed (autocast on
   the forward pass, as Lightning's ``trainer.precision=bf16-mixed``): median step seconds, the
   overhead, and peak GPU memory (``torch.cuda.max_memory_allocated``) of each.
2. ``inference``: images/s of the depth network alone (``predict_depth``, ``torch.inference_mode``)
   at batch 1 and 12, float32 / bf16 autocast, contiguous / channels-last.
3. ``training``: renders the synthetic benchmark set (`sa4depth.data.synthetic.benchmark_set`,
   960 frames) at 192x640, trains the baseline and + SA4Depth with `sa4depth.train.run.train` for
   the same wall-clock budget each (as many steps as fit), and evaluates each ``last.ckpt`` on the
   held-out test streets with `sa4depth.eval.evaluate.evaluate_model` (AbsRel etc.).

Every section is budgeted by wall time (``--budget-seconds`` for the whole run, default 420 s; the
training budget shrinks to what is left); a section that does not fit is recorded as skipped, one
that fails records its error and the next one still runs.

The short training runs in float32 (``--train-precision bf16-mixed`` for the other); rendered data
and runs go to ``--work`` (default ``/tmp/sa4depth_device_check``). On the GPU machine, from the
repository root, with sa4depth and its dependencies importable (benchmarks/README.md, "GPU device
check", says what the GPU image lacks), the JSON lands in ``benchmarks/results/gpu/<GPU name>.json``
(``timeout`` is only a guard, the script ends on its own first)::

    timeout 480 python benchmarks/device_check.py --out benchmarks/results/gpu

``--dry-run`` runs every section end to end on the CPU at tiny sizes in about a minute and writes the
same keys to ``<out>/dry_run.json`` (tests/test_device_check.py runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from sa4depth.apps.bench import machine_info, random_batch, summarize, variant_overrides
from sa4depth.config import load_config
from sa4depth.errors import run_script
from sa4depth.eval.report_table import write_metrics_json

PRECISIONS = ("32-true", "bf16-mixed")
VARIANTS = ("baseline", "sa4depth")
SECTIONS = ("step", "inference", "training")
# Least seconds of the budget a section needs to be worth starting (training then shrinks to fit).
MIN_SECONDS = {"step": 30.0, "inference": 10.0, "training": 60.0}
MEMORY_GOAL_GIB = 8.0
OVERHEAD_GOAL = 0.15


@dataclasses.dataclass
class Settings:
    """Sizes and time budgets of one check; `GPU` is the real check, `DRY_RUN` its CPU rehearsal.

    Attributes:
        device: ``"cuda"`` or ``"cpu"``.
        height, width: image size of every section.
        batch: training batch of the step section and of the short training.
        warmup_steps: untimed steps per step-section run (allocator, cuDNN autotuning).
        min_steps, max_steps: timed steps per step-section run (``step_seconds`` decides in between).
        step_seconds: timed seconds per step-section run, at least ``min_steps`` steps.
        inference_batches: batch sizes of the inference section.
        inference_seconds: timed seconds per inference configuration (at least 3 batches).
        train_seconds: training wall time per model (less if the budget has less left).
        train_max_steps: step cap of the short training (the time budget stops it first on a GPU).
        train_precision: Lightning precision of the short training.
        train_workers: data-loader workers of the short training.
        eval_reserve_seconds: time kept per model for Lightning's start, checkpoint and evaluation.
        budget_seconds: wall time of the whole check.
        benchmark_data: render the full benchmark set (else a 3-sequence toy set, for the dry run).
    """

    device: str
    height: int
    width: int
    batch: int
    warmup_steps: int
    min_steps: int
    max_steps: int
    step_seconds: float
    inference_batches: tuple[int, ...]
    inference_seconds: float
    train_seconds: float
    train_max_steps: int
    train_precision: str
    train_workers: int
    eval_reserve_seconds: float
    budget_seconds: float
    benchmark_data: bool


GPU = Settings(
    device="cuda",
    height=192,
    width=640,
    batch=12,
    warmup_steps=3,
    min_steps=5,
    max_steps=40,
    step_seconds=8.0,
    inference_batches=(1, 12),
    inference_seconds=2.0,
    train_seconds=90.0,
    train_max_steps=100_000,
    train_precision="32-true",
    train_workers=min(8, max((os.cpu_count() or 1) - 2, 0)),
    eval_reserve_seconds=45.0,
    budget_seconds=420.0,
    benchmark_data=True,
)
DRY_RUN = dataclasses.replace(
    GPU,
    device="cpu",
    height=64,
    width=192,
    batch=2,
    warmup_steps=1,
    min_steps=2,
    max_steps=2,
    step_seconds=0.0,
    inference_batches=(1, 2),
    inference_seconds=0.0,
    train_seconds=20.0,
    train_max_steps=2,
    train_workers=0,
    eval_reserve_seconds=10.0,
    budget_seconds=300.0,
    benchmark_data=False,
)


class Clock:
    """Wall-clock budget of the whole check, started at construction."""

    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock intervals measure it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Free what earlier runs left and restart the peak-memory counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    """Peak allocated / reserved GPU memory since `reset_peak_memory` (None on the CPU)."""
    if device.type != "cuda":
        return {"peak_allocated_bytes": None, "peak_allocated_gib": None, "peak_reserved_bytes": None}
    allocated = torch.cuda.max_memory_allocated(device)
    return {
        "peak_allocated_bytes": allocated,
        "peak_allocated_gib": round(allocated / 2**30, 3),
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
    }


def device_info(device: torch.device) -> dict:
    """What the numbers were measured on: the accelerator, library versions and numeric settings."""
    info = {
        "type": device.type,
        "name": "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            total_memory_gib=round(props.total_memory / 2**30, 2),
            cudnn=torch.backends.cudnn.version(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        )
    return info


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast(device: torch.device, precision: str):
    """The forward-pass context of a Lightning ``precision``: bf16 autocast or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


# ------------------------------------------------------------------------------------------ step section
def time_steps(step: Callable[[], bool], device: torch.device, s: Settings) -> tuple[list[float], bool]:
    """Seconds of each timed call of ``step`` (which returns whether its loss was finite), after warm-up."""
    finite = True
    for _ in range(s.warmup_steps):
        finite &= step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < s.max_steps and (
        len(times) < s.min_steps or time.perf_counter() - start < s.step_seconds
    ):
        synchronize(device)
        t0 = time.perf_counter()
        finite &= step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times, finite


def measure_step(variant: str, precision: str, device: torch.device, s: Settings) -> dict:
    """Training-step time and peak memory of one variant at one precision, on random smooth images.

    As `sa4depth.apps.bench.TrainStep`: Adam at 1e-4, the step far past any refinement warm-up; the
    autocast region is the forward pass only, as in Lightning's mixed precision.
    """
    from sa4depth.train.model import DepthPoseModel

    reset_peak_memory(device)
    start = time.perf_counter()
    torch.manual_seed(0)
    cfg = load_config(None, [*variant_overrides(variant), f"data.height={s.height}", f"data.width={s.width}"])
    model = DepthPoseModel(cfg).to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = to_device(random_batch(s.batch, s.height, s.width), device)
    # The dtype the depth net computes in shows that the precision really is in effect.
    dtypes = set()
    model.depth_net.register_forward_hook(lambda module, args, out: dtypes.add(str(out[0].dtype)))

    def step() -> bool:
        with autocast(device, precision):
            loss, _ = model.training_forward(batch, step=10**9)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return bool(torch.isfinite(loss.detach()))

    times, finite = time_steps(step, device, s)
    return {
        "step": summarize(times),
        "steps_timed": len(times),
        "losses_finite": finite,
        "depth_net_dtypes": sorted(dtypes),
        "total_s": round(time.perf_counter() - start, 2),
        "memory": peak_memory(device),
    }


def step_section(device: torch.device, s: Settings, save: Callable[[dict], None]) -> dict:
    """`measure_step` of both variants at both precisions, with the overhead and the goals per precision."""
    out: dict = {
        "size": f"{s.height}x{s.width}",
        "batch": s.batch,
        "model": "resnet18 depth + resnet18 pose nets, monodepth2 pipeline, default refinement",
        "what": "forward + backward + Adam on random smooth images, after warm-up, GPU-synchronised",
        "runs": {},
    }
    for precision in PRECISIONS:
        runs = out["runs"].setdefault(precision, {})
        for variant in VARIANTS:
            runs[variant] = measure_step(variant, precision, device, s)
            r = runs[variant]
            print(
                f"step {precision:10s} {variant:9s} {r['step']['median_s']:.4f} s/step, peak "
                f"{r['memory']['peak_allocated_gib']} GiB, losses finite: {r['losses_finite']}",
                flush=True,
            )
            save(out)
        overhead = runs["sa4depth"]["step"]["median_s"] / runs["baseline"]["step"]["median_s"] - 1.0
        runs["sa4depth_overhead"] = round(overhead, 4)
        runs["overhead_goal_met"] = overhead <= OVERHEAD_GOAL
        gib = runs["sa4depth"]["memory"]["peak_allocated_gib"]
        runs["memory_goal_met"] = None if gib is None else gib < MEMORY_GOAL_GIB
        save(out)
    return out


# ------------------------------------------------------------------------------------- inference section
def time_batches(run: Callable[[], None], device: torch.device, s: Settings) -> list[float]:
    """Seconds of each timed ``run()`` (3 untimed first; at least 3 timed, ``inference_seconds`` in all)."""
    for _ in range(3):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < s.inference_seconds:
        synchronize(device)
        t0 = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def inference_section(device: torch.device, s: Settings, save: Callable[[dict], None]) -> dict:
    """Depth-net images/s per batch size, precision and memory format."""
    from sa4depth.models.depth_net import DepthNet

    torch.manual_seed(0)
    net = DepthNet("resnet18").to(device).eval()
    out: dict = {
        "size": f"{s.height}x{s.width}",
        "what": "DepthNet(resnet18).predict_depth under torch.inference_mode, random smooth images",
        "runs": {},
    }
    for B in s.inference_batches:
        images = random_batch(B, s.height, s.width, frames=1)["images"][:, 0].to(device)
        runs = out["runs"].setdefault(f"batch_{B}", {})
        for fmt in (torch.contiguous_format, torch.channels_last):
            net.to(memory_format=fmt)
            x = images.contiguous(memory_format=fmt)
            for precision in PRECISIONS:
                name = "bf16" if precision == "bf16-mixed" else "fp32"
                name += "_channels_last" if fmt == torch.channels_last else ""

                def run(x=x, precision=precision) -> None:
                    with torch.inference_mode(), autocast(device, precision):
                        net.predict_depth(x)

                times = time_batches(run, device, s)
                per_s = B / statistics.median(times)
                runs[name] = {"images_per_s": round(per_s, 2), "batch_s": summarize(times)}
                print(f"inference batch {B:3d} {name:18s} {per_s:9.1f} images/s", flush=True)
        save(out)
    return out


# -------------------------------------------------------------------------------------- training section
class StopAfter(L.Callback):
    """Stop training ``seconds`` after it started (after Lightning's sanity validation); record the
    optimizer steps and seconds it ran (validation every 250 steps included)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = 0.0
        self.steps = 0
        self.train_s = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.steps = trainer.global_step
        self.train_s = time.perf_counter() - self.start


def render_data(root: Path, s: Settings) -> dict:
    """The benchmark set (or, for the dry run, a 3-sequence toy street) at the check's size."""
    from sa4depth.data import synthetic

    start = time.perf_counter()
    if (root / "splits").is_dir():
        kind = "reused"
    elif s.benchmark_data:
        kind = "benchmark_set"
        synthetic.benchmark_set(root, s.height, s.width, progress=False, workers=min(18, os.cpu_count() or 1))
    else:
        kind = "render_dataset(sequences=3, frames=5, split=(1, 1, 1))"
        synthetic.render_dataset(
            root, sequences=3, frames=5, height=s.height, width=s.width, split=(1, 1, 1), progress=False
        )
    return {"root": str(root), "kind": kind, "render_s": round(time.perf_counter() - start, 1)}


def train_one(
    variant: str, data: Path, run_dir: Path, seconds: float, device: torch.device, s: Settings
) -> dict:
    """Train one variant for ``seconds`` (or ``train_max_steps``) and evaluate it on the test split."""
    from sa4depth.apps.demo import train_and_evaluate

    overrides = [
        *variant_overrides(variant),
        f"data.root={data}",
        f"data.height={s.height}",
        f"data.width={s.width}",
        f"data.batch_size={s.batch}",
        f"data.num_workers={s.train_workers}",
        "data.max_val_samples=16",
        # The static synthetic world has nothing moving with the camera (as the CPU recipe).
        "loss.automask=false",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        f"trainer.precision={s.train_precision}",
        f"trainer.max_steps={s.train_max_steps}",
        "trainer.log_every_n_steps=10",
        # Validation (16 images) every 250 steps, not every 58-step epoch, and no best.ckpt (~0.3 GB a
        # write; last.ckpt is what gets evaluated): the budget goes to training.
        "trainer.val_check_interval=250",
        "trainer.save_best=false",
    ]
    stop = StopAfter(seconds)
    reset_peak_memory(device)
    start = time.perf_counter()
    results, _ = train_and_evaluate(run_dir, overrides, progress=device.type == "cuda", callbacks=[stop])
    depth = results["depth"]
    return {
        "steps": stop.steps,
        "train_s": round(stop.train_s, 1),
        "steps_per_s": round(stop.steps / stop.train_s, 3) if stop.train_s > 0 else None,
        "total_s": round(time.perf_counter() - start, 1),
        "memory": peak_memory(device),
        "test": {k: depth[k] for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "count")},
        "overrides": overrides,
    }


def training_section(
    device: torch.device,
    s: Settings,
    save: Callable[[dict], None],
    clock: Clock,
    work: Path,
    data: Path | None,
) -> dict:
    """Render (or reuse ``data``), then `train_one` per variant, each for the same share of the time left."""
    root = data or work / f"synthetic_{'benchmark' if s.benchmark_data else 'toy'}_{s.height}x{s.width}"
    out: dict = {"data": render_data(root, s), "precision": s.train_precision, "batch": s.batch, "runs": {}}
    save(out)
    seconds = min(s.train_seconds, (clock.left() - len(VARIANTS) * s.eval_reserve_seconds) / len(VARIANTS))
    out["train_seconds_per_model"] = round(seconds, 1)
    if seconds < 5:
        out["skipped"] = f"only {clock.left():.0f} s left after rendering"
        return out
    for variant in VARIANTS:
        run_dir = Path(tempfile.mkdtemp(prefix=f"{variant}_", dir=work))
        out["runs"][variant] = r = train_one(variant, root, run_dir, seconds, device, s)
        print(
            f"training {variant:9s} {r['steps']} steps in {r['train_s']} s, test AbsRel "
            f"{r['test']['abs_rel']:.4f}, a1 {r['test']['a1']:.4f}",
            flush=True,
        )
        save(out)
    runs = out["runs"]
    out["abs_rel_sa4depth_minus_baseline"] = (
        runs["sa4depth"]["test"]["abs_rel"] - runs["baseline"]["test"]["abs_rel"]
    )
    return out


# ------------------------------------------------------------------------------------------------ driver
def output_path(out: Path, info: dict, dry_run: bool) -> Path:
    """``<out>/<GPU name>.json`` (spaces and odd characters as ``_``), or ``<out>/dry_run.json``."""
    name = "dry_run" if dry_run else re.sub(r"[^A-Za-z0-9._-]+", "_", info["name"]).strip("_")
    return out / f"{name}.json"


def run_check(args: argparse.Namespace) -> dict:
    """Run the sections in order within the budget, writing the JSON after every measurement."""
    s = DRY_RUN if args.dry_run else GPU
    s = dataclasses.replace(
        s,
        train_seconds=args.train_seconds if args.train_seconds is not None else s.train_seconds,
        step_seconds=args.step_seconds if args.step_seconds is not None else s.step_seconds,
        budget_seconds=args.budget_seconds if args.budget_seconds is not None else s.budget_seconds,
        train_precision=args.train_precision or s.train_precision,
    )
    clock = Clock(s.budget_seconds)
    if s.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device_check: no CUDA GPU visible; use --dry-run to rehearse on the CPU")
    device = torch.device(s.device)
    if device.type == "cuda":
        # Fixed input sizes throughout: let cuDNN pick the fastest kernels (recorded in "device").
        torch.backends.cudnn.benchmark = True
    info = device_info(device)
    path = output_path(Path(args.out), info, args.dry_run)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "check": "sa4depth GPU device check (benchmarks/device_check.py)",
        "command": shlex.join(["python", "benchmarks/device_check.py", *args.argv]),
        "dry_run": args.dry_run,
        "settings": dataclasses.asdict(s),
        "device": info,
        "machine": machine_info(),
        "goals": {"step_overhead_max": OVERHEAD_GOAL, "sa4depth_peak_memory_gib_max": MEMORY_GOAL_GIB},
        "sections_done": [],
        "complete": False,
    }

    def save(section: str | None = None, value: dict | None = None) -> None:
        if section is not None:
            result[section] = value
        result["elapsed_s"] = round(clock.elapsed(), 1)
        write_metrics_json(path, result)

    print(
        f"device check on {info['name']} ({device.type}), budget {s.budget_seconds:.0f} s -> {path}",
        flush=True,
    )
    save()
    sections = {
        "step": lambda put: step_section(device, s, put),
        "inference": lambda put: inference_section(device, s, put),
        "training": lambda put: training_section(
            device, s, put, clock, work, Path(args.data) if args.data else None
        ),
    }
    for name in SECTIONS:
        if clock.left() < MIN_SECONDS[name]:
            save(name, {"skipped": f"out of time: {clock.left():.0f} s of the budget left"})
            continue
        started = time.perf_counter()
        try:
            value = sections[name](lambda partial, name=name: save(name, {**partial, "partial": True}))
        except Exception as e:  # keep the other sections' data: this one records why it failed
            traceback.print_exc()
            save(name, {**result.get(name, {}), "error": f"{type(e).__name__}: {e}"})
            continue
        value["section_s"] = round(time.perf_counter() - started, 1)
        result["sections_done"].append(name)
        save(name, value)
    result["complete"] = result["sections_done"] == list(SECTIONS)
    save()
    print(
        f"done in {clock.elapsed():.0f} s; sections done: {', '.join(result['sections_done'])}; wrote {path}"
    )
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default="benchmarks/results/gpu", help="folder of the JSON (default: %(default)s)"
    )
    parser.add_argument(
        "--work",
        default=os.path.join(tempfile.gettempdir(), "sa4depth_device_check"),
        help="rendered data and training runs (default: %(default)s)",
    )
    parser.add_argument(
        "--data", help="an already rendered benchmark set at the check's size (skips rendering)"
    )
    parser.add_argument("--dry-run", action="store_true", help="every section at tiny sizes on the CPU")
    parser.add_argument("--budget-seconds", type=float, help="wall time of the whole check (GPU: 420)")
    parser.add_argument("--train-seconds", type=float, help="training time per model (GPU: 90)")
    parser.add_argument("--step-seconds", type=float, help="timed seconds per step measurement (GPU: 8)")
    parser.add_argument(
        "--train-precision", choices=PRECISIONS, help="of the short training (default: 32-true)"
    )
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the check with command-line ``argv`` (default ``sys.argv[1:]``); return what it wrote."""
    return run_check(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    run_script(main)
