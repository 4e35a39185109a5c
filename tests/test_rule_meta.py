"""Each rule says once what it is (`describe(...)` next to it in workflow/rules/*.smk, `stcl.plan.graph.RuleMeta`):
every rule that runs a command declares it, and dvc.yaml's stages and `stcl plan`'s rows and kinds come from it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from _workflow_fixtures import REPO, SNAKEMAKE, small_params, workflow_copy
from stcl.params import TRAIN_STAGES, load_params
from stcl.plan.graph import RuleMeta, snakemake_jobs
from stcl.plan.jobs import graph_specs

RULES = REPO / "workflow/rules"


def _own(job) -> str:
    return "-".join([job.rule, *job.wildcards.values()])


@pytest.fixture(scope="module")
def jobs():
    return snakemake_jobs(REPO) + snakemake_jobs(REPO, ("ablation_table3",))


def test_every_rule_with_a_command_declares_its_kind_once():
    """One describe per rule, right above it; the target rules that run nothing (all, ablation_table*) none."""
    text = {f.name: f.read_text() for f in RULES.glob("*.smk")}
    described = [name for t in text.values() for name in re.findall(r'^[ \t]*describe\(\s*"(\w+)"', t, re.M)]
    rules = [name for t in text.values() for name in re.findall(r"^[ \t]*rule (\w+):", t, re.M)]
    commands = {name for t in text.values() for name, body in re.findall(r"^[ \t]*rule (\w+):\n((?:[ \t]+.*\n|\n)*)", t, re.M)
                if "shell:" in body}
    assert len(described) == len(set(described)), described
    assert set(described) == commands, (set(described) ^ commands)
    assert {"ablation_table1", "ablation_table2", "ablation_table3"} <= set(rules) - commands
    assert 'describe(_stage, "train")' in text["train.smk"]  # the training stages: one rule each, one describe


def test_jobs_carry_the_kind_their_rule_declares(jobs):
    by_rule = {j.rule: j for j in jobs}
    assert {by_rule[s].kind for s in TRAIN_STAGES} == {"train"} and by_rule["ablation_train"].kind == "train"
    assert {by_rule[r].kind for r in ("infer", "pseudo_label", "ablation_infer")} == {"infer"}
    assert {j.kind for j in jobs} - {"train", "infer"} == {"cpu"}  # no flow job without tc.raft_weights
    assert by_rule["prepare"].splits == ["train", "val", "test"] and by_rule["evaluate"].splits == ["val"]
    with pytest.raises(ValueError, match="kind must be"):
        RuleMeta("gpu")


def test_dvc_stages_and_plan_rows_are_the_declared_ones(jobs):
    """dvc.yaml groups exactly the jobs whose rules declare one dvc_stage; the plan's rows likewise."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    default = snakemake_jobs(REPO)
    assert list(stages) == list(dict.fromkeys(j.dvc_stage for j in default))
    shared = {j.dvc_stage for j in jobs if j.dvc_stage != _own(j)}
    assert shared == {"pseudo_label", "infer-val", "infer-test"}
    rows = {j.plan_row for j in jobs if j.plan_row != _own(j)}
    assert rows == {"pseudo_label", "infer_val", "infer_test", "evaluate"}
    specs = graph_specs(load_params(REPO / "params.yaml"), default)
    assert [s.name for s in specs] == list(dict.fromkeys(j.plan_row for j in default))
    for spec in specs:
        members = [j for j in default if j.plan_row == spec.name]
        assert spec.snakemake_jobs == tuple(_own(j) for j in members)
        assert spec.kind == next((j.kind for j in members if j.kind != "cpu"), "cpu")
    by = {s.name: s for s in specs}
    assert by["pseudo_label"].shards == sum(j.rule == "pseudo_label" for j in default)
    assert set(by["train_student"].after) == {"synth", "pretrain_coco", "pseudo_label"}
    assert set(by["train_ade"].after) == {"synth"} and by["synth"].after == ()


def test_editing_a_declaration_moves_the_stage_and_the_row(tmp_path):
    """Give evaluate one DVC stage and no plan row: dvc.yaml and the plan follow; a rule left undescribed
    stops the graph with its name."""
    work = workflow_copy(tmp_path / "wf", small_params())
    evaluate = work / "workflow/rules/evaluate.smk"
    text = evaluate.read_text()
    old = 'describe("evaluate", "cpu", plan_row="evaluate", splits=("val",))'
    assert old in text
    evaluate.write_text(text.replace(old, 'describe("evaluate", "cpu", dvc_stage="evaluate", splits=("val",))'))
    jobs = snakemake_jobs(work)
    evals = [j for j in jobs if j.rule == "evaluate"]
    assert len(evals) == 5 and {j.dvc_stage for j in evals} == {"evaluate"}
    assert [j.plan_row for j in evals] == [_own(j) for j in evals]
    rows = [s.name for s in graph_specs(load_params(work / "params.yaml"), jobs)]
    assert "evaluate" not in rows and {_own(j) for j in evals} <= set(rows)

    evaluate.write_text(text.replace('describe("tables", "cpu")', ""))
    with pytest.raises(ValueError, match=r"^tables: no describe"):
        snakemake_jobs(work)


def test_the_local_profile_names_no_rule():
    """The local profile offers resources to every job (no per-rule list that could miss one): no GPU, one node."""
    profile = yaml.safe_load((REPO / "workflow/profiles/local/config.yaml").read_text())
    assert "set-resources" not in profile and profile["resources"] == {"gpu": 0, "nodes": 1}


def _train_commands(*args: str) -> list[str]:
    out = subprocess.run([SNAKEMAKE, "--profile", "local", "-n", "-p", "--forceall", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if "stcl train" in line]


def test_the_local_profile_trains_every_rule_without_torchrun_unless_given_gpus():
    """The ablations' training too (it ran under torchrun when the profile listed rules by name); with
    `--resources gpu=N` the same rules start torchrun."""
    plain = _train_commands("ablation_table3")
    assert len(plain) == 5 and sum("--stage train_stcl --init" in c for c in plain) == 4, plain  # COCO-pre + grid
    assert all("torchrun" not in c and "srun" not in c for c in plain), plain
    gpus = _train_commands("ablation_table3", "--resources", "gpu=2", "nodes=1")
    assert len(gpus) == 5 and all("torchrun --standalone --nproc-per-node 1 -m stcl train" in c for c in gpus), gpus
