"""The GPU device check (benchmarks/device_check.py) rehearsed on the CPU: sections, JSON, budget.

The script lives in benchmarks/, which pytest does not collect, so it is loaded from its file.
"""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"
SECTIONS = ["step", "inference", "training"]
# The keys a GPU run writes too: the dry run goes through the same code at other sizes.
TOP_KEYS = {
    "check",
    "command",
    "dry_run",
    "settings",
    "device",
    "machine",
    "goals",
    "sections_done",
    "complete",
}
STEP_RUN_KEYS = {"step", "steps_timed", "losses_finite", "depth_net_dtypes", "total_s", "memory"}
MEMORY_KEYS = {"peak_allocated_bytes", "peak_allocated_gib", "peak_reserved_bytes"}
INFERENCE_NAMES = {"fp32", "bf16", "fp32_channels_last", "bf16_channels_last"}
TRAIN_RUN_KEYS = {"steps", "train_s", "steps_per_s", "total_s", "memory", "test", "overrides"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def dry_run(device_check, tmp_path_factory):
    """The JSON file of one ``--dry-run`` (about 30 s on one core) and what `main` returned."""
    root = tmp_path_factory.mktemp("device_check")
    returned = device_check.main(["--dry-run", "--out", str(root / "out"), "--work", str(root / "work")])
    return json.loads((root / "out" / "dry_run.json").read_text()), returned


def test_dry_run_measures_every_section(dry_run):
    written, returned = dry_run
    assert written["complete"] and written["sections_done"] == SECTIONS
    assert TOP_KEYS | {"elapsed_s", *SECTIONS} <= set(written)
    assert written["command"].startswith("python benchmarks/device_check.py --dry-run")
    assert written["device"]["type"] == "cpu" and returned["complete"]
    for name in SECTIONS:
        assert not {"error", "skipped", "partial"} & set(written[name]), name
        assert written[name]["section_s"] > 0

    for precision in ("32-true", "bf16-mixed"):
        runs = written["step"]["runs"][precision]
        for variant in ("baseline", "sa4depth"):
            r = runs[variant]
            assert set(r) == STEP_RUN_KEYS and set(r["memory"]) == MEMORY_KEYS
            assert r["losses_finite"] and r["steps_timed"] == 2 and r["step"]["median_s"] > 0
            assert r["depth_net_dtypes"] == [
                "torch.bfloat16" if precision == "bf16-mixed" else "torch.float32"
            ]
        assert math.isfinite(runs["sa4depth_overhead"]) and runs["memory_goal_met"] is None  # no GPU

    for batch in ("batch_1", "batch_2"):
        runs = written["inference"]["runs"][batch]
        assert set(runs) == INFERENCE_NAMES and all(r["images_per_s"] > 0 for r in runs.values())

    training = written["training"]
    assert training["data"]["render_s"] >= 0 and training["train_seconds_per_model"] > 0
    for variant in ("baseline", "sa4depth"):
        r = training["runs"][variant]
        assert set(r) == TRAIN_RUN_KEYS and r["steps"] == 2  # the dry run's step cap
        assert "refine.enabled=" + ("true" if variant == "sa4depth" else "false") in r["overrides"]
        assert 0 < r["test"]["abs_rel"] < 1 and r["test"]["count"] == 3  # the toy set's 3 test frames
    assert math.isfinite(training["abs_rel_sa4depth_minus_baseline"])


def test_sections_that_do_not_fit_the_budget_are_recorded_as_skipped(device_check, tmp_path):
    out = tmp_path / "out"
    device_check.main(["--dry-run", "--budget-seconds", "1", "--out", str(out), "--work", str(tmp_path)])
    written = json.loads((out / "dry_run.json").read_text())
    assert not written["complete"] and written["sections_done"] == []
    assert all("out of time" in written[name]["skipped"] for name in SECTIONS)


def test_a_failing_section_keeps_its_partial_data_and_the_others_still_run(
    device_check, tmp_path, monkeypatch
):
    def failing_inference(device, s, save):
        save({"runs": {"batch_1": {"fp32": {"images_per_s": 1.0}}}})
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(device_check, "step_section", lambda device, s, save: {"runs": {}})
    monkeypatch.setattr(device_check, "inference_section", failing_inference)
    monkeypatch.setattr(device_check, "training_section", lambda *args: {"runs": {}})
    out = tmp_path / "out"
    device_check.main(["--dry-run", "--out", str(out), "--work", str(tmp_path)])
    written = json.loads((out / "dry_run.json").read_text())
    assert written["sections_done"] == ["step", "training"] and not written["complete"]
    inference = written["inference"]
    assert inference["error"] == "RuntimeError: CUDA error: out of memory"
    assert inference["partial"] and inference["runs"]["batch_1"]["fp32"]["images_per_s"] == 1.0


def test_gpu_results_are_named_after_the_gpu(device_check, tmp_path):
    assert device_check.output_path(tmp_path, {"name": "NVIDIA H200"}, False) == tmp_path / "NVIDIA_H200.json"
    assert device_check.output_path(tmp_path, {"name": "NVIDIA H200"}, True) == tmp_path / "dry_run.json"
