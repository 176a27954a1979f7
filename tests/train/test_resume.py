"""Kill a training process with SIGKILL and resume it: the result equals an uninterrupted run.

Both runs go through the real command line (``python -m sa4depth.apps.cli train``) in deterministic mode
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

from sa4depth.apps.visualize import load_scalars
from sa4depth.data.toy import toy_run_overrides, toy_world

# 5 frames -> 3 targets per sequence, 6 in all: 3 steps per epoch at batch size 2.
STEPS_PER_EPOCH, TOTAL_STEPS = 3, 6


def train_command(world, out, *extra):
    return [
        sys.executable,
        "-m",
        "sa4depth.apps.cli",
        "train",
        *extra,
        *toy_run_overrides(world, out),
        "data.max_val_samples=2",
        "trainer.seed=3",
        f"trainer.max_steps={TOTAL_STEPS}",
        f"trainer.checkpoint_every_n_steps={STEPS_PER_EPOCH}",
        "trainer.log_every_n_steps=1",
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
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, same_training_state):
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
    assert got["global_step"] == TOTAL_STEPS
    # Deterministic CPU kernels and the same batches in the same order: bit-identical, tolerance 0.
    same_training_state(got, want)
    # A kill can interrupt a save, but the resumed run cleans up what it left.
    assert not list((tmp_path / "run").rglob("*.tmp"))
    # TensorBoard: every point at the step the uninterrupted run logged it (the kill followed an
    # end-of-epoch save, after which Lightning alone would log each later point one step too high).
    got_steps = {tag: steps.tolist() for tag, (steps, _) in load_scalars(tmp_path / "run").items()}
    want_steps = {tag: steps.tolist() for tag, (steps, _) in load_scalars(tmp_path / "ref").items()}
    assert got_steps == want_steps


# Scripted validation scores by global step (3 training steps per epoch): run 1 ends on its best score
# (step 6), the first resume reaches a worse one, the second a better one.
SCORES = {3: 0.7, 6: 0.5, 9: 0.6, 12: 0.3}


def scripted_validation(self):
    self.log("val/abs_rel", SCORES.get(self.global_step, 9.0))  # 9.0: the sanity check before training


def best_state(ckpt):
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("BestCheckpoint")]
    return state


def test_best_ckpt_keeps_the_best_score_across_resumes(tmp_path, monkeypatch, one_thread):
    from sa4depth.config import load_config
    from sa4depth.train.run import train
    from sa4depth.train.system import DepthPoseSystem

    monkeypatch.setattr(DepthPoseSystem, "on_validation_epoch_end", scripted_validation)
    world = toy_world(tmp_path / "world", frames=5)
    ckpt_dir = tmp_path / "run" / "checkpoints"

    def run(steps, resume):
        overrides = [*toy_run_overrides(world, tmp_path / "run"), "data.max_val_samples=2"]
        train(
            load_config(None, [*overrides, f"trainer.max_steps={steps}"]), resume, enable_progress_bar=False
        )
        return load(ckpt_dir / "best.ckpt")["global_step"], sorted(p.name for p in ckpt_dir.iterdir())

    assert run(6, resume=False) == (6, ["best.ckpt", "last.ckpt"])
    # last.ckpt is written after best.ckpt's callback has seen the validation, so it carries the score.
    last = load(ckpt_dir / "last.ckpt")
    assert float(best_state(last)["best_model_score"]) == 0.5
    # A last.ckpt saved before that order was fixed lacks the score: the resumed run reads it from best.ckpt.
    best_state(last).update(
        best_model_score=None, best_k_models={}, best_model_path="", kth_best_model_path=""
    )
    torch.save(last, ckpt_dir / "last.ckpt")
    assert run(9, resume=True) == (6, ["best.ckpt", "last.ckpt"])  # 0.6 is worse than 0.5: kept
    assert run(12, resume=True) == (12, ["best.ckpt", "last.ckpt"])  # 0.3 replaces it, no best-v1.ckpt
    assert float(best_state(load(ckpt_dir / "best.ckpt"))["best_model_score"]) == pytest.approx(0.3)
