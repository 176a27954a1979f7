"""Faults during training: a crash mid-save, non-finite images, losses and gradients, gradient clipping.

Each test provokes the fault in a real (tiny) training run and checks that nothing already saved or
learnt is lost or corrupted.
"""

import math
import os

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from sa4depth.config import load_config
from sa4depth.data.toy import toy_run_overrides, toy_world
from sa4depth.errors import InputError
from sa4depth.eval.report_table import write_metrics_json
from sa4depth.train.run import load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # 6 frames -> 4 targets per sequence, 8 in all: 4 steps per epoch at batch size 2.
    return toy_world(tmp_path_factory.mktemp("world"), frames=6)


def config(world, out, *extra):
    overrides = [*toy_run_overrides(world, out), "data.max_val_samples=2", "trainer.log_every_n_steps=1"]
    return load_config(None, [*overrides, *extra])


def tmp_files(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_crash_while_saving_a_checkpoint_keeps_the_previous_one(world, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(obj["global_step"])
        if len(calls) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then the "disk is full"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    cfg = config(world, tmp_path / "run", "trainer.max_steps=3", "trainer.checkpoint_every_n_steps=1")
    with pytest.raises(OSError, match="No space left"):
        train(cfg, enable_progress_bar=False)
    monkeypatch.undo()
    assert calls == [1, 2]  # the save at step 1 worked, the one at step 2 crashed
    ckpt_dir = tmp_path / "run" / "checkpoints"
    system, _ = load_checkpoint(ckpt_dir / "last.ckpt")
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True, mmap=True)["global_step"] == 1
    assert tmp_files(tmp_path) == []


def test_crash_while_writing_config_or_metrics_keeps_the_old_file(world, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(config(world, out, "trainer.max_steps=1"), enable_progress_bar=False)
    old_config = (out / "config.yaml").read_text()
    (tmp_path / "metrics.json").write_text('{"old": 1}\n')
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.basename(dst) in ("config.yaml", "metrics.json"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    # A failed write is a one-line error naming the file (not a traceback); the old file stays.
    with pytest.raises(InputError, match="config.yaml.*Input/output"):  # a resume rewrites config.yaml
        train(config(world, out, "trainer.max_steps=2"), resume=True, enable_progress_bar=False)
    with pytest.raises(InputError, match="metrics.json.*Input/output"):
        write_metrics_json(tmp_path / "metrics.json", {"abs_rel": 0.1})
    monkeypatch.undo()
    assert (out / "config.yaml").read_text() == old_config and "max_steps: 1" in old_config
    assert (tmp_path / "metrics.json").read_text() == '{"old": 1}\n'
    assert tmp_files(tmp_path) == []


class FaultProbe(Callback):
    """Injects one fault per step (by batch index) and records what each step changed.

    Faults: ``"image"`` (NaN pixel), ``"inf_image"`` (Inf pixel), ``"loss"`` (NaN loss),
    ``"grad"`` (NaN gradient of one weight), None (a normal step).
    """

    def __init__(self, plan):
        self.plan, self.records, self._hook = plan, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        fault = self.plan[batch_idx]
        self._before = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self._skipped = pl_module.skipped_steps
        if fault in ("image", "inf_image"):
            value = math.nan if fault == "image" else math.inf
            batch["images"][0, 0, 0, 5, 7] = value
            batch["images_aug"][0, 0, 0, 5, 7] = value
        elif fault == "loss":
            forward = pl_module.model.training_forward

            def nan_loss_forward(b, step=0):
                loss, logs = forward(b, step)
                return loss * math.nan, logs

            pl_module.model.training_forward = nan_loss_forward  # on the instance, removed at batch end
        elif fault == "grad":
            weight = pl_module.model.depth_net.decoder.parameters().__next__()
            self._hook = weight.register_hook(lambda g: torch.full_like(g, math.nan))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self._grad_norm = (
            float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if "training_forward" in vars(pl_module.model):
            del pl_module.model.training_forward  # back to the class method
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        after = pl_module.state_dict()
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        optimizer = trainer.optimizers[0]
        self.records.append(
            {
                "fault": self.plan[batch_idx],
                "params_changed": any(
                    not torch.equal(after[k], self._before[k]) for k, _ in pl_module.named_parameters()
                ),
                "buffers_changed": any(
                    not torch.equal(after[k], self._before[k])
                    for k in after
                    if k not in dict(pl_module.named_parameters())
                ),
                "skipped": pl_module.skipped_steps - self._skipped,
                "adam_steps": max((float(s["step"]) for s in optimizer.state.values()), default=0.0),
                "grad_norm_before_clip": self._grad_norm,
                "grad_norm_after_clip": (
                    float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) if grads else 0
                ),
            }
        )


def test_non_finite_images_loss_and_gradients_are_skipped_and_change_nothing(world, tmp_path):
    plan = ["image", None, "loss", "grad", "inf_image", None]
    probe = FaultProbe(plan)
    clip = 1e-3
    cfg = config(
        world,
        tmp_path / "run",
        f"trainer.max_steps={len(plan)}",
        f"optim.grad_clip={clip}",
        "data.batch_size=1",
    )
    train(cfg, enable_progress_bar=False, callbacks=[probe])
    rec = probe.records
    assert [r["fault"] for r in rec] == plan
    for r in rec:
        if r["fault"] is None:
            assert r["params_changed"] and r["skipped"] == 0
        else:  # skipped: weights, batch-norm statistics and Adam's moments untouched, and counted
            assert not r["params_changed"] and not r["buffers_changed"] and r["skipped"] == 1, r
    # Adam counts only the two real steps; a NaN step never reached its moments.
    assert [r["adam_steps"] for r in rec] == [0, 1, 1, 1, 1, 2]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert ckpt["sa4depth_skipped_steps"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    # Gradient clipping (optim.grad_clip) scales the total norm down to the limit on real steps.
    for r in rec:
        if r["fault"] is None:
            assert r["grad_norm_before_clip"] > 10 * clip
            assert r["grad_norm_after_clip"] == pytest.approx(clip, rel=1e-3)
