"""The Lightning module: optimisation, guards against non-finite steps, validation metrics, checkpoint state.

It stays thin: the forward pass lives in `sa4depth.train.model`, the metrics in `sa4depth.eval`.
Every decision to skip a step is taken jointly by all processes, so multi-process (DDP) runs stay in step.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import RandomSampler

from sa4depth.config import Config, config_to_dict
from sa4depth.errors import InputError
from sa4depth.eval.depth_metrics import DepthMetricAccumulator, compute_depth_metrics
from sa4depth.eval.protocols import get_protocol
from sa4depth.train.model import DepthPoseModel

logger = logging.getLogger(__name__)


def batch_is_finite(batch: dict) -> bool:
    """True when the images (``images*``) and intrinsics ``K`` of a batch hold no NaN or Inf."""
    return all(
        bool(torch.isfinite(v).all())
        for k, v in batch.items()
        if (k.startswith("images") or k == "K") and isinstance(v, torch.Tensor)
    )


def rng_state() -> dict:
    """The global random generators (Python, NumPy, torch CPU and CUDA) as checkpoint-safe values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned (the CUDA part only with the same number of GPUs)."""
    random.setstate(state["python"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor at optimizer step ``step``: linear warm-up to 1, then cosine decay to 0.

    Example:
        >>> [round(warmup_cosine(s, 10, 110), 3) for s in (0, 5, 10, 60, 110)]
        [0.1, 0.6, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 of all parameter bytes, in registration order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


#: Lightning's full-precision values, under which Adam runs fused (see `configure_optimizers`).
FULL_PRECISION = ("32-true", "32", "64-true", "64")


class DepthPoseSystem(L.LightningModule):
    """Trains a `DepthPoseModel` with Adam and a step schedule; validates depth against ground truth.

    A step whose input images, loss or gradients are not finite changes nothing (weights, optimizer
    moments, batch-norm statistics) and is counted in ``skipped_steps`` (saved in checkpoints).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.model = DepthPoseModel(cfg)
        self.skipped_steps = 0
        self._buffers_before_step: list[torch.Tensor] | None = None
        self._drop_reason: str | None = None  # why the current optimizer step will be dropped
        # Per validation image: (sequence, frame, metrics, pose/depth scale ratio or None).
        self._val_records: list[tuple[str, int, dict, float | None]] = []
        self._intrinsics: dict | None = None  # the training camera, stored in checkpoints for `predict`

    # ---- distributed helpers -------------------------------------------------------------------------

    def _world_size(self) -> int:
        return self._trainer.world_size if self._trainer is not None else 1

    def _all_ranks(self, ok: bool) -> bool:
        """True only if ``ok`` holds on every process: all skip together or none does (else DDP hangs)."""
        if self._world_size() == 1:
            return ok
        return self.trainer.strategy.reduce_boolean_decision(ok, all=True)

    def _gather_objects(self, obj) -> list:
        if self._world_size() == 1 or not (dist.is_available() and dist.is_initialized()):
            return [obj]
        out = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    # ---- training ------------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int):
        if not self._all_ranks(batch_is_finite(batch)):
            return self._drop_step("non-finite values in the input images or K", batch)
        # Batch-norm statistics move in the forward pass: keep them (a few thousand numbers) to undo a
        # step whose loss or gradients turn out non-finite.
        if self._buffers_before_step is None:
            self._buffers_before_step = [b.clone() for b in self.model.buffers()]
        loss, logs = self.model.training_forward(batch, step=self.global_step)
        if not self._all_ranks(bool(torch.isfinite(loss))):
            self._restore_buffers()
            return self._drop_step("non-finite loss", batch)
        bs = batch["images"].shape[0]
        self.log_dict({f"train/{k}": v.float() for k, v in logs.items()}, batch_size=bs, sync_dist=False)
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=bs)
        return loss

    def _drop_step(self, reason: str, batch: dict) -> torch.Tensor:
        """Mark this optimizer step to be dropped and return a zero loss that reaches every weight.

        Not None: Lightning refuses a skipped `training_step` in distributed runs, and every DDP process
        must run the same backward. The zero gradients are then discarded in `on_before_optimizer_step`.
        """
        frame = batch.get("frame", torch.tensor([-1]))
        logger.warning(
            "step %d skipped: %s on this or another process (batch starting at sequence %s frame %d)",
            self.global_step,
            reason,
            batch.get("sequence", ["?"])[0],
            int(frame[0]),
        )
        self._drop_reason = self._drop_reason or reason
        return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0

    def on_before_optimizer_step(self, optimizer) -> None:
        """Drop the update of a marked step or of NaN/Inf gradients (before clipping spreads the NaN).

        Gradients become None, so Adam leaves the weights and its moments untouched, and the batch-norm
        statistics return to their values before the step. With fp16 mixed precision the GradScaler
        already skips steps with non-finite gradients and lowers its scale, so that is left to it.
        """
        reason = self._drop_reason
        if reason is None and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            finite = not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
            if not self._all_ranks(finite):
                reason = "non-finite gradients"
                logger.warning("step %d skipped: %s on this or another process", self.global_step, reason)
        if reason is not None:
            optimizer.zero_grad(set_to_none=True)
            self._restore_buffers()
            self.skipped_steps += 1
        self._drop_reason, self._buffers_before_step = None, None

    def _restore_buffers(self) -> None:
        if self._buffers_before_step is not None:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), self._buffers_before_step, strict=True):
                    b.copy_(saved)

    def parameter_groups(self) -> list[dict]:
        """Adam's parameter groups: the pose net at ``optim.pose_lr_scale`` x ``optim.lr``, the rest at it.

        One group when the scale is 1, so that checkpoints written before the option existed resume.
        """
        o = self.cfg.optim
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        if o.pose_lr_scale == 1.0:
            return [{"params": trainable, "lr": o.lr}]
        pose = {id(p) for p in self.model.pose_net.parameters()}
        groups = [
            {"params": [p for p in trainable if id(p) not in pose], "lr": o.lr},
            {"params": [p for p in trainable if id(p) in pose], "lr": o.lr * o.pose_lr_scale},
        ]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self):
        o = self.cfg.optim
        # Fused Adam updates every parameter in one kernel instead of a Python loop over ~350 tensors (part
        # of the step-time gain in benchmarks/results/layout_speed.json).
        # Only in full precision: under mixed precision Lightning refuses gradient clipping with an
        # optimizer that could unscale its own gradients, as the fused one does.
        fused = str(self.cfg.trainer.precision) in FULL_PRECISION
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=o.lr, fused=fused)
        if o.schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        if o.schedule != "cosine":
            raise InputError("config", f"optim.schedule must be 'step' or 'cosine', got {o.schedule!r}")
        total = self.cfg.trainer.max_steps
        if total <= 0:
            raise InputError("config", "optim.schedule=cosine needs trainer.max_steps > 0")
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, o.warmup_steps, total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # Lightning 2.x never calls train() when fitting starts (it keeps each module's mode as built, and
        # validation restores the modes it found), so `DepthPoseModel.train`'s frozen batch norm is applied
        # here; validation then keeps it.
        self.model.train()
        # Also here: a run resumed mid-epoch starts without on_train_epoch_start.
        self._set_train_epoch()
        datamodule = self.trainer.datamodule
        K = datamodule.intrinsics() if hasattr(datamodule, "intrinsics") else None
        if K is not None:
            self._intrinsics = {"K": K.tolist(), "width": self.cfg.data.width, "height": self.cfg.data.height}

    def on_train_epoch_start(self) -> None:
        self._set_train_epoch()

    def _set_train_epoch(self) -> None:
        """Make epoch ``e``'s sample order and augmentation functions of (seed, e) alone.

        A plain shuffling loader draws its order from the global RNG, whose state at an epoch start
        depends on what ran before (validation, a resume); seeding its sampler with ``seed + e``, as
        `torch.utils.data.DistributedSampler` does, makes a resumed run see the same batches as an
        uninterrupted one, and a single process the same global batches as a DDP run.
        """
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, RandomSampler):
            sampler.generator = torch.Generator().manual_seed(self.cfg.trainer.seed + self.current_epoch)
        dataset = getattr(loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    # ---- validation ----------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._val_records = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        target = batch["images"][:, 0]
        depth = self.model.depth_net.predict_depth(target)
        protocol = get_protocol(self.cfg.eval_protocol)
        t_pred = None
        if (batch["has_pose"] & batch["has_depth"]).any():
            t_pred = self.model.predict_poses(batch["images"])[-1].t.norm(dim=-1)
            t_gt = batch["T_src_tgt"][:, -1, :3, 3].norm(dim=-1)
        for i in torch.nonzero(batch["has_depth"]).flatten().tolist():
            metrics = compute_depth_metrics(depth[i, 0], batch["depth"][i, 0], protocol)
            ratio = None
            if t_pred is not None and batch["has_pose"][i] and metrics["n_valid"] > 0:
                ratio = float(t_gt[i] / t_pred[i].clamp(min=1e-8)) / metrics["scale"]
            self._val_records.append((batch["sequence"][i], int(batch["frame"][i]), metrics, ratio))
        if batch_idx == 0 and isinstance(self.logger, L.pytorch.loggers.TensorBoardLogger):
            disp = 1.0 / depth[:4]
            disp = disp / disp.amax(dim=(1, 2, 3), keepdim=True)
            self.logger.experiment.add_images("val/disparity", disp, self.global_step)
            self.logger.experiment.add_images("val/image", target[:4], self.global_step)

    def on_validation_epoch_end(self) -> None:
        """Metrics over the images of all processes, each image once.

        The distributed sampler pads the split by repeating images so that every process gets the same
        number; gathering the per-image records and keying them by (sequence, frame) removes the repeats,
        so the numbers equal a single-process evaluation.
        """
        records = {}
        for part in self._gather_objects(self._val_records):
            records.update({(seq, frame): (metrics, ratio) for seq, frame, metrics, ratio in part})
        if not records:
            return
        acc = DepthMetricAccumulator(get_protocol(self.cfg.eval_protocol))
        ratios = []
        for key in sorted(records):
            metrics, ratio = records[key]
            if metrics["n_valid"] == 0:
                acc.n_skipped += 1
                continue
            acc.per_image.append(metrics)
            if ratio is not None:
                ratios.append(ratio)
        if not acc.per_image:
            return
        values = {f"val/{k}": float(v) for k, v in acc.compute().items() if isinstance(v, int | float)}
        if ratios:
            values["val/pose_depth_scale_ratio"] = float(np.mean(ratios))
        # Identical on every process after the gather; sync_dist keeps Lightning's epoch-level reduction
        # consistent (the mean of equal numbers is that number).
        self.log_dict(values, sync_dist=True)

    # ---- checkpoints ---------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add the config, skip count and RNG state; in DDP, check that all replicas hold the same weights.

        Lightning calls this on every process before global rank 0 writes the file, so the per-rank
        parameter digests can be gathered here; they are stored as ``sa4depth_replica_digests``.
        """
        checkpoint["sa4depth_config"] = config_to_dict(self.cfg)
        checkpoint["sa4depth_skipped_steps"] = self.skipped_steps
        checkpoint["sa4depth_rng"] = rng_state()
        if self._intrinsics is not None:
            checkpoint["sa4depth_intrinsics"] = self._intrinsics
        if self._world_size() > 1:
            digests = self._gather_objects(parameter_digest(self.model))
            checkpoint["sa4depth_replica_digests"] = digests
            if len(set(digests)) > 1:
                logger.error("DDP replicas hold different weights at step %d: %s", self.global_step, digests)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = checkpoint.get("sa4depth_skipped_steps", 0)
        if "sa4depth_rng" in checkpoint:
            set_rng_state(checkpoint["sa4depth_rng"])
