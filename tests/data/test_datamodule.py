"""The data module's batching: what `collate` makes of the samples every dataset returns."""

import torch

from sa4depth.data.datamodule import ResumableLoader, SkippingRandomSampler, collate
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


def _epoch_loader(seed):
    """The training loader over the samples 0..9, batches of 3, in the order of ``seed`` (one epoch)."""
    samples = list(range(10))
    sampler = SkippingRandomSampler(samples, generator=torch.Generator().manual_seed(seed))
    return ResumableLoader(samples, batch_size=3, sampler=sampler, drop_last=True)


def test_resumable_loader_goes_on_where_the_saved_epoch_stopped():
    uninterrupted = [batch.tolist() for batch in _epoch_loader(7)]
    assert len(uninterrupted) == 3 and uninterrupted != [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # shuffled
    first = _epoch_loader(7)
    it = iter(first)
    served = [next(it).tolist()]
    state = first.state_dict()
    assert state == {"batches_served": 1}

    resumed = _epoch_loader(7)  # a new process: same seed, the epoch's order again
    resumed.load_state_dict(state)
    rest = iter(resumed)
    assert served + [batch.tolist() for batch in rest] == uninterrupted
    assert resumed.state_dict() == {"batches_served": 3}  # counted from the batch it resumed at
    # The skip is for the interrupted epoch only: the next pass is whole (reseeded, as training does).
    resumed.sampler.generator.manual_seed(7)
    assert [batch.tolist() for batch in resumed] == uninterrupted


def test_resumable_loader_after_an_epoch_end_starts_the_next_epoch_whole():
    done = _epoch_loader(7)
    for _ in done:
        pass
    resumed = _epoch_loader(7)
    resumed.load_state_dict(done.state_dict())
    assert len([batch for batch in resumed]) == 3
