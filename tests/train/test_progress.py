"""Training progress a person can follow: plain lines with step / max steps, it/s, ETA and loss when
stdout is not a terminal (a pipe, a log), one line rewritten in place on a terminal, and no model-summary
box or library deprecation notices on the screen."""

import io
import re
import warnings
from types import SimpleNamespace

import pytest
import torch

import sa4depth.train.run as run
from sa4depth.config import load_config
from sa4depth.data.toy import toy_run_overrides, toy_world
from sa4depth.train.run import StepProgress, train

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def drive(bar, monkeypatch, steps, seconds_per_step, metrics):
    """Run ``bar`` through ``steps`` optimizer steps of a stand-in trainer, one every ``seconds_per_step``."""
    clock = Clock()
    monkeypatch.setattr(run, "time", clock)
    trainer = SimpleNamespace(
        global_step=0, estimated_stepping_batches=steps, callback_metrics=metrics, is_global_zero=True
    )
    bar.on_train_start(trainer, None)
    for step in range(1, steps + 1):
        clock.now, trainer.global_step = step * seconds_per_step, step
        bar.on_train_batch_end(trainer, None, None, None, step - 1)
    bar.on_train_end(trainer, None)


def test_plain_lines_at_the_first_step_every_30_s_and_at_the_end(monkeypatch):
    out = io.StringIO()
    drive(StepProgress(every_s=30, stream=out), monkeypatch, 10, 10.0, {"train/loss": torch.tensor(0.5)})
    assert out.getvalue().splitlines() == [
        "step 1/10 (10%) | 0.10 it/s | ETA 0:01:30 | loss 0.5000",
        "step 4/10 (40%) | 0.10 it/s | ETA 0:01:00 | loss 0.5000",
        "step 7/10 (70%) | 0.10 it/s | ETA 0:00:30 | loss 0.5000",
        "step 10/10 (100%) | 0.10 it/s | ETA 0:00:00 | loss 0.5000",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place(monkeypatch):
    out = Terminal()
    drive(StepProgress(stream=out), monkeypatch, 3, 1.0, {"val/abs_rel": torch.tensor(0.25)})
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[-1] == "step 3/3 (100%) | 1.00 it/s | ETA 0:00:00 | val/abs_rel 0.2500\x1b[K\n"


def test_plain_and_prefixed_lines_on_a_terminal_when_runs_share_the_screen(monkeypatch):
    out = Terminal()
    bar = StepProgress(every_s=30, stream=out, prefix="[a] ", plain=True)
    drive(bar, monkeypatch, 2, 1.0, {"train/loss": torch.tensor(0.5)})
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "[a] step 1/2 (50%) | 1.00 it/s | ETA 0:00:01 | loss 0.5000",
        "[a] step 2/2 (100%) | 1.00 it/s | ETA 0:00:00 | loss 0.5000",
    ]


def test_a_real_run_prints_progress_lines_and_no_summary_box(tmp_path, capsys):
    world = toy_world(tmp_path / "world", frames=5)  # 3 steps per epoch: validation at step 3
    overrides = [*toy_run_overrides(world, tmp_path / "run"), "data.max_val_samples=1", "trainer.max_steps=4"]
    cfg = load_config(None, overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, enable_progress_bar=True)
    lines = capsys.readouterr().out.splitlines()
    number, clock = r"\d+\.\d+", r"\d+:\d\d:\d\d"
    assert re.fullmatch(rf"step 1/4 \(25%\) \| {number} it/s \| ETA {clock} \| loss {number}", lines[0]), (
        lines
    )
    assert re.fullmatch(r"validation at step 3: val/abs_rel \d\.\d{4}", lines[1]), lines
    assert re.fullmatch(
        rf"step 4/4 \(100%\) \| {number} it/s \| ETA 0:00:00 \| loss {number} \| val/abs_rel {number}",
        lines[2],
    )
    assert len(lines) == 3  # no model-summary box, no "Epoch 1/-2" bar
    libraries = [w for w in caught if issubclass(w.category, DeprecationWarning | FutureWarning)]
    assert not [w for w in libraries if "site-packages" in w.filename], [str(w.message) for w in libraries]
