"""The Lightning module: optimisation, NaN guards, validation metrics and checkpoint metadata.

It stays thin: the forward pass lives in `sa4depth.train.model`, the metrics in `sa4depth.eval`.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from sa4depth.config import Config, config_to_dict
from sa4depth.eval.depth_metrics import DepthMetricAccumulator
from sa4depth.eval.protocols import get_protocol
from sa4depth.train.model import DepthPoseModel

logger = logging.getLogger(__name__)


def batch_is_finite(batch: dict) -> bool:
    return all(torch.isfinite(v).all() for k, v in batch.items() if k.startswith("images"))


class DepthPoseSystem(L.LightningModule):
    """Trains a `DepthPoseModel` with Adam and a step schedule; validates depth against ground truth."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.model = DepthPoseModel(cfg)
        self.skipped_steps = 0
        self._val_metrics = None
        self._val_scale_ratios: list[torch.Tensor] = []

    def training_step(self, batch: dict, batch_idx: int):
        if not batch_is_finite(batch):
            return self._skip("non-finite values in the input images", batch)
        loss, logs = self.model.training_forward(batch, step=self.global_step)
        if not torch.isfinite(loss):
            return self._skip("non-finite loss", batch)
        bs = batch["images"].shape[0]
        self.log_dict({f"train/{k}": v.float() for k, v in logs.items()}, batch_size=bs, sync_dist=False)
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=bs)
        return loss

    def _skip(self, reason: str, batch: dict):
        """Skip the optimiser step (returning None does that in Lightning) and count it."""
        self.skipped_steps += 1
        logger.warning(
            "step %d skipped: %s (sequence %s frame %s)",
            self.global_step,
            reason,
            batch.get("sequence", ["?"])[0],
            batch.get("frame", torch.tensor([-1]))[0].item(),
        )
        return None

    def on_validation_epoch_start(self) -> None:
        self._val_metrics = DepthMetricAccumulator(get_protocol(self.cfg.eval_protocol))
        self._val_scale_ratios = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        target = batch["images"][:, 0]
        depth = self.model.depth_net.predict_depth(target)
        has_depth = batch["has_depth"]
        scales = []
        for i in torch.nonzero(has_depth).flatten().tolist():
            metrics = self._val_metrics.update(depth[i, 0], batch["depth"][i, 0])
            scales.append(metrics["scale"])
        if batch["has_pose"].any() and scales:
            poses = self.model.predict_poses(batch["images"])
            t_pred = poses[-1].t.norm(dim=-1)
            t_gt = batch["T_src_tgt"][:, -1, :3, 3].norm(dim=-1)
            keep = (batch["has_pose"] & has_depth).nonzero().flatten()
            ratio = (t_gt[keep] / t_pred[keep].clamp(min=1e-8)) / torch.as_tensor(scales, device=t_gt.device)
            self._val_scale_ratios.append(ratio)
        if batch_idx == 0 and isinstance(self.logger, L.pytorch.loggers.TensorBoardLogger):
            disp = 1.0 / depth[:4]
            disp = disp / disp.amax(dim=(1, 2, 3), keepdim=True)
            self.logger.experiment.add_images("val/disparity", disp, self.global_step)
            self.logger.experiment.add_images("val/image", target[:4], self.global_step)

    def on_validation_epoch_end(self) -> None:
        if self._val_metrics is None or not self._val_metrics.per_image:
            return
        summary = self._val_metrics.compute()
        values = {f"val/{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)}
        if self._val_scale_ratios:
            ratios = torch.cat(self._val_scale_ratios)
            values["val/pose_depth_scale_ratio"] = float(ratios.mean())
        self.log_dict(values, sync_dist=True)

    def configure_optimizers(self):
        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=o.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sa4depth_config"] = config_to_dict(self.cfg)
        checkpoint["sa4depth_skipped_steps"] = self.skipped_steps

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = checkpoint.get("sa4depth_skipped_steps", 0)
