"""Shared fixtures: seeded generators, the real-data locator (skips with a reason when absent)."""

from __future__ import annotations

import pytest
import torch

from inrecon.data.paths import data_root, find_data


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch generator, fresh per test."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def shared_data():
    """Return a function ``get(relpath) -> Path`` that skips the test, saying why, when the file is absent."""

    def get(relpath: str):
        p = find_data(relpath)
        if p is None:
            pytest.skip(f"real data {relpath!r} not found under {data_root()} (set INRECON_DATA)")
        return p

    return get


@pytest.fixture
def one_thread():
    """Run the test with one torch thread: tiny problems on a shared 2-core machine only wait for a second."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
