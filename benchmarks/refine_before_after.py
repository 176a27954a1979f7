"""SA4Depth's training step with the code of an earlier commit and with the current one, in one process.

Usage (one thread; results/refine_cost/<name>.json):
    OMP_NUM_THREADS=1 python benchmarks/refine_before_after.py --before 0d96280 --name before_after_64x192
    OMP_NUM_THREADS=1 python benchmarks/refine_before_after.py --before 0d96280 \
        --name before_after_192x640 --repeats 5 --overrides model.encoder=resnet18 \
        model.pose_encoder=resnet18 data.height=192 data.width=640

The earlier commit's ``src/`` is extracted with ``git archive`` and imported as a second copy of the
package, so baseline, "before" and "after" steps alternate (A, B, C, A, B, C, ...) under the same
machine load. Both SA4Depth models start from the same weights and batch; their loss and gradients
are compared first, so the JSON also says whether the speed-up left the step unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import sa4depth.train.model  # noqa: F401  (the current code, for `build`)
import sa4depth.train.refinement  # noqa: F401
from sa4depth.apps.bench import machine_info
from sa4depth.config import load_config
from sa4depth.data.datamodule import build_dataset, collate
from sa4depth.errors import run_script
from sa4depth.recipes import recipe_path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "refine_cost"


def _package_modules() -> dict:
    return {k: v for k, v in sys.modules.items() if k == "sa4depth" or k.startswith("sa4depth.")}


@contextlib.contextmanager
def use_modules(modules: dict):
    """Make ``modules`` the importable ``sa4depth`` (lazy imports inside the package resolve to them)."""
    current = _package_modules()
    for k in current:
        del sys.modules[k]
    sys.modules.update(modules)
    try:
        yield
    finally:
        for k in _package_modules():
            del sys.modules[k]
        sys.modules.update(current)


def import_commit(rev: str, into: Path) -> dict:
    """The ``sa4depth`` modules of commit ``rev`` (its ``src/`` extracted under ``into``), imported aside."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(into, filter="data")
    with use_modules({}):
        sys.path.insert(0, str(into / "src"))
        try:
            import sa4depth.train.model  # noqa: F401  (the whole training stack, imported eagerly)
            import sa4depth.train.refinement  # noqa: F401

            return _package_modules()
        finally:
            sys.path.remove(str(into / "src"))


def build(package: dict | None, cfg_overrides: list[str], seed: int = 0):
    """``(model, Adam)`` built with ``package``'s code (None: the current one), seeded."""
    with use_modules(package) if package else contextlib.nullcontext():
        modules = package or _package_modules()
        torch.manual_seed(seed)
        cfg = modules["sa4depth.config"].load_config(recipe_path("synthetic_cpu"), cfg_overrides)
        model = modules["sa4depth.train.model"].DepthPoseModel(cfg).train()
    return model, torch.optim.Adam(model.parameters(), 1e-4)


def loss_and_grads(model, batch) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model.training_forward(batch)[0]
    loss.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    return float(loss.detach()), grads


