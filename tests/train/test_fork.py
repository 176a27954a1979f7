"""Fork SA4Depth from its baseline's kept checkpoint: the result equals SA4Depth trained from scratch.

Deterministic CPU training on a toy world, so the comparison is bit for bit: weights, Adam moments,
schedule and counters.
"""

import json

import pytest
import torch

from sa4depth.apps.visualize import load_scalars
from sa4depth.config import load_config
from sa4depth.data.toy import toy_run_overrides, toy_world
from sa4depth.errors import InputError
from sa4depth.train.fork import fork_run
from sa4depth.train.run import FORK_RECORD, kept_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")

# 5 frames -> 3 targets per sequence, 6 in all: 3 steps per epoch at batch size 2.
# The fork compared bit for bit is the one at an epoch end (step 3); the mid-epoch checkpoint (step 2)
# only shows that kept steps need not fall on an epoch end.
WARMUP, TOTAL = 3, 6
SA4 = ["refine.enabled=true", f"refine.warmup_steps={WARMUP}"]


def config(world, out, *extra):
    overrides = [*toy_run_overrides(world, out), "data.max_val_samples=2", "trainer.seed=5"]
    overrides.append("trainer.log_every_n_steps=1")
    return load_config(None, [*overrides, f"trainer.max_steps={TOTAL}", *extra])


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline keeping steps 2 (mid-epoch) and 3 (an epoch end), and SA4Depth trained from scratch."""
    tmp = tmp_path_factory.mktemp("fork")
    world = toy_world(tmp / "world", frames=5)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        baseline = config(world, tmp / "baseline", "trainer.keep_checkpoint_steps=[2,3]")
        train(baseline, enable_progress_bar=False)
        train(config(world, tmp / "scratch", *SA4), enable_progress_bar=False)
    finally:
        torch.set_num_threads(before)
    return tmp, world, baseline


def test_kept_checkpoints_hold_their_steps(runs):
    _, _, baseline = runs
    for step in (2, 3):
        assert load(kept_checkpoint(baseline.output_dir, step))["global_step"] == step
    assert load(kept_checkpoint(baseline.output_dir, 3).with_name("last.ckpt"))["global_step"] == TOTAL


def test_fork_at_the_warmup_end_equals_training_from_scratch(runs, same_training_state):
    tmp, world, baseline = runs
    cfg = config(world, tmp / "forked", *SA4)
    fork_run(kept_checkpoint(baseline.output_dir, WARMUP), cfg)
    train(cfg, resume=True, enable_progress_bar=False)

    got, want = load(tmp / "forked/checkpoints/last.ckpt"), load(tmp / "scratch/checkpoints/last.ckpt")
    assert got["global_step"] == TOTAL
    assert any(k.startswith("model.refinement.") for k in want["state_dict"])
    same_training_state(got, want)
    record = json.loads((tmp / "forked" / FORK_RECORD).read_text())
    assert record == {"checkpoint": str(kept_checkpoint(baseline.output_dir, WARMUP)), "step": WARMUP}

    # The fork's curve holds the baseline's points before the fork (copied) and its own after it.
    forked, scratch = load_scalars(tmp / "forked")["train/loss"], load_scalars(tmp / "scratch")["train/loss"]
    before = forked[0] < WARMUP
    assert forked[0][before].tolist() == scratch[0][:WARMUP].tolist() == list(range(WARMUP))
    assert torch.allclose(torch.tensor(forked[1]), torch.tensor(scratch[1]))


def test_fork_refuses_a_different_training(runs):
    tmp, world, baseline = runs
    source = kept_checkpoint(baseline.output_dir, WARMUP)
    with pytest.raises(InputError, match="differs from the checkpoint's in loss.smoothness_weight"):
        fork_run(source, config(world, tmp / "other_loss", *SA4, "loss.smoothness_weight=0.5"))
    with pytest.raises(InputError, match="after the fork's refinement warm-up ends"):
        fork_run(source, config(world, tmp / "short_warmup", "refine.enabled=true", "refine.warmup_steps=2"))
    with pytest.raises(InputError, match="holds a run already"):
        fork_run(source, config(world, tmp / "scratch", *SA4))
    assert not (tmp / "other_loss").exists() and not (tmp / "short_warmup").exists()
