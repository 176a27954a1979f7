"""Builds the Lightning Trainer for a config and runs training, resuming from ``last.ckpt`` on request.

Checkpoints and the saved config are written atomically and by global rank 0 only, so a kill, a Ctrl-C or
a multi-process run never leaves a half-written or duplicated file, and a new run never mixes with an old.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import (
    Callback,
    Checkpoint,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.model_summary import ModelSummary

from sa4depth.config import Config, config_from_dict, config_to_dict
from sa4depth.data.datamodule import DepthDataModule
from sa4depth.data.layout import atomic_write_text
from sa4depth.errors import InputError
from sa4depth.inference import read_entries
from sa4depth.train.system import DepthPoseSystem

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C ended training; the message says which checkpoint holds the run and how to continue it.

    A `KeyboardInterrupt`, so that callers without their own handling treat it as the Ctrl-C it is.
    """


class _StopRequested(Exception):
    """Raised inside ``Trainer.fit`` to end it after a Ctrl-C; `train` turns it into `TrainingInterrupted`.

    Not a `KeyboardInterrupt`: Lightning answers those with ``sys.exit(1)``, this one it re-raises.
    """


class Interrupts:
    """SIGINT (Ctrl-C) during training: the first asks to stop at the next step boundary, the second now.

    The first Ctrl-C only sets `requested`, so no exception can cut a training step or a checkpoint
    write in half; `LastCheckpoint` then saves ``last.ckpt`` at the end of the step and stops. A second
    Ctrl-C stops at once (``last.ckpt`` stays as last saved), except during a checkpoint write, which
    always completes first: an exception inside ``torch.save`` leaves its zip writer half-done, which
    printed ``RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos``.
    """

    def __init__(self):
        self.requested = 0
        self._saving = False
        self._abort_after_save = False

    def _handle(self, signum, frame) -> None:
        self.requested += 1
        if self.requested == 1:
            # os.write, not print: the handler may run inside a print of the progress bar (reentrant).
            os.write(
                2, b"\ninterrupt: stopping after this step with a resumable checkpoint (Ctrl-C again: now)\n"
            )
        elif self._saving:
            self._abort_after_save = True
        else:
            raise _StopRequested

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT within the block (in the main thread only: Python's rule for signal handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def saving(self):
        """A checkpoint write: a second Ctrl-C within it takes effect once the file is complete."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._abort_after_save:
            raise _StopRequested


def _temp_beside(path: Path) -> Path:
    """A unique temporary name beside ``path``, of the form `LastCheckpoint.setup` cleans up after a kill."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to a temporary file in the same folder, then rename: a kill never corrupts a checkpoint.

    The data is flushed to disk before the rename, so even a machine crash leaves the old or the new file.

    Args:
        interrupts: the run's `Interrupts`, whose Ctrl-C waits for a write to finish; None for no guard.
    """

    def __init__(self, interrupts: Interrupts | None = None):
        super().__init__()
        self.interrupts = interrupts

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique name opened with "x" (not mkstemp) so the file gets the usual umask permissions.
        tmp = _temp_beside(path)
        guard = self.interrupts.saving() if self.interrupts is not None else contextlib.nullcontext()
        with guard:
            try:
                with open(tmp, "xb") as f:
                    torch.save(checkpoint, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()


class LastCheckpoint(Checkpoint):
    """Keeps ``last.ckpt`` current: every ``every_n_steps`` steps, at epoch ends, at the end and on Ctrl-C.

    The saves at ``keep_steps`` are also kept as ``step_<n>.ckpt``, for runs that fork from this one.

    After a Ctrl-C it saves at the step boundary, then training stops.

    When a save falls on the last batch of an epoch it waits for the epoch end (after validation), so the
    file holds a finished epoch, the state from which resuming is exact. A `Checkpoint` subclass, so that
    Lightning runs it after `BestCheckpoint` (it moves checkpoint callbacks last, in their order): the
    file then carries the best score of the validation just done, and a resumed run compares against it.

    Not Lightning's ``ModelCheckpoint(save_last=True, every_n_train_steps=n)`` (2.6): its step and epoch
    triggers are mutually exclusive and with ``save_top_k=0`` it writes ``last.ckpt`` at no epoch end; a
    step save on an epoch's last batch happens before that epoch's validation (an inexact resume point);
    and it cannot stop at a step boundary on Ctrl-C.

    Args:
        path: the checkpoint file.
        every_n_steps: period in optimizer steps; 0 saves only at epoch ends and when training ends.
        interrupts: the run's `Interrupts`; None if Ctrl-C is not handled.
        keep_steps: steps whose save is also kept, as ``step_<n>.ckpt`` beside ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        every_n_steps: int,
        interrupts: Interrupts | None = None,
        keep_steps: tuple[int, ...] = (),
    ):
        if every_n_steps < 0:
            raise InputError("config", f"trainer.checkpoint_every_n_steps must be >= 0, got {every_n_steps}")
        self.path, self.every_n_steps, self.interrupts = Path(path), every_n_steps, interrupts
        self.keep_steps = frozenset(keep_steps)
        self._saved_step = -1
        self._batch_counted = False  # True only during this callback's own saves after the count

    def _save(self, trainer: L.Trainer, batch_counted: bool = True) -> None:
        """Save, after (``batch_counted``) or before Lightning has counted the last batch for its loggers."""
        if trainer.sanity_checking or trainer.global_step == self._saved_step:
            return
        self._batch_counted = batch_counted
        try:
            # Called on every rank (it synchronises); only global rank 0 writes the file.
            trainer.save_checkpoint(self.path, weights_only=False)
        finally:
            self._batch_counted = False
        self._saved_step = trainer.global_step
        if trainer.global_step in self.keep_steps and trainer.is_global_zero:
            kept = kept_checkpoint(self.path.parent.parent, trainer.global_step)
            tmp = _temp_beside(kept)
            shutil.copyfile(self.path, tmp)
            os.replace(tmp, kept)

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        # Every rank calls this at the same points, so all of them stop at the same step.
        asked = self.interrupts is not None and self.interrupts.requested > 0
        return bool(trainer.strategy.reduce_boolean_decision(asked, all=False))

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero and self.path.parent.is_dir():
            # Temporary files of saves cut short by a kill (SIGKILL leaves no chance to clean up).
            for tmp in self.path.parent.glob(".*.ckpt.*.tmp"):
                logger.info("removing %s, left by an interrupted checkpoint save", tmp)
                tmp.unlink(missing_ok=True)

    def on_train_start(self, trainer, pl_module) -> None:
        # A resumed run starts from the state already in the file (Lightning may replay the epoch end).
        self._saved_step = trainer.global_step
        if self.interrupts is not None and self.interrupts.requested:
            raise _StopRequested  # Ctrl-C during the set-up: nothing new to save

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Lightning (2.6) adds one to its logger-step counter on every restore, as if each save happened
        # in on_train_batch_end, before the batch is counted. Saves after the count (epoch end, training
        # end) store one less, or a resumed run logs every later point one step too high (3, 4, 5 become
        # 4, 5, 6).
        if self._batch_counted:
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self._stop_requested(trainer)
        step = trainer.global_step
        periodic = (self.every_n_steps > 0 and step % self.every_n_steps == 0) or step in self.keep_steps
        if not (stop or periodic) or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # on_train_epoch_end saves the last batch's state, after this epoch's validation
        self._save(trainer, batch_counted=False)
        if stop:
            raise _StopRequested

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)
        if self._stop_requested(trainer):
            raise _StopRequested

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)


