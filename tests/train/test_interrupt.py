"""Ctrl-C (SIGINT) during training, through the real command line: it ends at a step boundary with a
resumable ``last.ckpt``, exit code 130 and a line saying how to continue, also when it lands mid-save."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sa4depth.data.toy import toy_run_overrides, toy_world

# Runs `sa4depth.apps.cli.main` with the Ctrl-C sent at a scripted moment ($INTERRUPT_AT):
#   "step": once, while step 2 runs (global step 1 -> 2), as a user's key press would;
#   "save": twice, while the first checkpoint's bytes are being written;
#   anything else: not at all.
SCRIPT = """
import os
import signal
import sys

import torch
from lightning.pytorch.callbacks import Callback

import sa4depth.train.run as run
from sa4depth.apps.cli import main


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


class CtrlCDuringStep2(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 1:
            ctrl_c()


class CtrlCTwiceWhileWriting:
    def __init__(self, f):
        self.f, self.sent = f, False

    def write(self, data):
        if not self.sent:
            self.sent = True
            ctrl_c()
            ctrl_c()
        return self.f.write(data)

    def flush(self):
        self.f.flush()


if os.environ["INTERRUPT_AT"] == "step":
    build = run.build_trainer
    run.build_trainer = lambda cfg, extra_callbacks=None, **kw: build(cfg, [CtrlCDuringStep2()], **kw)
elif os.environ["INTERRUPT_AT"] == "save":
    real_save = torch.save
    torch.save = lambda obj, f, *args, **kwargs: real_save(obj, CtrlCTwiceWhileWriting(f), *args, **kwargs)
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return toy_world(tmp_path_factory.mktemp("world"), frames=5)  # 3 steps per epoch at batch size 2


def run_cli(tmp_path, interrupt_at, *args):
    script = tmp_path / "ctrl_c.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "INTERRUPT_AT": interrupt_at}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr, proc.stderr.strip().splitlines()


def train_args(world, out, *extra):
    return ["train", *extra, *toy_run_overrides(world, out), "data.max_val_samples=1", "trainer.max_steps=4"]


def global_step(path):
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"]


def training_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(world, tmp_path, same_training_state):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    rc, output, err = run_cli(tmp_path, "step", *train_args(world, out, "trainer.checkpoint_every_n_steps=0"))
    assert rc == 130, output[-3000:]
    assert "Traceback" not in output
    # The step in progress finished and was saved, then training stopped.
    assert err[-1] == f"interrupted at step 2: {last} holds step 2; continue with --resume", output[-3000:]
    assert global_step(last) == 2
    rc, output, _ = run_cli(tmp_path, "none", *train_args(world, out, "--resume"))
    assert rc == 0, output[-3000:]
    assert global_step(last) == 4
    # Step 2 is mid-epoch (3 steps per epoch): the resumed run trains on the epoch's third batch, as an
    # uninterrupted one does, not on its first again, and ends bit-identical to it (deterministic CPU).
    rc, output, _ = run_cli(tmp_path, "none", *train_args(world, tmp_path / "ref"))
    assert rc == 0, output[-3000:]
    same_training_state(training_state(last), training_state(tmp_path / "ref" / "checkpoints" / "last.ckpt"))


@pytest.mark.slow
def test_ctrl_c_during_a_save_lets_it_finish_without_a_traceback(world, tmp_path):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    rc, output, err = run_cli(tmp_path, "save", *train_args(world, out, "trainer.checkpoint_every_n_steps=1"))
    assert rc == 130, output[-3000:]
    # The RuntimeError of a zip writer cut short ("unexpected pos") used to end such a run.
    assert "Traceback" not in output and "RuntimeError" not in output, output[-3000:]
    assert err[-1] == f"interrupted at step 1: {last} holds step 1; continue with --resume", output[-3000:]
    assert global_step(last) == 1  # the interrupted save is complete and loadable
    assert not list(out.rglob("*.tmp"))
