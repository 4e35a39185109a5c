"""DVC end to end in a temporary git clone: repro, no-op repro, a params edit, metrics diff, push/pull."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from _workflow_fixtures import DVC, REPO, run, small_params, write_params

pytestmark = pytest.mark.slow

GIT = ["git", "-c", "user.name=stcl-test", "-c", "user.email=stcl-test@example.invalid"]


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def downstream(repo: Path, stage: str) -> set[str]:
    """`stage` and every stage that depends on it, transitively, from the repository's dvc.yaml."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    hit, changed = {stage}, True
    while changed:
        changed = False
        outs = [o for name in hit for o in stages[name].get("outs", []) + stages[name].get("metrics", [])]
        for name, st in stages.items():
            if name not in hit and any(d == o or d.startswith(o + "/") for d in st.get("deps", []) for o in outs):
                hit.add(name)
                changed = True
    return hit


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repo(module_tmp) -> Path:
    """A clone of this repository with the small params committed."""
    root = module_tmp("dvc")
    work = root / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    write_params(work / "params.yaml", small_params())
    run([*GIT, "commit", "-q", "-m", "small params", "params.yaml"], work)
    return work


def test_dvc_repro_metrics_and_remote(repo, tmp_path):
    timings = {}
    t = time.time()
    first = run([DVC, "repro"], repo).stdout
    timings["repro (all)"] = time.time() - t
    expected = set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    assert ran_stages(first) == expected
    for path in ("results/test_submission.zip", "results/tables/tables.md", "results/metrics/ensemble.json"):
        assert (repo / path).is_file(), path
    run([*GIT, "add", "dvc.lock"], repo)
    run([*GIT, "commit", "-q", "-m", "first repro"], repo)
    # Plots: training curves (dvclive TSVs) and the per-class IoU chart.
    plots = json.loads(run([DVC, "plots", "show", "--json"], repo).stdout)
    assert not plots.get("errors"), plots["errors"]
    assert any("/dvclive/plots/metrics/" in name for name in plots["data"]), list(plots["data"])
    assert any(name.endswith("per_class_iou.png") for name in plots["data"]), list(plots["data"])

    t = time.time()
    second = run([DVC, "repro"], repo).stdout
    timings["repro (nothing changed)"] = time.time() - t
    assert ran_stages(second) == set(), second

    # One training knob: only train_student and what depends on it may rerun; train_student itself must.
    # (The chain test checks the same for train_ade on Snakemake's plan; the last stage keeps this run short.)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train_student"]["optimizer"] = {"lr": params["train"]["optimizer"]["lr"] / 2}  # its own lr
    write_params(repo / "params.yaml", params)
    t = time.time()
    third = run([DVC, "repro"], repo).stdout
    timings["repro (train_student.optimizer.lr edited)"] = time.time() - t
    rerun, allowed = ran_stages(third), downstream(repo, "train_student")
    assert "train_student" in rerun and rerun <= allowed, (rerun, allowed)
    assert not rerun & {"synth", "prepare", "pretrain_coco", "train_stcl", "train_ade", "pseudo_label"}

    diff = run([DVC, "metrics", "diff", "--all", "--json"], repo).stdout
    rows = json.loads(diff)
    keys = {key for changes in rows.values() for key in changes}
    assert {"mIoU", "WIoU", "VC8", "VC16"} <= keys, keys
    assert any(path.endswith("train_student.json") for path in rows), rows.keys()

    # Versioned artifacts: push to a local remote, pull into a fresh clone.
    run([*GIT, "add", "dvc.lock", "params.yaml"], repo)
    run([*GIT, "commit", "-q", "-m", "lr/2"], repo)
    remote = tmp_path / "remote"
    run([DVC, "remote", "add", "-d", "local", str(remote)], repo)
    run([*GIT, "commit", "-q", "-m", "remote", ".dvc/config"], repo)
    t = time.time()
    run([DVC, "push"], repo)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    run([DVC, "pull"], clone)
    timings["push + pull"] = time.time() - t
    for path in ("results/models/train_student/model.pt", "results/test_submission.zip", "results/metrics/teacher.json"):
        assert digest(clone / path) == digest(repo / path), path
    status = run([DVC, "status"], clone).stdout
    assert "up to date" in status, status
    print("DVC timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
