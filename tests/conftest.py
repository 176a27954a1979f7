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
