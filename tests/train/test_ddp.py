"""Two-process DDP training on the CPU (gloo), launched through the command line as a user would.

Lightning starts the second process by re-running the command. Checked: both replicas end with
bit-identical weights, only rank 0 writes files, validation counts every image once, the result
equals one process that accumulates the same two per-rank batches into one step, and a NaN batch on
one rank makes both ranks skip the step together instead of hanging.
"""

import os
import subprocess
import sys
import textwrap

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sa4depth.config import load_config
from sa4depth.data.toy import toy_run_overrides, toy_world
from sa4depth.train.run import build_system

STEPS = 3
VAL_IMAGES = 3  # odd, so the distributed sampler pads one rank with a repeated image


def train_command(world, out, *extra):
    return [
        sys.executable,
        "-m",
        "sa4depth.apps.cli",
        "train",
        *toy_run_overrides(world, out, batch_size=1),
        f"data.max_val_samples={VAL_IMAGES}",
        "trainer.seed=5",
        f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=1.0",
        *extra,
    ]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# Runs `sa4depth.apps.cli.main` with a callback that puts a NaN into rank 1's batch at step 1 only.
NAN_ON_RANK_1 = """
import math
import sys

from lightning.pytorch.callbacks import Callback

import sa4depth.train.run as run
from sa4depth.apps.cli import main


class NaNOnRank1(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 1:
            batch["images"][0, 0, 0, 0, 0] = math.nan


build = run.build_trainer
run.build_trainer = lambda cfg, extra_callbacks=None, **kw: build(cfg, [NaNOnRank1()], **kw)
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start the three trainings at once (they share two cores) and wait for all of them."""
    root = tmp_path_factory.mktemp("ddp")
    world = toy_world(root / "world", frames=5)  # 6 training targets: 3 steps of 2 x 1 images
    (root / "nan_on_rank_1.py").write_text(textwrap.dedent(NAN_ON_RANK_1))
    ddp = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.max_epochs=1"]
    commands = {
        "ddp": train_command(world, root / "ddp", *ddp),
        # One process, batch 1, two batches per optimizer step = the same global batch and the same
        # batch-norm statistics (per image) as the two DDP ranks. SyncBatchNorm would make DDP equal
        # to one batch of 2 instead, but PyTorch implements it for GPUs only.
        "single": train_command(world, root / "single", "trainer.accumulate_grad_batches=2"),
        "nan": [
            sys.executable,
            str(root / "nan_on_rank_1.py"),
            *train_command(world, root / "nan", *ddp)[3:],
        ],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, cmd in commands.items():
        log = open(root / f"{name}.log", "w")  # closed below, once the process has ended
        procs[name] = (subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait(timeout=400)
        log.close()
        assert rc == 0, f"{name} failed:\n" + (root / f"{name}.log").read_text()[-4000:]
    return root


@pytest.mark.slow
def test_ddp_replicas_agree_and_only_rank_0_writes(runs):
    files = files_under(runs / "ddp")
    assert [f for f in files if not f.startswith("tensorboard/events.")] == [
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "config.yaml",
        "tensorboard/hparams.yaml",
    ]
    assert len([f for f in files if f.startswith("tensorboard/events.")]) == 1
    ckpt = load(runs / "ddp/checkpoints/last.ckpt")
    assert ckpt["global_step"] == STEPS
    digests = ckpt["sa4depth_replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both replicas hold bit-identical weights
    # Validation gathers the per-image metrics of both ranks and drops the sampler's padding repeat.
    events = EventAccumulator(str(runs / "ddp" / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("val/count")] == [VAL_IMAGES]


@pytest.mark.slow
def test_ddp_equals_one_process_with_the_same_global_batch(runs):
    ddp, single = load(runs / "ddp/checkpoints/last.ckpt"), load(runs / "single/checkpoints/last.ckpt")
    assert ddp["global_step"] == single["global_step"] == STEPS
    L.seed_everything(5, verbose=False)
    init = build_system(load_config(None, ["trainer.seed=5"]), "test").state_dict()
    params = [k for k, v in init.items() if v.is_floating_point() and "running_" not in k]
    diff = sum(float((ddp["state_dict"][k] - single["state_dict"][k]).pow(2).sum()) for k in params)
    update = sum(float((single["state_dict"][k] - init[k]).pow(2).sum()) for k in params)
    assert update > 0
    # Measured: 0 (averaging two gradients equals accumulating two halves, bit for bit). Tolerance 1e-6.
    assert (diff / update) ** 0.5 <= 1e-6


@pytest.mark.slow
def test_nan_batch_on_one_rank_makes_all_ranks_skip_together(runs):
    ckpt = load(runs / "nan/checkpoints/last.ckpt")  # the run ended instead of hanging in a collective
    assert ckpt["global_step"] == STEPS
    assert ckpt["sa4depth_skipped_steps"] == 1  # counted on rank 0, whose own batch was fine
    digests = ckpt["sa4depth_replica_digests"]
    assert digests[0] == digests[1]
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
