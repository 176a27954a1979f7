"""The base of every snippet dataset: the shared constructor arguments, epochs and seeded augmentation.

Dataset modules subclass `SnippetDataset` and only say how to find and read their frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sa4depth.data.transforms import augment


def train_generator(seed: int, epoch: int, idx: int) -> torch.Generator:
    """The augmentation RNG of one sample, reproducible from (seed, epoch, index) in any worker."""
    return torch.Generator().manual_seed(hash((seed, epoch, idx)) % (2**31))


class SnippetDataset(Dataset):
    """Target frames with their sources at ``offsets``, resized to ``height x width`` (see `sa4depth.data`).

    Args:
        root: dataset root folder.
        split: split name or split file (each dataset documents which).
        height, width: network resolution; frames and K are resized to it.
        offsets: source frame offsets relative to the target.
        train: apply augmentation (flip, colour jitter) in `finish`.
        seed: base seed of the augmentation RNG (combined with the epoch and the index).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | os.PathLike,
        height: int,
        width: int,
        offsets: tuple[int, ...] = (-1, 1),
        train: bool = False,
        seed: int = 0,
    ):
        self.root = Path(root)
        self.height, self.width, self.offsets = height, width, tuple(offsets)
        self.train, self.seed, self.epoch = train, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer each epoch so that augmentation differs between epochs."""
        self.epoch = epoch

    def finish(self, sample: dict, idx: int) -> dict:
        """Augment a training sample (deterministically from seed, epoch and index); others pass through."""
        if self.train:
            return augment(sample, train_generator(self.seed, self.epoch, idx))
        return sample
