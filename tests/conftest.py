"""Shared fixtures: paths to the real data in ../shared/data and a fixed random seed per test."""

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread for a test module's small tensors (``pytestmark = usefixtures("one_thread")``).

    On the shared 2-core machine a second thread makes every small op wait for a descheduled thread
    (~8 ms each; a 6 x 6 LM solve measured 36x slower): one thread keeps these tests fast and stable.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


def _assert_same_training_state(got: dict, want: dict) -> None:
    """Two training checkpoints hold bit-identical weights, Adam state, schedule, step and epoch."""
    assert got["global_step"] == want["global_step"] and got["epoch"] == want["epoch"]
    assert got["state_dict"].keys() == want["state_dict"].keys()
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    opt_got, opt_want = got["optimizer_states"][0], want["optimizer_states"][0]
    assert opt_got["state"].keys() == opt_want["state"].keys()
    for index, state in opt_want["state"].items():
        for name, value in state.items():
            assert torch.equal(opt_got["state"][index][name], value), (index, name)
    assert got["lr_schedulers"] == want["lr_schedulers"]


@pytest.fixture
def same_training_state():
    """`_assert_same_training_state`: a resumed or forked run against one trained without a break."""
    return _assert_same_training_state
