"""Shared synthetic datasets of the benchmark tests (see synthetic_data.py); the session-wide ones are
read-only: a test that damages a dataset writes its own with `write_dataset`."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_data import SyntheticDataset, write_dataset


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> SyntheticDataset:
    """Our layout: 3 classes x (3 train + 1 val) objects, 50 views of 32 px."""
    return write_dataset(tmp_path_factory.mktemp("synthetic") / "ours")


@pytest.fixture(scope="session")
def official_dataset(tmp_path_factory) -> SyntheticDataset:
    """The official download's layout (split files only, ShapeNet labels): 2 classes x (2 + 1) objects."""
    root = tmp_path_factory.mktemp("synthetic") / "official"
    return write_dataset(root, classes=2, train_per_class=2, views=50, size=32, seed=1, layout="official")


@pytest.fixture
def one_thread():
    """torch on one thread during a test (`pytest.mark.usefixtures("one_thread")`): small networks and
    probes run faster and steadier on one thread when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
