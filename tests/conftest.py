"""Shared pytest configuration. Area-specific fixtures live in tests/_<area>_fixtures.py or in the test module."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network for weights or data.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TIMM_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _single_thread_torch():
    """Keep torch deterministic and light on the 2-core CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
