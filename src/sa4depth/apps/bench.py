"""Benchmarks of training, inference, peak memory, data loading and scaling with resolution and batch size.

The training step is timed with a per-component split, inference for eager PyTorch and the faster
back-ends, memory as the peak of a training run, data loading as loader throughput, and scaling as the
step time against resolution and batch size.

Each benchmark returns a JSON-able dict that records the machine state (torch version, threads, load
average, date); `main` / ``sa4depth bench <what>`` writes it to ``benchmarks/results/<what>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

BENCHMARKS = ("train", "inference", "memory", "data", "scaling")
BACKENDS = (
    "eager",
    "eager_inference_mode",
    "eager_inference_mode_channels_last",
    "torchscript",
    "torch_compile",
    "onnxruntime",
)


# --------------------------------------------------------------------------------------------- helpers
def machine_info() -> dict:
    """Torch version, thread counts, CPU count, 1/5/15-min load average and UTC date of this moment."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }


def summarize(times: list[float]) -> dict:
    """Median, min, max and all samples of a list of seconds."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "samples_s": [round(t, 5) for t in times],
    }


class ComponentTimer:
    """Wall-clock seconds spent in named modules / callables (inclusive), accumulated over calls.

    Modules are timed by forward pre-hooks and hooks (removed by `remove`), other callables by a wrapper
    set as an attribute of their owner, so no library code carries timing code. On CPU every op is
    synchronous, so wall clock is exact.
    """

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.enabled = True
        self._handles: list = []

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the ``with`` block under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - start)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Count nothing inside the block (used for the backward pass).

        Activation checkpointing calls timed callables again in the backward pass; that recomputation is
        backward time, not a forward component.
        """
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    def _add(self, name: str, seconds: float) -> None:
        if self.enabled:
            self.totals[name] += seconds
            self.calls[name] += 1

    def wrap_module(self, module: nn.Module | None, name: str) -> None:
        """Time every ``module(...)`` call under ``name`` (no-op for None)."""
        if module is None:
            return
        starts: list[float] = []  # a stack: a module may call itself (recursion) before returning

        def before(mod, args) -> None:
            starts.append(time.perf_counter())

        def after(mod, args, output) -> None:
            self._add(name, time.perf_counter() - starts.pop())

        self._handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def wrap_attr(self, owner, attr: str, name: str) -> None:
        """Replace ``owner.<attr>`` (a callable that is not a module) by a timed wrapper."""
        setattr(owner, attr, _Timed(getattr(owner, attr), self, name))

    def remove(self) -> None:
        """Remove the module hooks (`wrap_module`)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget the seconds and calls counted so far."""
        self.totals.clear()
        self.calls.clear()


class _Timed:
    """A callable timed by a `ComponentTimer`; other attributes are the wrapped callable's."""

    def __init__(self, fn: Callable, timer: ComponentTimer, name: str):
        self._fn, self._timer, self._name = fn, timer, name

    def __call__(self, *args, **kwargs):
        with self._timer.section(self._name):
            return self._fn(*args, **kwargs)

    def __getattr__(self, item):
        return getattr(self._fn, item)


def _parse_size(size: str) -> tuple[int, int]:
    h, w = (int(x) for x in size.lower().split("x"))
    return h, w


def _config(overrides: list[str]):
    from sa4depth.config import load_config

    return load_config(None, overrides)


def variant_overrides(variant: str, encoder: str = "resnet18", pipeline: str = "monodepth2") -> list[str]:
    """Config overrides of a named variant: ``baseline`` or ``sa4depth`` (refinement on, paper defaults)."""
    if variant not in ("baseline", "sa4depth"):
        raise ValueError(f"variant must be 'baseline' or 'sa4depth', got {variant!r}")
    return [
        f"model.encoder={encoder}",
        f"loss.pipeline={pipeline}",
        f"refine.enabled={'true' if variant == 'sa4depth' else 'false'}",
    ]


