"""README command 1 on a small params override: the whole chain, a no-op rerun, a one-knob edit."""

from __future__ import annotations

import re
import time
import zipfile

import pytest
import yaml

from _workflow_fixtures import SNAKEMAKE, run, small_params, workflow_copy, write_params
from stcl.workflow_graph import EVAL_MODELS

pytestmark = pytest.mark.slow


def planned_jobs(output: str) -> list[str]:
    """(rule, wildcards) of every job in a `snakemake -n` listing, as 'rule' or 'rule[wildcards]'."""
    jobs, rule = [], None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
            jobs.append(rule)
        elif rule and line.startswith("    wildcards: "):
            jobs[-1] = f"{rule}[{line.split(': ', 1)[1]}]"
    return [j for j in jobs if j != "all"]


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
    params["train_ade"]["optimizer"]["lr"] /= 2
    write_params(work / "params.yaml", params)
    jobs = planned_jobs(run([SNAKEMAKE, "--profile", "local", "-n"], work).stdout)
    rules = {j.split("[")[0] for j in jobs}
    assert "train_ade" in rules
    assert not rules & {"synth", "prepare", "pretrain_coco", "train_stcl"}, jobs
    assert "infer_val[model=train_stcl]" not in jobs and "evaluate[model=train_stcl]" not in jobs, jobs
    assert {"teacher", "pseudo_label_init", "pseudo_label", "train_student", "infer_test", "tables"} <= rules