class BestCheckpoint(ModelCheckpoint):
    """``best.ckpt``: the checkpoint with the lowest ``val/abs_rel`` so far, also across resumes.

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
            # Lightning's counter names a new best "best-v1.ckpt" when best.ckpt exists but is not in the
            # callback's own list (after a resume from a file saved before it was), leaving best.ckpt old.
            enable_version_counter=False,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        best = Path(self.dirpath) / "best.ckpt"
        if self.best_model_score is None and best.is_file() and trainer.global_step > 0:
            self._adopt(best)

    def _adopt(self, best: Path) -> None:
        """Take over the score of a ``best.ckpt`` the resumed state does not list.

        A ``last.ckpt`` written before `LastCheckpoint` ran after this callback lacks the score; without
        it the resumed run's first validation, however bad, would replace ``best.ckpt``.
        """
        try:
            ckpt = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
            score = ckpt["callbacks"][self.state_key]["best_model_score"]
        except Exception as e:  # torch raises many types for a damaged file; or not one of ours
            logger.warning("%s: no best score in it (%s); the next validation replaces it", best, e)
            return
        if isinstance(score, torch.Tensor):
            self.best_k_models = {str(best): score}
            self.best_model_path = self.kth_best_model_path = str(best)
            self.best_model_score = self.kth_value = score

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_validation_end(trainer, pl_module)


class StepProgress(ProgressBar):
    """Training progress by optimizer step: ``step 120/600 (20%) | 2.10 it/s | ETA 0:03:48 | loss 0.1234``.

    On a terminal the line is rewritten in place. Elsewhere (a pipe, a log file, where a redrawn bar shows
    nothing until it ends) plain lines are printed: at the first step, every ``every_s`` seconds and at
    the last step, and one per validation with its ``val/abs_rel``. Steps, not epochs: with
    ``trainer.max_steps`` set Lightning's epoch count is -1. Global rank 0 only.

    Args:
        every_s: seconds between plain lines.
        stream: where to write; None for the ``sys.stdout`` of the moment (pytest and the CLI swap it).
        prefix: put before every line, e.g. ``"[monodepth2] "`` when several runs share a screen.
        plain: plain lines even on a terminal (several runs writing to one screen).
    """

    def __init__(self, every_s: float = 30.0, stream=None, prefix: str = "", plain: bool = False):
        super().__init__()
        self.every_s, self._stream, self.prefix, self.plain = every_s, stream, prefix, plain
        self._enabled = True
        self._start: tuple[float, int] | None = None  # (time, global step) when this fit began training
        self._last_step = self._last_line = None
        self._open_line = False  # a terminal line awaiting its newline

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _tty(self) -> bool:
        return not self.plain and self.stream.isatty()

    def _write(self, text: str, tty: bool, final: bool = False) -> None:
        text = self.prefix + text
        if tty:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
            self._open_line = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def _line(self, trainer: L.Trainer) -> str:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        elapsed = time.monotonic() - self._start[0]
        rate = (step - self._start[1]) / elapsed if elapsed > 0 else 0.0
        parts = [
            f"step {step}/{total} ({100 * step / total:.0f}%)" if math.isfinite(total) else f"step {step}"
        ]
        parts.append(f"{rate:.2f} it/s")
        if rate > 0 and math.isfinite(total):
            left = round((total - step) / rate)
            parts.append(f"ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}")
        metrics = trainer.callback_metrics
        for key, name in (("train/loss", "loss"), ("val/abs_rel", "val/abs_rel")):
            if key in metrics:
                parts.append(f"{name} {float(metrics[key]):.4f}")
        return " | ".join(parts)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = (time.monotonic(), trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not (self._enabled and trainer.is_global_zero) or step == self._last_step:
            return  # gradient accumulation: several batches per optimizer step
        self._last_step, now, tty = step, time.monotonic(), self._tty()
        final = step >= trainer.estimated_stepping_batches
        due = self._last_line is None or now - self._last_line >= (0.2 if tty else self.every_s)
        if due or final:
            self._last_line = now
            self._write(self._line(trainer), tty, final)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._enabled or not trainer.is_global_zero or trainer.sanity_checking or self._start is None:
            return
        if "val/abs_rel" in trainer.callback_metrics and not self._tty():
            abs_rel = float(trainer.callback_metrics["val/abs_rel"])
            self._write(f"validation at step {trainer.global_step}: val/abs_rel {abs_rel:.4f}", tty=False)

    def on_train_end(self, trainer, pl_module) -> None:
        self._end_line()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._end_line()  # the error or Ctrl-C message starts on a line of its own


@contextlib.contextmanager
def _quiet_third_party():
    """Keep the screen to what the user needs while training.

    No deprecation notices of the libraries underneath, which the user cannot act on, and no notice of a
    checkpoint folder that `prepare_run_folder` has vetted.
    """
    with warnings.catch_warnings():
        libraries = r"(lightning|lightning_fabric|pytorch_lightning|torch|torchvision|tensorboard)(\.|$)"
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=libraries)
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        yield


class SaveConfig(Callback):
    """Write the resolved config as ``<output_dir>/config.yaml`` (global rank 0, atomically)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero:
            text = yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False)
            atomic_write_text(Path(self.cfg.output_dir) / "config.yaml", text)


