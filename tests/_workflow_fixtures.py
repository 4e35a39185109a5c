"""Helpers for the workflow tests: a working copy of the workflow with a small params override."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from stcl.params import merge_overrides, parse_params

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
DVC = str(BIN / "dvc")

_TRAIN = {"iters": 4, "batch_size": 2, "batch_per_device": 2, "checkpoint_every": 4, "log_every": 1}
# The chain end to end in about a minute of CPU: tiny data, a few iterations, one inference scale.
SMALL: dict[str, Any] = {
    "synth": {
        "height": 48,
        "width": 64,
        "frames_per_video": 20,
        "videos": {"train": 3, "val": 2, "test": 2},
        "coco_images": {"train": 4, "val": 2, "test": 0},
        "ade_images": {"train": 4, "val": 2, "test": 0},
        "num_classes": 4,
        "confusable_pairs": [],  # params.yaml's pairs name classes beyond these 4
    },
    "augment": {"scale": [64, 48], "crop_size": [32, 32]},
    "model": {"channels": 16, "aux_channels": 8},
    "pretrain_coco": _TRAIN,
    "train_stcl": {**_TRAIN, "stcl": {"dim": 16}},
    "train_ade": _TRAIN,
    "train_student": {**_TRAIN, "stcl": {"dim": 16}},
    "pseudo_label": {"shards": 2, "scales": [1.0], "flip": False},
    "infer": {"scales": [1.0], "flip": False, "crop_size": [32, 32], "stride": [32, 32], "workers": 0},
    "evaluate": {"workers": 1},
    "cluster": {
        "default": {"cpus": 1, "mem_mb": 1000, "runtime": 10},
        "train": {"gpus": 1, "cpus_per_gpu": 1, "mem_mb": 2000, "runtime": 10},
        "infer": {"gpus": 1, "cpus_per_gpu": 1, "mem_mb": 2000, "runtime": 10},
    },
}

WORKFLOW_FILES = ("Snakefile", "dvc.yaml", "params.yaml", "workflow", "local", "slurm", ".dvcignore")


def small_params(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete, validated params mapping: the defaults with SMALL (and `extra`) merged in."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    data = merge_overrides(merge_overrides(base, SMALL), extra or {})
    parse_params(data, "small params")
    return data


def write_params(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))


def workflow_copy(dest: Path, params: dict[str, Any]) -> Path:
    """Copy the workflow files of the working tree to `dest` and write `params` as its params.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    write_params(dest / "params.yaml", params)
    return dest


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion shows its output."""
    env = {**(env or os.environ), "PATH": f"{BIN}{os.pathsep}{(env or os.environ).get('PATH', '')}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return result


def planned_jobs(work: Path = REPO, *targets: str, forceall: bool = False) -> list[dict[str, Any]]:
    """The jobs Snakemake would run in `work` (all of them with `forceall`), from its own DAG as JSON.

    Each job: rule, wildcards, inputs, outputs ([name, path, report]), logs, shell (without the log
    redirection), params (the keys of `params: reads=`) and name (its DVC stage name); see workflow/generate.py.
    """
    cmd = [sys.executable, str(REPO / "workflow/generate.py"), "--root", str(work), "--jobs", *targets]
    out = subprocess.run(cmd + (["--forceall"] if forceall else []), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)
