"""Helpers for the hardening tests: a small real workspace, a small real file system, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from _process_fixtures import default_sigint
from _weights_fixtures import model_file

from stcl.atomic import TMP_SUFFIX
from stcl.cli import main

REPO = Path(__file__).resolve().parents[1]


def write_params(folder: Path, name: str = "params.yaml", iters: int = 200, checkpoint_every: int = 2) -> Path:
    """The repository's params.yaml with a smaller embedded dataset and train_stcl from scratch."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["synth"].update(frames_per_video=20, videos={"train": 2, "val": 2, "test": 2})
    data["synth"].update(coco_images={"train": 4, "val": 2, "test": 0}, ade_images={"train": 4, "val": 2, "test": 0})
    data["train_stcl"].update(iters=iters, checkpoint_every=checkpoint_every, log_every=1, init=None)
    data["infer"].update(scales=[1.0], flip=False)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def make_workspace(root: Path) -> Path:
    """``root`` with params.yaml, data/ (`stcl synth`), results/prepare (`stcl prepare`), a model file."""
    from stcl.params import load_params

    params = write_params(root)
    assert main(["synth", "--out", str(root / "data"), "--params", str(params)]) == 0
    cwd = os.getcwd()
    os.chdir(root)  # the data roots of params.yaml are relative (data/...)
    try:
        assert main(["prepare", "--params", str(params), "--out", "results/prepare"]) == 0
    finally:
        os.chdir(cwd)
    model_file(root / "model.pt", model_params=load_params(params).model)
    return root


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. "64k") mounted at ``where``; skipped where mounting is not permitted.

    Mounting needs root (CAP_SYS_ADMIN). Without it the test is skipped: the same handling is covered with
    injected faults in tests/test_cli_errors.py, which runs everywhere.
    """
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def leftovers(root: Path) -> list[str]:
    """Temporaries (``*.tmp``) and empty folders under ``root`` (``root`` itself excluded), relative names."""
    found = []
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(parent) / name
            if name.endswith(TMP_SUFFIX) or (path.is_dir() and not any(path.iterdir())):
                found.append(str(path.relative_to(root)))
    return sorted(found)


def launch(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m stcl ARGS`` in its own session (so a signal to its group reaches it like a Ctrl-C does);
    ``env``: extra environment variables."""
    return subprocess.Popen(
        [sys.executable, "-m", "stcl", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        preexec_fn=default_sigint,
    )

