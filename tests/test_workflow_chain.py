"""README command 1 on a small params override: the whole chain, a no-op rerun, a one-knob edit."""

from __future__ import annotations

import time
import zipfile

import pytest
import yaml

from _workflow_fixtures import REPO, SNAKEMAKE, planned_jobs, run, small_params, workflow_copy, write_params

pytestmark = pytest.mark.slow

# The evaluated models: every metrics file of dvc.yaml (generated from the Snakefile's default target).
EVAL_MODELS = [
    m.rsplit("/", 1)[1][: -len(".json")]
    for st in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
    for m in st.get("metrics", [])
]


def test_whole_chain_then_nothing_then_only_downstream(tmp_path):
    work = workflow_copy(tmp_path / "repo", small_params())
    t = time.time()
    first = run([SNAKEMAKE, "--profile", "local"], work).stdout
    print(f"chain: {time.time() - t:.0f} s")
    with zipfile.ZipFile(work / "results/test_submission.zip") as zf:
        assert any(n.endswith(".png") for n in zf.namelist())
    assert (work / "results/tables/tables.md").is_file()
    for model in EVAL_MODELS:
        assert (work / f"results/metrics/{model}.json").is_file(), model
    # The summary printed at the end: where things are, job times, metrics beside chance.
    assert "results/test_submission.zip" in first and "Wall time per job" in first
    assert "chance: constant" in first and "train_student" in first

    t = time.time()
    second = run([SNAKEMAKE, "--profile", "local"], work).stdout
    print(f"no-op rerun: {time.time() - t:.1f} s")
    assert "Nothing to be done" in second + run([SNAKEMAKE, "--profile", "local", "-n"], work).stdout
    assert "Finished jobid" not in second

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train_ade"]["optimizer"] = {"lr": params["train"]["optimizer"]["lr"] / 2}  # train_ade's own lr
    write_params(work / "params.yaml", params)
    jobs = [j["name"] for j in planned_jobs(work)]  # what Snakemake would rerun now
    rules = {j["rule"] for j in planned_jobs(work)}
    assert "train_ade" in rules and len(EVAL_MODELS) == 5
    assert not rules & {"synth", "prepare", "pretrain_coco", "train_stcl"}, jobs
    # One inference pass per split runs every model once per frame: the val pass reruns as a whole (train_ade
    # is in it) and so do the evaluations it feeds; the test pass reruns for the ensemble.
    assert {"infer-val", "pseudo_label", "train_student", "infer-test", "tables"} <= set(jobs), jobs
    assert {"infer_init", "infer_gather", "evaluate"} <= rules
    assert {"pseudo_label_init", "pseudo_label_gather"} <= rules
