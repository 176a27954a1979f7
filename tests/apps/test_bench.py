"""Regression tests of the performance benchmarks: speed RATIOS only (never absolute times), tiny sizes.

Margins are generous because the 2 CPU cores are shared; the real numbers are in benchmarks/README.md.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from sa4depth.apps import bench

pytestmark = pytest.mark.usefixtures("one_thread")


def _min_times(fns: dict, arg, repeats: int) -> dict:
    """Minimum seconds of each callable over interleaved repeats (the minimum is least hit by load)."""
    import time

    for fn in fns.values():
        fn(arg)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn(arg)
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def test_component_split_covers_the_sa4depth_forward():
    step = bench.TrainStep(bench.variant_overrides("sa4depth"))
    batch = bench.random_batch(1, 64, 96)
    step(batch)
    split = step.split(1)
    names = ("depth_net", "pose_net", "feature_net", "lm", "loss", "pose_net_loss", "backward", "optimizer")
    for name in names:
        assert split[name] > 0, name
    # The named parts are disjoint calls inside the forward: they cannot add up to more than it.
    assert split["forward_other"] >= -1e-3
    assert split["forward_other"] < 0.5 * split["forward"]


def test_sa4depth_training_step_overhead_is_bounded():
    steps = {v: bench.TrainStep(bench.variant_overrides(v)) for v in ("baseline", "sa4depth")}
    batch = bench.random_batch(2, 64, 96)
    t = _min_times(steps, batch, repeats=3)
    ratio = t["sa4depth"] / t["baseline"]
    # Measured ~1.4 at tiny sizes (the goal at 192x640 is <= 1.15); 3x would be a regression.
    assert 0.95 < ratio < 3.0, ratio


def test_component_timer_counts_module_calls_until_removed():
    timer = bench.ComponentTimer()
    layer = torch.nn.Linear(2, 2)
    timer.wrap_module(layer, "linear")
    layer(torch.zeros(1, 2))
    layer(torch.zeros(1, 2))
    assert timer.calls["linear"] == 2 and timer.totals["linear"] > 0
    timer.remove()
    layer(torch.zeros(1, 2))
    assert timer.calls["linear"] == 2


def test_baseline_and_sa4depth_checkpoints_hold_the_same_depth_net(tmp_path):
    nets = {
        v: bench.saved_depth_net(bench._config(bench.variant_overrides(v)), tmp_path / f"{v}.ckpt", seed)
        for seed, v in enumerate(("baseline", "sa4depth"))
    }
    shapes = {v: {k: t.shape for k, t in n.state_dict().items()} for v, n in nets.items()}
    assert shapes["baseline"] == shapes["sa4depth"]


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_exported_depth_model_matches_eager(backend):
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed")
    from sa4depth.models.depth_net import DepthNet

    torch.manual_seed(0)
    net = DepthNet("resnet18_slim").eval()
    x = bench._smooth_images(2, 64, 96)
    eager = bench.eager_depth_model(net)
    exported = bench.exported_depth_model(net, x, backend)
    assert torch.allclose(exported(x), eager(x), rtol=1e-4, atol=1e-5)
    # Other batch sizes and resolutions after building at one.
    y = bench._smooth_images(1, 96, 128)
    assert torch.allclose(exported(y), eager(y), rtol=1e-4, atol=1e-5)


def test_a_failing_back_end_raises_instead_of_running_eager(monkeypatch):
    from sa4depth.apps import export
    from sa4depth.models.depth_net import DepthNet

    def broken(*args):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(export, "torchscript_bytes", broken)
    with pytest.raises(RuntimeError, match="exporter broke"):
        bench.exported_depth_model(DepthNet("resnet18_slim"), bench._smooth_images(1, 64, 96), "torchscript")


def test_run_writes_json_with_command_and_machine_state(tmp_path):
    out = tmp_path / "train.json"
    result = bench.main(["train", "--sizes", "64x96", "--batch", "1", "--repeats", "1", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["results"][0]["size"] == "64x96" == result["results"][0]["size"]
    for key in ("torch", "threads", "load_average_1_5_15", "date_utc"):
        assert key in saved["machine_before"] and key in saved["machine_after"]
    assert saved["command"]
    entry = saved["results"][0]
    step = {v: entry["variants"][v]["step"]["median_s"] for v in ("baseline", "sa4depth")}
    assert entry["sa4depth_overhead"] == pytest.approx(step["sa4depth"] / step["baseline"] - 1)
