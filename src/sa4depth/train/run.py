"""Builds the Lightning Trainer for a config and runs training, resuming from ``last.ckpt`` on request.

Checkpoints are written atomically; the resolved config is saved beside them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sa4depth.config import Config, config_from_dict, config_to_dict
from sa4depth.data.datamodule import DepthDataModule
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError
from sa4depth.train.system import DepthPoseSystem

logger = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file in the same folder, then rename: a kill never corrupts a checkpoint."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def checkpoint_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) / "checkpoints"


def build_trainer(
    cfg: Config, extra_callbacks: list | None = None, enable_progress_bar: bool = True
) -> L.Trainer:
    t = cfg.trainer
    monitor = ModelCheckpoint(
        dirpath=checkpoint_dir(cfg),
        filename="best",
        monitor="val/abs_rel",
        mode="min",
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    callbacks = [monitor, LearningRateMonitor(logging_interval="epoch"), *(extra_callbacks or [])]
    return L.Trainer(
        default_root_dir=cfg.output_dir,
        max_steps=t.max_steps,
        max_epochs=t.max_epochs if t.max_steps < 0 else -1,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=1 if t.val_check_interval is None or t.val_check_interval <= 1 else None,
        log_every_n_steps=t.log_every_n_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        deterministic=t.deterministic,
        precision=t.precision,
        gradient_clip_val=cfg.optim.grad_clip,
        logger=TensorBoardLogger(save_dir=cfg.output_dir, name="tensorboard", version=""),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=enable_progress_bar,
    )


def train(cfg: Config, resume: bool = False, enable_progress_bar: bool = True) -> Path:
    """Train with ``cfg``; with ``resume`` continue from ``<output_dir>/checkpoints/last.ckpt``.

    Returns:
        The checkpoint folder (``last.ckpt`` and ``best.ckpt``).
    """
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    out = Path(cfg.output_dir)
    ckpt_path = None
    if resume:
        last = checkpoint_dir(cfg) / "last.ckpt"
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume from")
        ckpt_path = str(last)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    datamodule = DepthDataModule(cfg.data, seed=cfg.trainer.seed)
    system = DepthPoseSystem(cfg)
    trainer = build_trainer(cfg, enable_progress_bar=enable_progress_bar)
    trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
    return checkpoint_dir(cfg)


def load_checkpoint(path: str | Path) -> tuple[DepthPoseSystem, Config]:
    """Load a training checkpoint; a missing, corrupt or incompatible file raises `InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise InputError(
            path, f"cannot read checkpoint ({e.__class__.__name__}); file corrupt or not a checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or "sa4depth_config" not in ckpt or "state_dict" not in ckpt:
        raise InputError(path, "not an sa4depth training checkpoint (no sa4depth_config/state_dict)")
    cfg = config_from_dict(ckpt["sa4depth_config"])
    system = DepthPoseSystem(cfg)
    try:
        system.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise InputError(path, f"weights do not fit the architecture in its config: {first[:150]}") from None
    system.eval()
    return system, cfg