def checkpoint_dir(cfg: Config) -> Path:
    """Where a run keeps ``last.ckpt`` and ``best.ckpt``: ``<output_dir>/checkpoints``."""
    return Path(cfg.output_dir) / "checkpoints"


def kept_checkpoint(output_dir: str | os.PathLike, step: int) -> Path:
    """Where a run keeps the checkpoint of ``step`` (``trainer.keep_checkpoint_steps``).

    Example:
        >>> kept_checkpoint("runs/a", 1500).as_posix()
        'runs/a/checkpoints/step_1500.ckpt'
    """
    return Path(output_dir) / "checkpoints" / f"step_{step}.ckpt"


FORK_RECORD = "forked_from.json"
"""Written into the ``output_dir`` of a run forked from another (`sa4depth.train.fork`): where it started."""

RUN_ENTRIES = ("checkpoints", "tensorboard", "config.yaml", FORK_RECORD)
"""What a training run writes into ``output_dir`` (and ``overwrite`` deletes)."""


def _started_by_user() -> bool:
    """False in the processes Lightning (or torchrun, SLURM) starts for the other ranks of a run.

    They re-run the command after rank 0 has begun writing, and must neither refuse nor delete.
    """
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
    return all(os.environ.get(name, "0") == "0" for name in ranks)


