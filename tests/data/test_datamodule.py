"""The data module's batching: what `collate` makes of the samples every dataset returns."""

import torch

from sa4depth.data.datamodule import collate
from sa4depth.data.folder import FolderDataset
from sa4depth.data.toy import toy_world


def test_collate_stacks_tensors_and_keeps_flags_indices_and_names(tmp_path):
    """Tensors gain a batch axis, bools and ints become ``(B,)`` tensors, strings stay a list."""
    dataset = FolderDataset(toy_world(tmp_path / "world", frames=6), "train", 64, 64)
    samples = [dataset[0], dataset[1]]
    batch = collate(samples)
    assert set(batch) == set(samples[0])
    assert batch["images"].shape == (2, *samples[0]["images"].shape)
    assert torch.equal(batch["images"][1], samples[1]["images"])
    assert torch.equal(batch["K"], torch.stack([samples[0]["K"], samples[1]["K"]]))
    assert batch["has_depth"].dtype == torch.bool
    assert batch["has_depth"].tolist() == [s["has_depth"] for s in samples]
    assert batch["frame"].dtype == torch.int64
    assert batch["frame"].tolist() == [s["frame"] for s in samples]
    assert batch["sequence"] == [s["sequence"] for s in samples]
