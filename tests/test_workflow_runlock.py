"""One lock for Snakemake and DVC runs (`stcl.runlock`): real `snakemake` and `dvc` processes in one folder.

A run is held inside its `stcl synth` job (``STCL_HOLD=command.synth=<fifo>``) while the other tool is
started, so the test knows the first run is under way whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from _process_fixtures import wait_for
from _workflow_fixtures import BIN, DVC, REPO, SNAKEMAKE, run, small_params, workflow_copy

from stcl.exit_codes import EXIT_UNAVAILABLE
from stcl.hold import ENV as HOLD_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def work(tmp_path) -> Path:
    work = workflow_copy(tmp_path / "repo", small_params())
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # deps
    run([DVC, "init", "--no-scm", "-q"], work)
    return work


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def _start(argv: list[str], work: Path, fifo: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=work, env=_env(**{HOLD_ENV: f"command.synth={fifo}"}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _release(fifo: Path, proc: subprocess.Popen) -> tuple[int, str]:
    with open(fifo, "wb"):  # the held `stcl synth` goes on
        pass
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out + err


def test_dvc_repro_during_a_snakemake_run_is_refused_before_it_touches_anything(work) -> None:
    fifo = work / "hold"
    os.mkfifo(fifo)
    smk = _start([SNAKEMAKE, "--profile", "local", "synth"], work, fifo)
    wait_for(lambda: "snakemake run" in (work / ".dvc/tmp/lock").read_text() if (work / ".dvc/tmp/lock").exists()
             else False, smk, "the Snakemake run's lock")
    record = (work / ".dvc/tmp/lock").read_text()
    assert record.split()[0] == str(smk.pid) and "snakemake" in record and "since " in record
    dvc = subprocess.run([DVC, "repro", "synth"], cwd=work, env=_env(), capture_output=True, text=True, timeout=300)
    assert dvc.returncode != 0 and "Unable to acquire lock" in dvc.stdout + dvc.stderr
    assert smk.poll() is None  # the Snakemake run was not disturbed
    code, output = _release(fifo, smk)
    assert code == 0, output
    assert (work / "data/VSPW_480p").is_dir()
    run([DVC, "status", "synth"], work)  # the lock went with the Snakemake process


def test_snakemake_during_dvc_repro_is_refused_naming_the_dvc_process(work) -> None:
    fifo = work / "hold"
    os.mkfifo(fifo)
    dvc = _start([DVC, "repro", "synth"], work, fifo)
    rwlock = work / ".dvc/tmp/rwlock"

    def writing() -> bool:  # the stage's command runs: DVC holds its outputs for writing
        try:
            writers = json.loads(rwlock.read_text() or "{}").get("write", {}).values()
        except (OSError, ValueError):
            return False
        return any(w.get("pid") == dvc.pid for w in writers)

    wait_for(writing, dvc, "DVC running the synth stage")
    smk = subprocess.run([SNAKEMAKE, "--profile", "local", "synth"], cwd=work, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert smk.returncode == EXIT_UNAVAILABLE, smk.stdout + smk.stderr
    errors = [ln for ln in smk.stderr.splitlines() if ln.startswith("snakemake: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "snakemake: error: .dvc/tmp/rwlock: `dvc repro` is running a stage in this repository "
        f"(pid {dvc.pid}, `"
    ), smk.stderr
    assert "repro synth`, since " in errors[0]
    assert dvc.poll() is None
    code, output = _release(fifo, dvc)
    assert code == 0, output
    assert (work / "data/VSPW_480p").is_dir()
