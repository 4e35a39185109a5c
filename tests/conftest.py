"""Shared pytest configuration. Area-specific fixtures live in tests/_<area>_fixtures.py or in the test module."""

from __future__ import annotations

import os
import shutil

import pytest

from stcl import numerics

# The same kernels as every `stcl` command (stcl.numerics), set before torch is first imported; subprocesses
# inherit them. STCL_PORTABLE_NUMERICS=0 in the environment turns this off.
numerics.apply()
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


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """`module_tmp(name)`: a folder for one module's shared fixtures, deleted when the module is done.

    The folder stays (like a failed test's `tmp_path`) when any test of the module failed.
    """
    made: list = []
    failed_before = request.session.testsfailed

    def make(name: str):
        path = tmp_path_factory.mktemp(name)
        made.append(path)
        return path

    yield make
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end tests first (stable: module order kept), so that with two workers (pyproject.toml:
    `-n auto`) they start at once and the fast tests fill the gaps instead of leaving one worker idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
