"""Kill a training process with SIGKILL and resume it: the result equals an uninterrupted run.

Both runs go through the real command line (``python -m sa4depth.cli train``) in deterministic mode
on the CPU, so this also covers periodic ``last.ckpt`` saving and the restore of every piece of state
(weights, Adam moments, scheduler, step and epoch counters, sample order).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sa4depth.data.toy import toy_run_overrides, toy_world

# 5 frames -> 3 targets per sequence, 6 in all: 3 steps per epoch at batch size 2.
STEPS_PER_EPOCH, TOTAL_STEPS = 3, 6


def train_command(world, out, *extra):
    return [
        sys.executable,
        "-m",
        "sa4depth.cli",
        "train",
        *extra,
        *toy_run_overrides(world, out),
        "data.max_val_samples=2",
        "trainer.seed=3",
        f"trainer.max_steps={TOTAL_STEPS}",
        f"trainer.checkpoint_every_n_steps={STEPS_PER_EPOCH}",
    ]


def start(cmd, cwd, log_name):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = open(cwd / log_name, "w")  # closed by finish()
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def finish(proc, log, timeout=240):
    rc = proc.wait(timeout=timeout)
    log.close()
    return rc


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path):
    world = toy_world(tmp_path / "world", frames=5)
    # The reference runs alongside the run that gets killed, to halve the wall time.
    reference, ref_log = start(train_command(world, tmp_path / "ref"), tmp_path, "ref.log")
    victim, victim_log = start(train_command(world, tmp_path / "run"), tmp_path, "victim.log")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # The first last.ckpt is the end of epoch 1 (step 3); the next would be step 6: kill in between.
    victim.send_signal(signal.SIGKILL)
    assert finish(victim, victim_log) == -signal.SIGKILL, (tmp_path / "victim.log").read_text()[-3000:]
    killed = load(last)
    assert killed["global_step"] == STEPS_PER_EPOCH

    resumed, resumed_log = start(train_command(world, tmp_path / "run", "--resume"), tmp_path, "resumed.log")
    assert finish(resumed, resumed_log) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    assert finish(reference, ref_log) == 0, (tmp_path / "ref.log").read_text()[-3000:]

    got, want = load(last), load(tmp_path / "ref" / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] == TOTAL_STEPS
    assert got["epoch"] == want["epoch"]
    # Deterministic CPU kernels and the same batches in the same order: bit-identical, tolerance 0.
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    opt_got, opt_want = got["optimizer_states"][0], want["optimizer_states"][0]
    assert opt_got["state"].keys() == opt_want["state"].keys()
    for index, state in opt_want["state"].items():
        for name, value in state.items():
            assert torch.equal(opt_got["state"][index][name], value), (index, name)
    assert got["lr_schedulers"] == want["lr_schedulers"]
    # A kill can interrupt a save, but the resumed run cleans up what it left.
    assert not list((tmp_path / "run").rglob("*.tmp"))
