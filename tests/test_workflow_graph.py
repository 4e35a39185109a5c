"""The Snakemake workflow and dvc.yaml describe the same jobs; generated files are up to date; lint clean."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from _workflow_fixtures import DVC, REPO, SNAKEMAKE
from stcl.params import Params, load_params
from stcl.workflow_graph import RULE_CODE, RULE_PARAMS, dvc_stages, lookup, synth_out

sys.path.insert(0, str(REPO / "workflow"))
import generate  # noqa: E402  (workflow/generate.py)


@dataclass
class Job:
    rule: str
    inputs: list[str]
    outputs: list[str]
    shell: str


def snakemake_jobs(cwd: Path = REPO, *args: str) -> list[Job]:
    """Every job of `snakemake -n -p` (fresh dry run: nothing is built in a clean checkout's copy)."""
    out = subprocess.run(
        [SNAKEMAKE, "-n", "-p", "--forceall", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jobs, cur = [], None
    for line in out.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            cur = Job(m.group(1), [], [], "")
            jobs.append(cur)
        elif cur is not None and line.startswith("    input: "):
            cur.inputs = line[len("    input: ") :].split(", ")
        elif cur is not None and line.startswith("    output: "):
            cur.outputs = line[len("    output: ") :].split(", ")
        elif cur is not None and line.startswith("Shell command: "):
            cur.shell = line[len("Shell command: ") :]
    return [j for j in jobs if j.rule != "all"]


def covers(outer: str, inner: str) -> bool:
    """`outer` is `inner` or a folder that contains it."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


@pytest.fixture(scope="module")
def jobs() -> list[Job]:
    return snakemake_jobs()


def test_generated_files_are_up_to_date():
    """workflow/schemas/params.schema.json and dvc.yaml equal what workflow/generate.py writes now."""
    stale = [str(p) for p, text in generate.render().items() if not p.exists() or p.read_text() != text]
    assert not stale, f"run `.venv/bin/python workflow/generate.py`: stale {stale}"


def test_schema_matches_params_defaults():
    schema = yaml.safe_load((REPO / "workflow/schemas/params.schema.json").read_text())
    assert set(schema["properties"]) == set(Params.model_fields)


def test_every_dvc_stage_is_the_same_snakemake_jobs(jobs):
    """Stage by stage: the same command(s), outputs and (non-code) inputs in both workflows."""
    params = load_params(REPO / "params.yaml")
    stages = dvc_stages(params)
    claimed: set[int] = set()
    for st in stages:
        targets = st.outs + st.metrics
        # Plots are stage outputs for DVC too; training curves (dvclive/) are not declared to Snakemake.
        plots = tuple(path for plot in st.plots for path in plot)
        mine = [
            i
            for i, j in enumerate(jobs)
            if j.rule in st.snakemake_rules and any(covers(t, o) for t in targets for o in j.outputs)
        ]
        assert mine, f"DVC stage {st.name}: no Snakemake job of {st.snakemake_rules} writes {targets}"
        assert not claimed & set(mine), f"DVC stage {st.name}: jobs already claimed by another stage"
        claimed |= set(mine)
        outputs = [o for i in mine for o in jobs[i].outputs]
        for t in targets:
            assert any(covers(t, o) for o in outputs), f"{st.name}: DVC out {t} not written by Snakemake"
        for o in outputs:
            if "/logs/" in o or "/benchmarks/" in o:
                continue
            assert any(covers(t, o) for t in targets + plots), f"{st.name}: Snakemake output {o} not a DVC out"
        external = [x for i in mine for x in jobs[i].inputs if not any(covers(x, o) or covers(o, x) for o in outputs)]
        for dep in st.deps:
            assert any(covers(dep, x) for x in external), f"{st.name}: DVC dep {dep} not a Snakemake input"
        for x in external:
            assert any(covers(dep, x) for dep in st.deps), f"{st.name}: Snakemake input {x} not a DVC dep"
        shells = " ; ".join(jobs[i].shell for i in mine)
        for part in st.cmd.split(" && "):
            assert part in shells, f"{st.name}: `{part}` not run by Snakemake ({shells})"
    unclaimed = [jobs[i].rule for i in range(len(jobs)) if i not in claimed]
    assert not unclaimed, f"Snakemake jobs without a DVC stage: {unclaimed}"


def test_dvc_dag_lists_the_stages_of_dvc_yaml():
    out = subprocess.run([DVC, "dag", "--dot"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    nodes = set(re.findall(r'"([\w@-]+)"', out.stdout))
    expected = {st.name for st in dvc_stages(load_params(REPO / "params.yaml"))}
    assert expected <= nodes, expected - nodes
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(dvc["stages"]) == expected


def test_params_keys_and_code_deps_exist():
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for rule, keys in RULE_PARAMS.items():
        for key in keys:
            lookup(data, key)  # KeyError names a stale key
    for rule, paths in RULE_CODE.items():
        for path in paths:
            assert (REPO / path).exists(), f"{rule}: code dep {path} missing"


def test_synth_needs_standard_root_names():
    params = Params.model_validate({"data": {"vspw_root": "elsewhere/VSPW_480p"}})
    with pytest.raises(ValueError, match="data roots"):
        synth_out(params)
    assert synth_out(Params()) == "data"


def test_real_data_has_no_synth_job(tmp_path):
    """data.synthetic: false → the graph starts at prepare on the data already in place."""
    from _workflow_fixtures import small_params, workflow_copy

    work = workflow_copy(tmp_path / "wf", small_params({"data": {"synthetic": False}}))
    for root in ("data/VSPW_480p", "data/coco", "data/ADEChallengeData2016"):
        (work / root).mkdir(parents=True)
    rules = {j.rule for j in snakemake_jobs(work)}
    assert "synth" not in rules and "prepare" in rules


def test_lint_and_format_are_clean():
    lint = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout[-3000:]
    fmt = subprocess.run(
        [str(Path(SNAKEMAKE).parent / "snakefmt"), "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fmt.returncode == 0, fmt.stderr[-3000:]


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profiles_resolve_from_the_repo_root(profile):
    """`--profile local|slurm` as the README writes it; the local profile trains without torchrun."""
    out = subprocess.run(
        [SNAKEMAKE, "--profile", profile, "-n", "-p", "--forceall"], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    train = [line for line in out.stdout.splitlines() if "stcl train" in line or "-m stcl train" in line]
    assert len(train) == 4
    if profile == "local":
        assert all("torchrun" not in line for line in train), train
    else:
        assert all("torchrun --standalone --nproc-per-node 1 -m stcl train" in line for line in train), train
        gpu_jobs = [line for line in out.stdout.splitlines() if "resources:" in line and "gpu=1" in line]
        assert gpu_jobs and all("tasks=0" in line for line in gpu_jobs), "GPU jobs must set tasks=0"


def test_ablation_targets_are_on_demand_jobs():
    """ablation_table3 trains each grid point with its own params file; `all` builds no ablation."""
    jobs = snakemake_jobs(REPO, "ablation_table3")
    trains = [j for j in jobs if j.rule == "ablation_train"]
    names = sorted(j.outputs[0].split("/")[2] for j in trains)
    assert names == sorted(["train_nostcl", "stcl_d512_t0.07", "stcl_d512_t0.05", "stcl_d256_t0.07"])
    for j in trains:
        name = j.outputs[0].split("/")[2]
        assert f"--params results/ablations/{name}/params.yaml --stage train_stcl" in j.shell
        assert "results/models/pretrain_coco/model.pt" in j.inputs  # grid runs start from COCO-pre
    default = {j.rule for j in snakemake_jobs(REPO)}
    assert not any(r.startswith("ablation") for r in default)


def test_stale_schema_stops_the_workflow_with_a_hint(tmp_path):
    from _workflow_fixtures import small_params, workflow_copy

    work = workflow_copy(tmp_path / "wf", small_params())
    schema = work / "workflow/schemas/params.schema.json"
    schema.write_text(schema.read_text().replace('"title": "Params"', '"title": "Old"'))
    out = subprocess.run([SNAKEMAKE, "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "workflow/generate.py" in out.stdout + out.stderr
