"""The Lightning data module: picks a dataset class by name from the config and serves its splits.

New datasets register a builder in `DATASETS`; every pipeline then trains on them by config alone.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset, default_collate

from sa4depth.config import DataConfig
from sa4depth.data.folder import FolderDataset
from sa4depth.errors import InputError

logger = logging.getLogger(__name__)

DatasetBuilder = Callable[..., Dataset]

DATASETS: dict[str, DatasetBuilder] = {"folder": FolderDataset}


def register_dataset(name: str, builder: DatasetBuilder) -> None:
    """Make ``data.dataset=name`` build datasets with ``builder`` (called as `build_dataset` does)."""
    DATASETS[name] = builder


def build_dataset(cfg: DataConfig, split: str, train: bool, seed: int = 0) -> Dataset:
    """Build split ``split`` of the dataset named by ``cfg.dataset`` at the configured resolution."""
    _register_builtin_datasets()
    if cfg.dataset not in DATASETS:
        raise InputError("config", f"data.dataset must be one of {sorted(DATASETS)}, got {cfg.dataset!r}")
    if cfg.height % 32 or cfg.width % 32:
        raise InputError(
            "config", f"data.height and data.width must be multiples of 32, got {cfg.height}x{cfg.width}"
        )
    return DATASETS[cfg.dataset](
        root=cfg.root,
        split=split,
        height=cfg.height,
        width=cfg.width,
        offsets=tuple(cfg.offsets),
        train=train,
        seed=seed,
    )


def _register_builtin_datasets() -> None:
    """Import the optional dataset modules, which register themselves (kept lazy for start-up time)."""
    import importlib

    for module in ("kitti_raw", "kitti_odometry", "cityscapes", "nyu"):
        try:
            importlib.import_module(f"sa4depth.data.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"sa4depth.data.{module}":
                raise


def dataset_intrinsics(cfg: DataConfig) -> np.ndarray | None:
    """``3 x 3`` K at the configured resolution from the dataset in ``cfg`` (None if no split loads).

    The first sample of the test, validation or training split gives it (all sequences of a dataset
    are assumed to share one camera). For checkpoints that do not record their camera.
    """
    for split in dict.fromkeys((cfg.test_split, cfg.val_split, cfg.train_split)):
        try:
            dataset = build_dataset(cfg, split, train=False)
            if len(dataset):
                return dataset[0]["K"].double().numpy()
        except (InputError, OSError) as e:
            logger.debug("no intrinsics from split %s: %s", split, e)
    return None


collate = default_collate
"""Batch a list of samples: `torch.utils.data.default_collate`, kept under this name for callers.

Samples hold only tensors, bools, ints and strings (``sequence``), which it turns into stacked
``(B, ...)`` tensors, ``(B,)`` bool and int64 tensors and a list of ``B`` strings: all a batch needs.
"""


class SkippingRandomSampler(RandomSampler):
    """`RandomSampler` whose next pass can start ``skip`` indices in: the rest of an interrupted epoch.

    A `RandomSampler` subclass, so that Lightning still swaps in its `DistributedSampler` under DDP. The
    order itself comes from the ``generator`` (seeded per epoch by the training module).
    """

    skip = 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class ResumableLoader(DataLoader):
    """The training loader: Lightning saves how many batches of the epoch it served and resumes after them.

    Without this Lightning replays an epoch interrupted after ``k`` of its ``n`` batches from its first
    batch and ends it after ``n - k``: the resumed run trains on other batches than an uninterrupted one.
    With a `SkippingRandomSampler` the epoch goes on at batch ``k`` of the same order. Under DDP
    (Lightning's own sampler) the replay stays, with a warning.
    """

    _served = 0  # batches of the current pass handed to the trainer
    _resume_at = 0  # the batch the next pass starts at

    def __iter__(self):
        self._served, self._resume_at = self._resume_at, 0
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"batches_served": self._served}

    def load_state_dict(self, state: dict) -> None:
        served = state.get("batches_served", 0)
        if served == 0 or served >= len(self):
            return  # saved at an epoch start or end: the next epoch starts from its first batch
        if not isinstance(self.sampler, SkippingRandomSampler):
            logger.warning(
                "the training sampler cannot skip the %d batches already trained in this epoch: "
                "the epoch is replayed from its start",
                served,
            )
            return
        self.sampler.skip = served * self.batch_size
        self._resume_at = served


class DepthDataModule(L.LightningDataModule):
    """Train / val / test loaders for one dataset config."""

    def __init__(self, cfg: DataConfig, seed: int = 0):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.train_set = self.val_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = build_dataset(
                self.cfg, self.cfg.train_split, train=self.cfg.augment, seed=self.seed
            )
            if len(self.train_set) < self.cfg.batch_size:
                # The training loader drops the last incomplete batch: no step would ever run.
                raise InputError(
                    self.cfg.root,
                    f"config key 'data.batch_size' is {self.cfg.batch_size}, but split "
                    f"{self.cfg.train_split!r} has only {len(self.train_set)} training samples: "
                    "no full batch to train on; lower data.batch_size or add data",
                )
        if stage in (None, "fit", "validate") and self.val_set is None:
            val = build_dataset(self.cfg, self.cfg.val_split, train=False)
            if 0 < self.cfg.max_val_samples < len(val):
                step = len(val) / self.cfg.max_val_samples
                val = Subset(val, [int(i * step) for i in range(self.cfg.max_val_samples)])
            self.val_set = val
        if stage in (None, "test") and self.test_set is None:
            self.test_set = build_dataset(self.cfg, self.cfg.test_split, train=False)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        """Training: shuffled full batches, resumable mid-epoch; evaluation: every sample in order."""
        common = {
            "batch_size": self.cfg.batch_size,
            "num_workers": self.cfg.num_workers,
            "collate_fn": collate,
            "persistent_workers": self.cfg.num_workers > 0,
        }
        if train:
            return ResumableLoader(dataset, sampler=SkippingRandomSampler(dataset), drop_last=True, **common)
        return DataLoader(dataset, shuffle=False, **common)

    def intrinsics(self) -> np.ndarray | None:
        """The training camera: ``(3, 3)`` K at the training resolution, from the first training sample.

        None before `setup` or for an empty split. Checkpoints record it for `sa4depth predict`.
        """
        if self.train_set is None or len(self.train_set) == 0:
            return None
        return self.train_set[0]["K"].double().numpy()

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