def random_batch(batch: int, height: int, width: int, frames: int = 3, seed: int = 0) -> dict:
    """A training batch (fields of `sa4depth.data`) of smooth random images with KITTI-like intrinsics.

    Timing does not depend on the pixel values; smooth images keep the LM's valid-point counts realistic.
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * frames, 3, max(height // 8, 1), max(width // 8, 1), generator=g)
    images = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    images = images.unflatten(0, (batch, frames)).contiguous()
    K = torch.tensor(
        [[0.58 * width, 0.0, 0.5 * width - 0.5], [0.0, 1.92 * height, 0.5 * height - 0.5], [0, 0, 1.0]]
    )
    return {
        "images": images,
        "images_aug": images,
        "K": K.expand(batch, 3, 3).clone(),
        "depth": torch.zeros(batch, 1, height, width),
        "has_depth": torch.zeros(batch, dtype=torch.bool),
        "T_src_tgt": torch.eye(4).expand(batch, frames - 1, 4, 4).clone(),
        "has_pose": torch.zeros(batch, dtype=torch.bool),
    }


def _data_config(root: str, height: int, width: int, batch: int, workers: int, augment: bool = True):
    return _config(
        [
            f"data.root={root}",
            f"data.height={height}",
            f"data.width={width}",
            f"data.batch_size={batch}",
            f"data.num_workers={workers}",
            f"data.augment={'true' if augment else 'false'}",
        ]
    ).data


def _loader_batches(root: str, height: int, width: int, batch: int, n: int) -> tuple[list[dict], list[float]]:
    """``n`` training batches from the data module (single process), and the seconds each one took."""
    from sa4depth.data.datamodule import DepthDataModule

    dm = DepthDataModule(_data_config(root, height, width, batch, 0))
    dm.setup("fit")
    batches, times = [], []
    while len(batches) < n:
        it = iter(dm.train_dataloader())
        while len(batches) < n:
            start = time.perf_counter()
            try:
                b = next(it)
            except StopIteration:
                break
            times.append(time.perf_counter() - start)
            batches.append(b)
    return batches, times


# ------------------------------------------------------------------------------------------ training step
class TrainStep:
    """One model + Adam, with its components timed: depth net, pose net, feature net, LM, losses.

    Args:
        overrides: config overrides (see `variant_overrides`).
        seed: weight initialisation seed.
    """

    def __init__(self, overrides: list[str], seed: int = 0):
        from sa4depth.train.model import DepthPoseModel

        torch.manual_seed(seed)
        self.cfg = _config(overrides)
        self.model = DepthPoseModel(self.cfg).train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=1e-4, fused=True)  # as training in full precision
        self.timer = ComponentTimer()
        m = self.model
        self.timer.wrap_module(m.depth_net, "depth_net")
        self.timer.wrap_module(m.pose_net, "pose_net")
        if m.refinement is not None:
            self.timer.wrap_module(m.refinement.feature_net, "feature_net")
            self.timer.wrap_module(m.refinement.lm, "lm")
        self.timer.wrap_attr(m, "objective", "loss")
        self.timer.wrap_attr(m.pose_net_objective, "photometric", "pose_net_loss")

    def __call__(self, batch: dict) -> float:
        """Run forward, backward and the Adam step; return the loss."""
        t = self.timer
        with t.section("forward"):
            # A step far past any refinement warm-up: the full SA4Depth step.
            loss, _ = self.model.training_forward(batch, step=10**9)
        self.optimizer.zero_grad(set_to_none=True)
        with t.section("backward"), t.paused():
            loss.backward()
        with t.section("optimizer"):
            self.optimizer.step()
        return float(loss.detach())

    def split(self, steps: int) -> dict:
        """Mean seconds per step of each component since the last `ComponentTimer.reset`."""
        out = {k: v / steps for k, v in self.timer.totals.items()}
        named = ("depth_net", "pose_net", "feature_net", "lm", "loss", "pose_net_loss")
        out["forward_other"] = out.get("forward", 0.0) - sum(out.get(k, 0.0) for k in named)
        return out


def bench_train(
    sizes: list[str],
    encoders: list[str],
    batch: int = 4,
    repeats: int = 3,
    variants: tuple[str, ...] = ("baseline", "sa4depth"),
    pipeline: str = "monodepth2",
    data_root: str | None = None,
    refine_variants: dict[str, list[str]] | None = None,
) -> dict:
    """Training step (forward + backward + Adam) per variant, size and encoder, with its time split.

    Variants are interleaved step by step (A, B, A, B, ...), so a change of machine load hits them alike.
    Batches come from the data module on ``data_root`` (resized to each size; its per-batch time is the
    "data loading" entry, single process), or are random when ``data_root`` is None.
    ``refine_variants``: more SA4Depth variants, name -> config overrides on top of ``sa4depth`` (e.g.
    ``{"shared": ["refine.share_encoder=true"]}``); each gets its overhead over the baseline.
    """
    refine_variants = refine_variants or {}
    results = []
    for encoder in encoders:
        for size in sizes:
            H, W = _parse_size(size)
            if data_root is not None:
                batches, load_times = _loader_batches(data_root, H, W, batch, repeats + 1)
            else:
                batches, load_times = [random_batch(batch, H, W, seed=i) for i in range(repeats + 1)], []
            steps = {v: TrainStep(variant_overrides(v, encoder, pipeline)) for v in variants}
            for name, extra in refine_variants.items():
                steps[name] = TrainStep(variant_overrides("sa4depth", encoder, pipeline) + list(extra))
            for step in steps.values():  # warm-up (allocator, first-call overheads), not timed
                step(batches[0])
                step.timer.reset()
            times = {v: [] for v in steps}
            for r in range(repeats):
                for v, step in steps.items():
                    start = time.perf_counter()
                    step(batches[1 + r])
                    times[v].append(time.perf_counter() - start)
            entry = {"encoder": encoder, "size": size, "batch": batch, "pipeline": pipeline, "variants": {}}
            for v, step in steps.items():
                split = step.split(repeats)
                if load_times:
                    split["data_loading"] = statistics.median(load_times)
                entry["variants"][v] = {
                    "step": summarize(times[v]),
                    "split_s": {k: round(x, 5) for k, x in split.items()},
                    "parameters": sum(p.numel() for p in step.model.parameters()),
                }
            base = entry["variants"]["baseline"]["step"]["median_s"] if "baseline" in steps else None
            if base is not None and "sa4depth" in steps:
                entry["sa4depth_overhead"] = entry["variants"]["sa4depth"]["step"]["median_s"] / base - 1.0
            if "baseline" in steps:
                entry["overhead_over_baseline"] = {
                    v: round(entry["variants"][v]["step"]["median_s"] / base - 1.0, 4)
                    for v in steps
                    if v != "baseline"
                }
            logger.info("train %s %s: %s", encoder, size, {v: entry["variants"][v]["step"] for v in steps})
            results.append(entry)
    return {"benchmark": "train_step", "goal": "SA4Depth step overhead <= 15 %", "results": results}


def profile_step(size: str, batch: int, variant: str, encoder: str = "resnet18", top: int = 20) -> dict:
    """torch.profiler table (ops by self CPU time, forward and backward ops) of one training step."""
    from torch.profiler import ProfilerActivity, profile

    H, W = _parse_size(size)
    step = TrainStep(variant_overrides(variant, encoder))
    data = random_batch(batch, H, W)
    step(data)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(data)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
            "self_cpu_fraction": round(e.self_cpu_time_total / total, 4),
        }
        for e in events[:top]
    ]
    return {"size": size, "batch": batch, "variant": variant, "encoder": encoder, "top_ops": rows}


# ---------------------------------------------------------------------------------------------- inference
def _smooth_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return random_batch(batch, height, width, frames=1, seed=seed)["images"][:, 0].contiguous()


def exported_depth_model(
    depth_net: nn.Module, example: torch.Tensor, backend: str, threads: int | None = None
) -> Callable:
    """``image (B, 3, H, W) -> depth (B, 1, H, W)`` through an export back-end, built as ``sa4depth export``.

    The file is made by `sa4depth.apps.export`'s builders and read back by its `load_exported`; any
    failure raises (a back-end that does not work is not replaced by another).

    Args:
        depth_net: a `sa4depth.models.depth_net.DepthNet` (put in eval mode).
        example: ``(B, 3, H, W)`` input to trace / export with; other batch sizes and sizes (multiples of
            32) work afterwards.
        backend: "torchscript" (frozen, ``optimize_for_inference``) or "onnxruntime".
        threads: onnxruntime intra-op threads (default: torch's thread count).
    """
    from sa4depth.apps.export import DepthExportModel, load_exported, onnx_bytes, torchscript_bytes

    builders = {"torchscript": (torchscript_bytes, "torchscript"), "onnxruntime": (onnx_bytes, "onnx")}
    if backend not in builders:
        raise ValueError(f"backend must be one of {sorted(builders)}, got {backend!r}")
    build, format = builders[backend]
    model = DepthExportModel(depth_net).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input-shape guards; see export
        data = build(model, example, {})
    with tempfile.TemporaryDirectory() as tmp:  # the model is read into memory: the file may go
        path = Path(tmp) / f"depth.{format}"
        path.write_bytes(data)
        run, _ = load_exported(path, format, optimize=True, threads=threads or torch.get_num_threads())
    return run


def eager_depth_model(depth_net: nn.Module, channels_last: bool = False, inference_mode: bool = False):
    """Eager ``image -> depth``: plain ``no_grad``, or ``inference_mode`` and/or channels-last memory.

    Without ``channels_last`` the weights are made contiguous (``DepthNet`` builds them channels-last),
    so that "eager" stays the plain reference the other back-ends are compared with.
    """
    net = depth_net.eval().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    context = torch.inference_mode if inference_mode else torch.no_grad

    def run(x: torch.Tensor) -> torch.Tensor:
        with context():
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return net.predict_depth(x).contiguous()

    return run


def compiled_depth_model(depth_net: nn.Module, example: torch.Tensor):
    """``torch.compile`` of the depth model (needs a C++ compiler for the CPU back-end)."""
    from sa4depth.apps.export import DepthExportModel

    compiled = torch.compile(DepthExportModel(depth_net).eval())

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    run(example)  # compile now, so a failure surfaces here
    return run


def _time_fn(fn: Callable, x: torch.Tensor, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def saved_depth_net(cfg, path: Path, seed: int = 0) -> nn.Module:
    """Save a freshly initialised training system as a checkpoint and read its depth net back.

    The checkpoint goes through the inference loader (`sa4depth.inference.load_depth_net`), so the
    benchmark times the network as ``sa4depth predict`` would load it.

    Args:
        cfg: the `sa4depth.config.Config` of the training system (variant, encoder, resolution).
        path: the checkpoint file to write (overwritten).
        seed: ``torch.manual_seed`` before initialising, so that the random weights are reproducible.

    Returns:
        The loaded depth network.
    """
    from sa4depth.config import config_to_dict
    from sa4depth.inference import load_depth_net
    from sa4depth.train.system import DepthPoseSystem

    torch.manual_seed(seed)
    system = DepthPoseSystem(cfg)
    torch.save({"state_dict": system.state_dict(), "sa4depth_config": config_to_dict(cfg)}, path)
    return load_depth_net(path).depth_net


def bench_inference(
    size: str = "192x640",
    batches: tuple[int, ...] = (1, 8),
    repeats: int = 5,
    encoder: str = "resnet18",
    backends: tuple[str, ...] = BACKENDS,
) -> dict:
    """Depth-net images/s: baseline- vs SA4Depth-"trained" checkpoints, and eager vs faster back-ends.

    The two checkpoints are a freshly initialised baseline and SA4Depth training system written to disk
    and read back by the inference loader (`saved_depth_net`; different random weights, the architecture
    is what sets the speed). Each back-end's output is compared with eager PyTorch on the same input.
    """
    H, W = _parse_size(size)
    nets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed, variant in enumerate(("baseline", "sa4depth")):
            cfg = _config(variant_overrides(variant, encoder))
            nets[variant] = saved_depth_net(cfg, Path(tmp) / f"{variant}.ckpt", seed)
    keys = {v: sorted(n.state_dict()) for v, n in nets.items()}
    result = {
        "benchmark": "inference",
        "size": size,
        "encoder": encoder,
        "checkpoints": "random-init baseline and SA4Depth training checkpoints (saved, read back by the "
        "inference loader); the depth net is the whole inference model in both",
        "same_depth_net_keys": keys["baseline"] == keys["sa4depth"],
        "depth_net_parameters": {v: sum(p.numel() for p in n.parameters()) for v, n in nets.items()},
        "goal": "baseline/SA4Depth ratio 1.00 +- 0.03; best back-end >= 1.5x eager",
        "batches": {},
    }
    for B in batches:
        x = _smooth_images(B, H, W)
        entry: dict = {}
        # Checkpoint comparison: eager, interleaved so load changes hit both alike.
        runs = {v: eager_depth_model(n) for v, n in nets.items()}
        for fn in runs.values():
            fn(x)
        t = {v: [] for v in runs}
        for _ in range(repeats):
            for v, fn in runs.items():
                t[v].extend(_time_fn(fn, x, 1, warmup=0))
        ckpt = {v: {**summarize(s), "images_per_s": B / statistics.median(s)} for v, s in t.items()}
        entry["checkpoints"] = ckpt
        ratio = ckpt["sa4depth"]["images_per_s"] / ckpt["baseline"]["images_per_s"]
        entry["sa4depth_over_baseline_speed"] = ratio
        # Back-ends on the baseline net.
        net = nets["baseline"]
        with torch.no_grad():
            reference = net.predict_depth(x)
        entry["backends"] = {}
        for name in backends:
            fresh = copy.deepcopy(net)  # channels-last and the exporters must not change the reference
            try:
                start = time.perf_counter()
                if name == "eager":
                    fn = eager_depth_model(fresh)
                elif name == "eager_inference_mode":
                    fn = eager_depth_model(fresh, inference_mode=True)
                elif name == "eager_inference_mode_channels_last":
                    fn = eager_depth_model(fresh, channels_last=True, inference_mode=True)
                elif name in ("torchscript", "onnxruntime"):
                    fn = exported_depth_model(fresh, x, name)
                elif name == "torch_compile":
                    fn = compiled_depth_model(fresh, x)
                else:
                    raise ValueError(f"unknown backend {name!r}")
                build_s = time.perf_counter() - start
                out = fn(x)
                times = _time_fn(fn, x, repeats)
            except Exception as e:  # record why a back-end is unavailable here, keep measuring the rest
                entry["backends"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
                logger.info("inference %s B=%d failed: %s", name, B, e)
                continue
            diff = (out - reference).abs()
            entry["backends"][name] = {
                **summarize(times),
                "images_per_s": B / statistics.median(times),
                "build_s": round(build_s, 3),
                "max_abs_diff_depth": float(diff.max()),
                "max_rel_diff_depth": float((diff / reference.abs()).max()),
            }
            logger.info("inference %s B=%d: %.2f img/s", name, B, entry["backends"][name]["images_per_s"])
        eager = entry["backends"].get("eager", {}).get("images_per_s")
        if eager:
            for v in entry["backends"].values():
                if "images_per_s" in v:
                    v["speedup_vs_eager"] = v["images_per_s"] / eager
        result["batches"][str(B)] = entry
    return result


# ------------------------------------------------------------------------------------------------- memory
def _peak_rss_child(overrides: list[str], batch: int, height: int, width: int, steps: int) -> dict:
    """Run in a fresh process: peak RSS (bytes) after building the model and after ``steps`` steps."""
    torch.set_num_threads(int(os.environ.get("SA4DEPTH_BENCH_THREADS", torch.get_num_threads())))
    step = TrainStep(overrides)
    data = random_batch(batch, height, width)
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    for _ in range(steps):
        step(data)
    return {
        "peak_rss_after_build_bytes": after_build,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "step_s": (time.perf_counter() - start) / steps,
    }


def bench_memory(
    size: str = "192x640",
    batch: int = 12,
    encoders: tuple[str, ...] = ("resnet18",),
    steps: int = 1,
    refine_variants: dict[str, list[str]] | None = None,
) -> dict:
    """Peak resident memory (``ru_maxrss``) of training steps, each variant in its own process.

    ``refine_variants``: more SA4Depth variants, as in `bench_train`.
    """
    H, W = _parse_size(size)
    results = []
    for encoder in encoders:
        variants = {v: variant_overrides(v, encoder) for v in ("baseline", "sa4depth")}
        for name, extra in (refine_variants or {}).items():
            variants[name] = variant_overrides("sa4depth", encoder) + list(extra)
        for variant, overrides in variants.items():
            code = (
                "import json, sys; from sa4depth.apps.bench import _peak_rss_child; "
                f"print(json.dumps(_peak_rss_child({overrides!r}, {batch}, {H}, {W}, {steps})))"
            )
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                entry = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            else:
                entry = json.loads(proc.stdout.strip().splitlines()[-1])
                entry["peak_rss_gib"] = entry["peak_rss_bytes"] / 2**30
            results.append({"encoder": encoder, "variant": variant, "size": size, "batch": batch, **entry})
            logger.info("memory %s %s: %s", encoder, variant, entry)
    return {"benchmark": "memory", "goal": "peak RSS < 8 GB", "results": results}


# --------------------------------------------------------------------------------------------------- data
def bench_data(
    root: str,
    size: str = "192x640",
    batch: int = 4,
    workers: tuple[int, ...] = (0, 2),
    batches: int = 12,
    train_step_s: float | None = None,
) -> dict:
    """Snippets/s and frames/s the data module delivers with augmentation, against the step's consumption.

    The loader is iterated for ``batches`` batches (epochs restart as needed); the first batch, which
    includes worker start-up, is excluded. ``train_step_s``: seconds of one training step at this
    size and batch (from `bench_train`), to which the ratio refers.
    """
    from sa4depth.data.datamodule import DepthDataModule

    H, W = _parse_size(size)
    results = []
    for n_workers in workers:
        dm = DepthDataModule(_data_config(root, H, W, batch, n_workers, augment=True))
        dm.setup("fit")
        loader = dm.train_dataloader()
        snippets, frames_per, count = 0, None, 0
        start = None
        while count < batches + 1:
            for b in loader:
                if start is None:  # first batch: worker start-up, excluded
                    start = time.perf_counter()
                    count += 1
                    frames_per = b["images"].shape[1]
                    continue
                snippets += b["images"].shape[0]
                count += 1
                if count >= batches + 1:
                    break
        elapsed = time.perf_counter() - start
        entry = {
            "num_workers": n_workers,
            "batches_timed": count - 1,
            "snippets_per_s": snippets / elapsed,
            "frames_per_s": snippets * frames_per / elapsed,
        }
        if train_step_s:
            entry["train_snippets_per_s"] = batch / train_step_s
            entry["supply_over_demand"] = entry["snippets_per_s"] / entry["train_snippets_per_s"]
        results.append(entry)
        logger.info("data workers=%d: %s", n_workers, entry)
        del loader, dm
    return {
        "benchmark": "data_pipeline",
        "root": root,
        "size": size,
        "batch": batch,
        "augment": True,
        "goal": "data module delivers >= 5x what the training step consumes",
        "train_step_s": train_step_s,
        "results": results,
    }


# ------------------------------------------------------------------------------------------------ scaling
def bench_scaling(
    sizes: list[str],
    batches: list[int],
    batch: int = 4,
    batch_size_at: str = "96x320",
    repeats: int = 2,
    encoder: str = "resnet18",
    plot: str | None = None,
    reuse: list[dict] | None = None,
) -> dict:
    """Step time (baseline and SA4Depth) against resolution at ``batch``, and against batch size.

    ``reuse``: entries of an earlier `bench_train` result; a (size, batch) found there is not re-measured.
    """
    reuse = reuse or []

    def measure(size: str, b: int) -> dict:
        for e in reuse:
            if e["size"] == size and e["batch"] == b and e["encoder"] == encoder and len(e["variants"]) == 2:
                return {**e, "reused_from_train_benchmark": True}
        return bench_train([size], [encoder], batch=b, repeats=repeats)["results"][0]

    by_size = [measure(s, batch) for s in sizes]
    by_batch = [measure(batch_size_at, b) for b in batches]

    def rows(entries, key):
        return [
            {
                key: e[key],
                **{f"{v}_s": e["variants"][v]["step"]["median_s"] for v in e["variants"]},
                "sa4depth_overhead": e.get("sa4depth_overhead"),
                "reused_from_train_benchmark": e.get("reused_from_train_benchmark", False),
            }
            for e in entries
        ]

    result = {
        "benchmark": "scaling",
        "encoder": encoder,
        "vs_resolution": {"batch": batch, "rows": rows(by_size, "size")},
        "vs_batch": {"size": batch_size_at, "rows": rows(by_batch, "batch")},
    }
    if plot:
        plot_scaling(result, plot)
        result["plot"] = plot
    return result


def plot_scaling(result: dict, path: str, lm: dict | None = None) -> None:
    """Plot step time vs pixels and vs batch size (and LM time vs iterations if ``lm``) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if lm else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    res = result["vs_resolution"]["rows"]
    pixels = [_parse_size(r["size"])[0] * _parse_size(r["size"])[1] / 1e3 for r in res]
    for v in ("baseline", "sa4depth"):
        axes[0].plot(pixels, [r[f"{v}_s"] for r in res], "o-", label=v)
        bt = result["vs_batch"]["rows"]
        axes[1].plot([r["batch"] for r in bt], [r[f"{v}_s"] for r in bt], "o-", label=v)
    axes[0].set(
        xlabel="kilo-pixels per image",
        ylabel="s / training step",
        title=f"batch {result['vs_resolution']['batch']}",
    )
    for r, x in zip(res, pixels, strict=True):
        axes[0].annotate(r["size"], (x, r["baseline_s"]), fontsize=7)
    axes[1].set(xlabel="batch size", ylabel="s / training step", title=result["vs_batch"]["size"])
    if lm:
        for levels, rows in sorted(lm["rows_by_levels"].items()):
            axes[2].plot(
                [r["iterations"] for r in rows],
                [r["lm_fwd_bwd_s"] for r in rows],
                "o-",
                label=f"{levels} levels",
            )
        axes[2].set(
            xlabel="LM iterations per level",
            ylabel="s (LM fwd+bwd)",
            title=f"LM, batch {lm['batch']}, {lm['size']}",
        )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"sa4depth, {result['encoder']}, CPU threads={torch.get_num_threads()}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------- entry
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` command's arguments (shared by ``sa4depth bench`` and `benchmarks/bench_perf.py`)."""
    parser.add_argument(
        "what",
        choices=BENCHMARKS + ("profile",),
        help="train: training step and its split; inference: depth-net back-ends; memory: peak training "
        "memory; data: loader throughput; scaling: step time against resolution and batch; profile: "
        "torch.profiler table of one step",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        metavar="HxW",
        help="image sizes, e.g. 96x320 (default: train 96x320 192x640; scaling 64x192 96x320 128x416 "
        "192x640; profile 96x320; inference, memory, data 192x640, and only the first size is used)",
    )
    parser.add_argument(
        "--encoders",
        nargs="+",
        default=["resnet18"],
        help="depth encoders (default: resnet18; inference, scaling and profile use the first)",
    )
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 12 for memory, else 4)")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=None,
        help="inference: batch sizes (default: 1 8); scaling: batch sizes of the batch sweep "
        "(default: 1 2 4 8)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="train, inference, scaling: timed runs per measurement after an untimed warm-up; medians "
        "are reported (default: %(default)s)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=BACKENDS,
        default=list(BACKENDS),
        help="inference: back-ends to compare, eager first (speed-ups refer to it); default: all",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="dataset for real batches (train) or the data benchmark (data, required there); "
        "default: random batches",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="data: DataLoader worker counts to compare (default: 0 2)",
    )
    parser.add_argument(
        "--train-step-s",
        type=float,
        default=None,
        help="data: training step seconds to compare with (default: from train.json)",
    )
    parser.add_argument(
        "--refine-variants",
        nargs="+",
        default=[],
        metavar="NAME=KEY=VALUE[,KEY=VALUE]",
        help="train, memory: more SA4Depth variants, e.g. shared=refine.share_encoder=true (default: none)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)"
    )
    parser.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/<what>.json)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sa4depth bench``: described by the module docstring's first paragraph."""
    description = " ".join(__doc__.split("\n\n")[0].split())
    parser = argparse.ArgumentParser(prog="sa4depth bench", description=description)
    add_arguments(parser)
    return parser


def parse_refine_variants(specs: list[str]) -> dict[str, list[str]]:
    """``["name=a.b=1,c.d=2"]`` -> ``{"name": ["a.b=1", "c.d=2"]}``.

    Example:
        >>> parse_refine_variants(["cheap=refine.iterations=2,refine.levels=2"])
        {'cheap': ['refine.iterations=2', 'refine.levels=2']}
    """
    variants = {}
    for spec in specs:
        name, sep, overrides = spec.partition("=")
        if not sep or not overrides or name in ("baseline", "sa4depth"):
            raise InputError("--refine-variants", f"{spec!r}: expected NAME=KEY=VALUE[,KEY=VALUE], new NAME")
        variants[name] = overrides.split(",")
    return variants


def _train_step_from_results(path: Path, size: str, batch: int) -> float | None:
    """Baseline resnet18 step seconds at ``size`` and ``batch`` from an earlier train benchmark JSON."""
    if not path.is_file():
        return None
    for e in json.loads(path.read_text()).get("results", []):
        if e["size"] == size and e["batch"] == batch and e["encoder"] == "resnet18":
            return e["variants"]["baseline"]["step"]["median_s"]
    return None


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark ``args.what`` and write its JSON; returns the result."""
    if args.threads:
        torch.set_num_threads(args.threads)
    before = machine_info()
    out = Path(args.output or f"benchmarks/results/{args.what}.json")
    if args.what == "train":
        result = bench_train(
            args.sizes or ["96x320", "192x640"],
            args.encoders,
            batch=args.batch or 4,
            repeats=args.repeats,
            data_root=args.data_root,
            refine_variants=parse_refine_variants(args.refine_variants),
        )
    elif args.what == "profile":
        result = {
            "profiles": [
                profile_step(s, args.batch or 4, v, args.encoders[0])
                for s in (args.sizes or ["96x320"])
                for v in ("baseline", "sa4depth")
            ]
        }
    elif args.what == "inference":
        result = bench_inference(
            (args.sizes or ["192x640"])[0],
            tuple(args.batches or (1, 8)),
            repeats=args.repeats,
            encoder=args.encoders[0],
            backends=tuple(args.backends),
        )
    elif args.what == "memory":
        result = bench_memory(
            (args.sizes or ["192x640"])[0],
            args.batch or 12,
            tuple(args.encoders),
            refine_variants=parse_refine_variants(args.refine_variants),
        )
    elif args.what == "data":
        if args.data_root is None:
            raise SystemExit("bench data needs --data-root (a dataset at the benchmarked size)")
        size, batch = (args.sizes or ["192x640"])[0], args.batch or 4
        step_s = args.train_step_s or _train_step_from_results(out.parent / "train.json", size, batch)
        result = bench_data(args.data_root, size, batch, tuple(args.workers), train_step_s=step_s)
    else:
        train_json = out.parent / "train.json"
        saved = json.loads(train_json.read_text()) if train_json.is_file() else {}
        # Rows measured with another thread count are not comparable.
        same = saved.get("machine_before", {}).get("threads") == torch.get_num_threads()
        reuse = saved.get("results", []) if same else []
        result = bench_scaling(
            args.sizes or ["64x192", "96x320", "128x416", "192x640"],
            args.batches or [1, 2, 4, 8],
            batch=args.batch or 4,
            repeats=args.repeats,
            encoder=args.encoders[0],
            plot=str(out.with_suffix(".png")),
            reuse=reuse,
        )
    result = {
        "command": " ".join(sys.argv),
        "machine_before": before,
        **result,
        "machine_after": machine_info(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float))
    tmp.replace(out)
    logger.info("written %s", out)
    return result


def main(argv: list[str] | None = None) -> dict:
    """Entry point of ``sa4depth bench``: parse the options, run the benchmark and write its JSON.

    Args:
        argv: command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The benchmark's result dict (see `run`).
    """
    parser = build_parser()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
