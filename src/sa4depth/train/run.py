"""Builds the Lightning Trainer for a config and runs training, resuming from ``last.ckpt`` on request.

Checkpoints and the saved config are written atomically and by global rank 0 only, so a kill or a
multi-process run never leaves a half-written or duplicated file.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sa4depth.config import Config, config_from_dict, config_to_dict
from sa4depth.data.datamodule import DepthDataModule
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError
from sa4depth.train.system import DepthPoseSystem

logger = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file in the same folder, then rename: a kill never corrupts a checkpoint.

    The data is flushed to disk before the rename, so even a machine crash leaves the old or the new file.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique name opened with "x" (not mkstemp) so the file gets the usual umask permissions.
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "xb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class LastCheckpoint(Callback):
    """Keeps ``last.ckpt`` current: every ``every_n_steps`` optimizer steps, at each epoch end, at the end.

    When a periodic save falls on the last batch of an epoch it waits for the epoch end (after
    validation), so the file holds a finished epoch, the state from which resuming is exact.

    Args:
        path: the checkpoint file.
        every_n_steps: period in optimizer steps; 0 saves only at epoch ends and when training ends.
    """

    def __init__(self, path: str | Path, every_n_steps: int):
        if every_n_steps < 0:
            raise InputError("config", f"trainer.checkpoint_every_n_steps must be >= 0, got {every_n_steps}")
        self.path, self.every_n_steps = Path(path), every_n_steps
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        # Called on every rank (it synchronises); only global rank 0 writes the file.
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero and self.path.parent.is_dir():
            # Temporary files of saves cut short by a kill (SIGKILL leaves no chance to clean up).
            for tmp in self.path.parent.glob(".*.ckpt.*.tmp"):
                logger.info("removing %s, left by an interrupted checkpoint save", tmp)
                tmp.unlink(missing_ok=True)

    def on_train_start(self, trainer, pl_module) -> None:
        # A resumed run starts from the state already in the file (Lightning may replay the epoch end).
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps == 0 or trainer.global_step % self.every_n_steps != 0:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # on_train_epoch_end saves it, after this epoch's validation
        self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``: the checkpoint with the lowest ``val/abs_rel`` so far.

    Validation data without depth ground truth has no such metric; then no ``best.ckpt`` is written
    (instead of Lightning's error for a missing monitored metric) and ``last.ckpt`` is the one to use.
    """

    def __init__(self, dirpath: Path):
        super().__init__(
            dirpath=dirpath,
            filename="best",
            monitor="val/abs_rel",
            mode="min",
            save_top_k=1,
            auto_insert_metric_name=False,
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_validation_end(trainer, pl_module)


class SaveConfig(Callback):
    """Write the resolved config as ``<output_dir>/config.yaml`` (global rank 0, atomically)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero:
            text = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            atomic_write_text(Path(self.cfg.output_dir) / "config.yaml", text)


def checkpoint_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) / "checkpoints"


def build_trainer(
    cfg: Config, extra_callbacks: list | None = None, enable_progress_bar: bool = True
) -> L.Trainer:
    """The Lightning Trainer for ``cfg``: checkpoints (best by ``val/abs_rel``, last), logger, strategy."""
    t = cfg.trainer
    on_cpu = t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available())
    if t.sync_batchnorm and on_cpu:
        raise InputError("config", "trainer.sync_batchnorm needs GPUs (PyTorch has no CPU SyncBatchNorm)")
    callbacks = [
        BestCheckpoint(checkpoint_dir(cfg)),
        LastCheckpoint(checkpoint_dir(cfg) / "last.ckpt", t.checkpoint_every_n_steps),
        SaveConfig(cfg),
        LearningRateMonitor(logging_interval="epoch"),
        *(extra_callbacks or []),
    ]
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
        sync_batchnorm=t.sync_batchnorm,
        accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic,
        precision=t.precision,
        gradient_clip_val=cfg.optim.grad_clip,
        logger=TensorBoardLogger(save_dir=cfg.output_dir, name="tensorboard", version=""),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=enable_progress_bar,
    )


def train(
    cfg: Config,
    resume: bool = False,
    enable_progress_bar: bool = True,
    callbacks: list[Callback] | None = None,
) -> Path:
    """Train with ``cfg``; with ``resume`` continue from ``<output_dir>/checkpoints/last.ckpt``.

    Resuming restores the weights, optimizer and scheduler state, the step and epoch counters, the
    skipped-step count and the random number generators; the config may differ only in what does not
    change the architecture (e.g. ``trainer.max_steps``).

    Args:
        cfg: the full config.
        resume: continue from the last checkpoint; `InputError` if it is missing, corrupt or does not
            fit the architecture in ``cfg``.
        enable_progress_bar: show Lightning's progress bar.
        callbacks: extra Lightning callbacks (e.g. for monitoring).

    Returns:
        The checkpoint folder (``last.ckpt`` and ``best.ckpt``).
    """
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    system = build_system(cfg, "config")
    ckpt_path = None
    if resume:
        last = checkpoint_dir(cfg) / "last.ckpt"
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume from")
        check_fits(system, read_checkpoint(last, mmap=True), last)
        ckpt_path = str(last)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    datamodule = DepthDataModule(cfg.data, seed=cfg.trainer.seed)
    trainer = build_trainer(cfg, extra_callbacks=callbacks, enable_progress_bar=enable_progress_bar)
    trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
    return checkpoint_dir(cfg)


def build_system(cfg: Config, source: str | Path) -> DepthPoseSystem:
    """`DepthPoseSystem` for ``cfg``; a value the networks reject (e.g. an unknown encoder) is an
    `InputError` naming ``source`` (the config or checkpoint it came from)."""
    try:
        return DepthPoseSystem(cfg)
    except ValueError as e:
        raise InputError(source, str(e).splitlines()[0]) from None


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Read a training checkpoint's dict; a missing, corrupt or foreign file raises `InputError`.

    Only tensors and plain containers are unpickled (``weights_only``), so a crafted file cannot run code.

    Args:
        path: the ``.ckpt`` file.
        mmap: map tensor storages instead of reading them (cheap when only the structure is needed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise InputError(
            path, f"cannot read checkpoint ({e.__class__.__name__}); file corrupt or not a checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("sa4depth_config"), dict):
        raise InputError(path, "not an sa4depth training checkpoint (no sa4depth_config)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(path, "not an sa4depth training checkpoint (no state_dict)")
    return ckpt


def check_fits(system: DepthPoseSystem, ckpt: dict, path: str | Path) -> None:
    """Raise `InputError` unless the checkpoint's weights have exactly the names and shapes of ``system``."""
    expected = {k: tuple(v.shape) for k, v in system.state_dict().items()}
    state = ckpt["state_dict"]
    found = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or unexpected or wrong:
        saved = ckpt["sa4depth_config"].get("model")
        saved = saved if isinstance(saved, dict) else {}
        detail = (
            f"missing {missing[0]!r}"
            if missing
            else f"unexpected {unexpected[0]!r}"
            if unexpected
            else f"{wrong[0]!r} is {found[wrong[0]]}, expected {expected[wrong[0]]}"
        )
        raise InputError(
            path,
            f"weights do not fit the configured architecture (checkpoint model.encoder="
            f"{saved.get('encoder', '?')!r}, config {system.cfg.model.encoder!r}; "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped, e.g. {detail})",
        )


def load_checkpoint(path: str | Path) -> tuple[DepthPoseSystem, Config]:
    """Load a training checkpoint; a missing, corrupt or incompatible file raises `InputError`.

    Returns:
        The system in eval mode and the config it was trained with.
    """
    ckpt = read_checkpoint(path)
    try:
        cfg = config_from_dict(ckpt["sa4depth_config"])
    except InputError as e:
        raise InputError(path, f"checkpoint config: {e.problem}") from None
    system = build_system(cfg, path)
    check_fits(system, ckpt, path)
    system.load_state_dict(ckpt["state_dict"])
    system.eval()
    return system, cfg
