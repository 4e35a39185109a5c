"""The suite's own scheduling. The installed pytest and pytest-xdist send the tests of one `xdist_group` to
one worker (the two Slurm modules rely on it so that neither waits for the other; pytest 9.2 broke it, see
pytest-dev/pytest-xdist#1386 and pyproject.toml's pin), and a Slurm test cluster waits for another one on
the same machine instead of taking over its /etc/slurm/slurm.conf (tests/_slurm_harness.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("i", range(4))
def test_grouped(i):
    pass
"""

LOOSE = """
import pytest


@pytest.mark.parametrize("i", range(8))
def test_loose(i):
    pass
"""


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_a.py").write_text(GROUPED)
    (tmp_path / "test_b.py").write_text(GROUPED)
    (tmp_path / "test_loose.py").write_text(LOOSE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", result.stdout)
    assert len(ran) == 16, result.stdout[-3000:]
    grouped = {(worker, node) for worker, node in ran if "test_grouped" in node}
    assert len(grouped) == 8 and all(node.endswith("@together") for _, node in grouped), sorted(grouped)
    assert len({worker for worker, _ in grouped}) == 1, sorted(grouped)


def test_a_second_test_cluster_waits_for_the_first(tmp_path, monkeypatch):
    """Two Slurm test clusters never share the machine's /etc/slurm/slurm.conf: the second waits on the lock
    until the first has released it (here: gives up after its timeout while the first holds it)."""
    from _slurm_harness import SlurmCluster

    monkeypatch.setattr(SlurmCluster, "machine_lock", tmp_path / "machine.lock")
    first, second = SlurmCluster(tmp_path / "a"), SlurmCluster(tmp_path / "b")
    first.acquire_machine()
    try:
        with pytest.raises(RuntimeError, match="another test Slurm cluster held .*machine.lock"):
            second.acquire_machine(timeout=1.0)
    finally:
        first.release_machine()
    second.acquire_machine(timeout=1.0)
    second.release_machine()