def _describe_run(out: Path, found: list[str]) -> str:
    """``found`` entries of a run folder, with the step of its ``last.ckpt`` when readable."""
    parts = []
    for name in found:
        checkpoints = sorted((out / name).glob("*.ckpt")) if name == "checkpoints" else []
        if not checkpoints:
            parts.append(name + ("/" if (out / name).is_dir() else ""))
        for ckpt in checkpoints:
            # A damaged or foreign file has no step, but is still something the user may want to keep.
            step = saved_step(ckpt)
            parts.append(f"{name}/{ckpt.name}" + (f" at step {step}" if step is not None else ""))
    return ", ".join(parts)


def prepare_run_folder(cfg: Config, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds one, unless ``overwrite`` (then delete it first).

    A new run beside an old one would replace its ``last.ckpt``, keep its ``best.ckpt`` and mix the logs.

    Raises:
        InputError: ``output_dir`` is a file, holds a run (without ``resume``/``overwrite``), or both
            ``resume`` and ``overwrite`` are asked for.
    """
    out = Path(cfg.output_dir)
    if resume and overwrite:
        raise InputError(
            "--resume/--overwrite", "give one: --resume continues the run, --overwrite replaces it"
        )
    if out.exists() and not out.is_dir():
        raise InputError(out, "output_dir is a file, not a folder")
    if resume or not _started_by_user():
        return
    found = [
        n for n in RUN_ENTRIES if (out / n).is_file() or ((out / n).is_dir() and any((out / n).iterdir()))
    ]
    if not found:
        return
    if not overwrite:
        raise InputError(
            out,
            f"holds a run ({_describe_run(out, found)}); pass --resume to continue it "
            "or --overwrite to delete it and start again",
        )
    logger.warning("--overwrite: deleting %s in %s", ", ".join(found), out)
    for name in found:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink()


def build_trainer(
    cfg: Config,
    extra_callbacks: list | None = None,
    enable_progress_bar: bool = True,
    interrupts: Interrupts | None = None,
) -> L.Trainer:
    """The Lightning Trainer for ``cfg``: checkpoints, logger, strategy.

    Checkpoints: ``last.ckpt`` (also kept as ``step_<n>.ckpt`` at ``trainer.keep_checkpoint_steps``), and
    ``best.ckpt`` by ``val/abs_rel`` if ``trainer.save_best``.

    Args:
        cfg: the full config.
        extra_callbacks: more Lightning callbacks; a `ProgressBar` among them replaces `StepProgress`.
        enable_progress_bar: show progress (`StepProgress` unless ``extra_callbacks`` bring a bar).
        interrupts: an installed `Interrupts` to stop at a step boundary on Ctrl-C; None to leave
            Ctrl-C to Lightning (which exits without saving).
    """
    t = cfg.trainer
    on_cpu = t.accelerator == "cpu" or (t.accelerator == "auto" and not torch.cuda.is_available())
    if t.sync_batchnorm and on_cpu:
        raise InputError("config", "trainer.sync_batchnorm needs GPUs (PyTorch has no CPU SyncBatchNorm)")
    # trainer.save_best=false: no best.ckpt, so a run keeps one checkpoint instead of two.
    callbacks = [BestCheckpoint(checkpoint_dir(cfg))] if t.save_best else []
    callbacks += [
        LastCheckpoint(
            checkpoint_dir(cfg) / "last.ckpt",
            t.checkpoint_every_n_steps,
            interrupts,
            tuple(t.keep_checkpoint_steps),
        ),
        SaveConfig(cfg),
        LearningRateMonitor(logging_interval="epoch"),
        *(extra_callbacks or []),
    ]
    if enable_progress_bar and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(StepProgress())
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
        plugins=[AtomicCheckpointIO(interrupts)],
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,  # a box of parameter counts; `train` logs it at INFO level (-v)
    )


def train(
    cfg: Config,
    resume: bool = False,
    enable_progress_bar: bool = True,
    callbacks: list[Callback] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train with ``cfg``; with ``resume`` continue from ``<output_dir>/checkpoints/last.ckpt``.

    Resuming restores the weights, optimizer and scheduler state, the step and epoch counters, the
    skipped-step count, the best score so far and the random number generators; the config may differ
    only in what does not change the architecture (e.g. ``trainer.max_steps``).

    Ctrl-C (SIGINT, in the main thread) finishes the step in progress, saves ``last.ckpt`` and raises
    `TrainingInterrupted`; a second Ctrl-C stops at once, keeping the ``last.ckpt`` saved before.

    Args:
        cfg: the full config.
        resume: continue from the last checkpoint; `InputError` if it is missing, corrupt or does not
            fit the architecture in ``cfg``.
        enable_progress_bar: show progress by step (`StepProgress`: plain lines when not on a terminal).
        callbacks: extra Lightning callbacks (e.g. for monitoring).
        overwrite: delete a previous run in ``output_dir`` (`RUN_ENTRIES`) first; without it (or
            ``resume``) a folder holding a run is an `InputError`.

    Returns:
        The checkpoint folder (``last.ckpt``, and ``best.ckpt`` unless ``trainer.save_best`` is false).

    Raises:
        TrainingInterrupted: Ctrl-C; its message names the checkpoint to resume from.
    """
    prepare_run_folder(cfg, resume, overwrite)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    system = build_system(cfg, "config")
    ckpt_path = None
    last = checkpoint_dir(cfg) / "last.ckpt"
    if resume:
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume from")
        check_fits(system, read_checkpoint(last, mmap=True), last)
        ckpt_path = str(last)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    datamodule = DepthDataModule(cfg.data, seed=cfg.trainer.seed)
    interrupts = Interrupts()
    trainer = build_trainer(
        cfg, extra_callbacks=callbacks, enable_progress_bar=enable_progress_bar, interrupts=interrupts
    )
    if logger.isEnabledFor(logging.INFO):
        logger.info("model:\n%s", ModelSummary(system, max_depth=2))
    with interrupts.installed(), _quiet_third_party():
        try:
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
        except _StopRequested:
            raise TrainingInterrupted(_interrupted_message(trainer, last)) from None
    return checkpoint_dir(cfg)


def saved_step(path: str | os.PathLike) -> int | None:
    """The optimizer step a checkpoint holds; None for a missing, damaged or foreign file."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # torch raises many types for a damaged file
        return None


def _interrupted_message(trainer: L.Trainer, last: Path) -> str:
    # The file itself: a save may have completed just before the Ctrl-C that ended the run.
    saved = saved_step(last)
    if saved is None:  # none yet (or unreadable): say so rather than point at it
        return f"interrupted at step {trainer.global_step}, before any checkpoint was saved"
    return f"interrupted at step {trainer.global_step}: {last} holds step {saved}; continue with --resume"


def build_system(cfg: Config, source: str | Path) -> DepthPoseSystem:
    """`DepthPoseSystem` for ``cfg``.

    A value the networks reject (e.g. an unknown encoder) is an `InputError` naming ``source`` (the
    config or checkpoint it came from).
    """
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
    ckpt = read_entries(path, mmap=mmap)
    if not isinstance(ckpt.get("sa4depth_config"), dict):
        raise InputError(path, "not an sa4depth training checkpoint (no sa4depth_config)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(path, "not an sa4depth training checkpoint (no state_dict)")
    return ckpt


def checkpoint_config(ckpt: dict, path: str | Path) -> Config:
    """The config a checkpoint (from `read_checkpoint`) was trained with; a bad one raises `InputError`."""
    try:
        return config_from_dict(ckpt["sa4depth_config"])
    except InputError as e:
        raise InputError(path, f"checkpoint config: {e.problem}") from None


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
    cfg = checkpoint_config(ckpt, path)
    system = build_system(cfg, path)
    check_fits(system, ckpt, path)
    # NaN weights (a diverged run, or a crafted file) would give NaN depth with exit 0 everywhere.
    broken = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()]
    if broken:
        detail = f"{len(broken)} tensors, e.g. {broken[0]!r}"
        raise InputError(path, f"weights hold NaN or Inf ({detail}); did the training diverge?")
    system.load_state_dict(ckpt["state_dict"])
    system.eval()
    return system, cfg