def lm_pair(model, model_before, old: dict, batch: dict) -> tuple[dict, dict]:
    """The LM alone, forward + backward, before and after, on this step's inputs; and how far apart
    their refined poses and input gradients are."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from refine_profile import lm_inputs

    args = lm_inputs(model, batch)
    geometry = old["sa4depth.geometry"]
    # The same tensors, wrapped in the earlier commit's Camera and Pose.
    args_before = (*args[:5], geometry.Camera(args[5].data), geometry.Pose(args[6].data))
    leaves = [*(t for group in args[:4] for t in group), args[4], args[6].data]

    def fwd_bwd(lm, lm_args):
        for t in leaves:
            t.grad = None
        T, _ = lm(*lm_args)
        (T.data * torch.linspace(1, 2, 12)).sum().backward()
        return T.data.detach(), [t.grad.clone() for t in leaves]

    lm, lm_before = model.refinement.lm, model_before.refinement.lm
    with use_modules(old):
        T_before, grads_before = fwd_bwd(lm_before, args_before)
    T_after, grads_after = fwd_bwd(lm, args)
    equivalence = {
        "max_abs_pose_difference": float((T_before - T_after).abs().max()),
        "max_abs_input_grad_difference": max(
            float((a - b).abs().max()) for a, b in zip(grads_before, grads_after, strict=True)
        ),
        "max_abs_input_grad": max(float(a.abs().max()) for a in grads_before),
    }
    runs = {
        "lm_before": (old, lambda: fwd_bwd(lm_before, args_before)),
        "lm_after": (None, lambda: fwd_bwd(lm, args)),
    }
    return runs, equivalence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the 'before' code")
    parser.add_argument("--name", default="before_after_64x192")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        type=lambda v: (v.split("=", 1)[0], v.split("=", 1)[1].split(",")),
        help="more SA4Depth runs with the current code, NAME=override,override (proposals: cost only)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    before_info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        old = import_commit(args.before, Path(tmp))
        refine = [*args.overrides, "refine.enabled=true"]
        cfg = load_config(recipe_path("synthetic_cpu"), args.overrides)
        dataset = build_dataset(cfg.data, "train", train=True)
        batch = collate([dataset[i] for i in range(cfg.data.batch_size)])
        runs = {
            "baseline_before": (old, build(old, args.overrides)),
            "baseline": (None, build(None, args.overrides)),
            "sa4depth_before": (old, build(old, refine)),
            "sa4depth_after": (None, build(None, refine)),
        }
        with use_modules(old):
            loss_before, grads_before = loss_and_grads(runs["sa4depth_before"][1][0], batch)
        loss_after, grads_after = loss_and_grads(runs["sa4depth_after"][1][0], batch)
        grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads_before, grads_after, strict=True))
        grad_scale = max(float(a.abs().max()) for a in grads_before)
        for name, extra in args.variants:
            runs[name] = (None, build(None, [*refine, *extra]))
        lm_runs, lm_equivalence = lm_pair(
            runs["sa4depth_after"][1][0], runs["sa4depth_before"][1][0], old, batch
        )
        times: dict[str, list[float]] = {k: [] for k in [*runs, *lm_runs]}
        for r in range(2 + args.repeats):
            for name, (package, (model, optimizer)) in runs.items():
                with use_modules(package) if package else contextlib.nullcontext():
                    start = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    model.training_forward(batch)[0].backward()
                    optimizer.step()
                    if r >= 2:
                        times[name].append(time.perf_counter() - start)
            for name, (package, fn) in lm_runs.items():
                with use_modules(package) if package else contextlib.nullcontext():
                    start = time.perf_counter()
                    fn()
                    if r >= 2:
                        times[name].append(time.perf_counter() - start)
    med = {k: round(statistics.median(v), 5) for k, v in times.items()}
    result = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "machine_before": before_info,
        "before": args.before,
        "after": subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "overrides": args.overrides,
        "repeats": args.repeats,
        "median_step_s": med,
        "overhead_before": round(med["sa4depth_before"] / med["baseline_before"] - 1, 4),
        "overhead_after": round(med["sa4depth_after"] / med["baseline"] - 1, 4),
        "overhead_of_variants": {n: round(med[n] / med["baseline"] - 1, 4) for n, _ in args.variants},
        "variants": {n: extra for n, extra in args.variants},
        "lm_equivalence": lm_equivalence,
        "equivalence": {
            "loss_before": loss_before,
            "loss_after": loss_after,
            "max_abs_grad_difference": grad_diff,
            "max_abs_grad": grad_scale,
        },
        "machine_after": machine_info(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    keys = ("median_step_s", "overhead_before", "overhead_after", "overhead_of_variants", "equivalence")
    keys = (*keys, "lm_equivalence")
    print(json.dumps({k: result[k] for k in keys}, indent=1), f"\nwritten {path}")


if __name__ == "__main__":
    run_script(main)
