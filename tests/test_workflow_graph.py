"""The Snakefile is the one description of the graph: dvc.yaml is generated from it, every command gets its
paths from its rule, bad params stop Snakemake with stcl's own lines, paths may contain spaces."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _workflow_fixtures import DVC, REPO, SNAKEMAKE, planned_jobs, run, small_params, workflow_copy, write_params
from stcl.params import TRAIN_STAGES


@pytest.fixture(scope="module")
def jobs() -> list[dict]:
    return planned_jobs(REPO, forceall=True)


def _covered(token: str, paths: list[str]) -> bool:
    """`token` is one of `paths`, a folder holding one, or a path inside one."""
    t = token.rstrip("/")
    return any(t == p or p.startswith(t + "/") or t.startswith(p.rstrip("/") + "/") for p in paths)


def test_regenerating_dvc_yaml_changes_nothing():
    """dvc.yaml is what workflow/generate.py writes from Snakemake's jobs now (so DVC cannot drift)."""
    out = subprocess.run([sys.executable, "workflow/generate.py", "--check"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr


def test_dvc_stages_are_the_snakemake_jobs(jobs):
    """Stage by stage: the same command(s), inputs and outputs as the Snakemake job(s) of that name."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(dict.fromkeys(j["name"] for j in jobs))
    for name, stage in stages.items():
        mine = [j for j in jobs if j["name"] == name]
        assert stage["cmd"] == " && ".join(j["shell"] for j in mine)
        outs = stage.get("outs", []) + stage.get("metrics", []) + [p for p in stage.get("plots", []) if isinstance(p, str)]
        assert sorted(outs) == sorted(o[1] for j in mine for o in j["outputs"]), name
        written = {o[1] for j in mine for o in j["outputs"]}
        data_deps = [d for d in stage.get("deps", []) if not d.startswith("src/")]
        assert data_deps == list(dict.fromkeys(i for j in mine for i in j["inputs"] if i not in written)), name
    assert {"synth", "prepare", "pretrain_coco", "pseudo_label", "train_student", "submit", "tables"} <= set(stages)


def test_every_command_receives_the_paths_it_uses(jobs):
    """Each path on a command line is a declared input or output (or their folder): nothing read by a hidden path."""
    ablation = planned_jobs(REPO, "ablation_table3", forceall=True)
    for job in jobs + ablation:
        declared = job["inputs"] + [o[1] for o in job["outputs"]] + ["params.yaml"]
        for token in shlex.split(job["shell"]):
            if "/" in token and not token.startswith("-") and not re.fullmatch(r"\d+/\d+", token):  # not --shard i/n
                assert _covered(token, declared), f"{job['rule']}: {token} is not an input or output ({job['shell']})"
    trains = [j for j in jobs if j["rule"] in TRAIN_STAGES]
    assert len(trains) == len(TRAIN_STAGES) == 4
    student = next(j for j in trains if j["rule"] == "train_student")
    assert "--init results/models/pretrain_coco/model.pt" in student["shell"]
    # train_ade is Table 2's "Swin-L + ADE": from the ImageNet weights, not from COCO-pre (init: null)
    ade = next(j for j in trains if j["rule"] == "train_ade")
    assert "--init" not in ade["shell"] and "results/models/pretrain_coco/model.pt" not in ade["inputs"]
    assert "--pseudo results/pseudo/VSPW_pseudo" in student["shell"]
    shard = next(j for j in jobs if j["rule"] == "pseudo_label")
    assert (
        "--checkpoint=train_ade=results/models/train_ade/model.pt --checkpoint=train_stcl=results/models/train_stcl/model.pt"
        in shard["shell"]
    )
    assert "--root data/VSPW_480p" in shard["shell"]
    assert "--unlabeled results/prepare/unlabeled.txt" in shard["shell"]
    submit = next(j for j in jobs if j["rule"] == "submit")
    assert "--root data/VSPW_480p" in submit["shell"] and "data/VSPW_480p" in submit["inputs"]


def _template(node: ast.AST) -> str | None:
    """A string constant as is, an f-string with each formatted value as ``{}``; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def test_the_library_holds_no_results_paths(jobs):
    """Only the Snakefile knows the results/ layout. In src/stcl no string (constant or f-string) starts with
    results, none is a wildcard file name of the layout (a shard record ``{}-of-{}.json``), and no path is
    joined with a top-level folder of results/ (``x / "evaluate"``): such names come in as arguments."""
    ablation = planned_jobs(REPO, "ablation_table3", forceall=True)
    paths = [p for j in jobs + ablation for p in j["inputs"] + [o[1] for o in j["outputs"]] + j["logs"]]
    layout = [p.split("/")[1:] for p in paths if p.startswith("results/")]
    top = {parts[0] for parts in layout if len(parts) > 1}
    wildcard_names = set()
    for rule_file in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        text = rule_file.read_text()
        top |= set(re.findall(r"results/(\w+)/", text))  # benchmark: and log: folders too
        for name in re.findall(r'"results/[^"]*/([^"/]*\{[^"/]*)"', text):
            wildcard_names.add(re.sub(r"\{[^}]*\}", "{}", name))
    # a name that is wildcards and an extension ("{}.png") says nothing of the layout
    wildcard_names = {n for n in wildcard_names if n.replace("{}", "").rpartition(".")[0]}
    top.discard("metrics")  # dvclive's own layout (<dir>/plots/metrics) uses the name too
    assert "{}-of-{}.json" in wildcard_names and {"evaluate", "benchmarks", "predictions"} <= top
    found = []
    for path in (REPO / "src/stcl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = _template(node)
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if text is not None and (text.startswith("results") or text in wildcard_names):
                found.append(f"{where}: {text!r}")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _template(node.right) in top:
                found.append(f"{where}: / {_template(node.right)!r}")
    assert not found, found


# The two rules whose name is not their command, each for its own reason.
OTHER_NAME = {
    "report_figures": "report",  # `stcl report`; the rule, its DVC stage, plan row and log keep the longer name
    "ablation_params": "ablation",  # `stcl ablation NAME` writes an ablation's params file
}


def test_one_name_per_stage(jobs):
    """Rule → `stcl <command>` → src/stcl/commands/<command>.py carry exactly the same name (mkdir aside): a
    training rule runs `stcl train --stage <rule>`, a rule `<command>_gather` runs `stcl <command> --gather`,
    an ablation rule is exactly `ablation_<command>`; `OTHER_NAME` lists the only two exceptions."""
    ablation = planned_jobs(REPO, "ablation_table3", forceall=True)
    checked = set()
    for job in jobs + ablation:
        m = re.search(r"\bstcl (\w+)", job["shell"])
        if m is None:
            assert job["shell"].startswith("mkdir -p "), job["shell"]
            continue
        command, rule = m.group(1), job["rule"]
        assert (REPO / f"src/stcl/commands/{command}.py").is_file(), command
        stage = re.search(r"--stage (\w+)", job["shell"])
        if rule in TRAIN_STAGES:
            assert command == "train" and stage and stage.group(1) == rule, job["shell"]
        elif rule in OTHER_NAME:
            assert command == OTHER_NAME[rule], (rule, command)
        elif rule.endswith("_gather"):
            assert command == rule.removesuffix("_gather") and " --gather " in job["shell"], (rule, job["shell"])
        elif rule.startswith("ablation_"):
            assert command == rule.removeprefix("ablation_"), (rule, command)
            if command == "train":
                assert stage and stage.group(1) in TRAIN_STAGES, job["shell"]
        else:
            assert command == rule, (rule, command)
        checked.add(rule)
    assert set(TRAIN_STAGES) | set(OTHER_NAME) <= checked
    assert {"ablation_train", "ablation_infer", "ablation_evaluate", "ablation_tables"} <= checked
    assert {"infer_gather", "pseudo_label_gather"} <= checked


def test_dvc_dag_lists_the_stages_of_dvc_yaml(jobs):
    out = subprocess.run([DVC, "dag", "--dot"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    nodes = set(re.findall(r'"([\w@-]+)"', out.stdout))
    expected = {j["name"] for j in jobs}
    assert expected <= nodes, expected - nodes
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(dvc["stages"]) == expected


def test_params_keys_and_code_deps_exist():
    from stcl.params import load_params

    values = load_params(REPO / "params.yaml").model_dump(mode="json")
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        for key in stage.get("params", []):
            node = values
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: params key {key} missing"
                node = node[part]
        for dep in stage.get("deps", []):
            if dep.startswith("src/"):
                assert (REPO / dep).exists(), f"{name}: code dep {dep} missing"
    # a stage's code deps include what its command imports: train → losses and models, evaluate → metrics
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {"src/stcl/losses", "src/stcl/models", "src/stcl/train"} <= set(stages["train_stcl"]["deps"])
    assert "src/stcl/metrics" in stages["evaluate-ensemble"]["deps"]


def test_training_stage_inherits_shared_keys(jobs):
    """A training job's rerun trigger watches its whole (merged) section plus the shared model/clips/augment."""
    train_ade = next(j for j in jobs if j["rule"] == "train_ade")
    assert train_ade["params"] == ["model", "clips", "augment", "train", "train_ade"]


def test_pseudo_labels_do_not_watch_the_val_test_tta(jobs):
    """The teacher's TTA is `pseudo_label.scales`/`flip` (multiscale.pseudo_label_tta): an edit of infer's scales
    or flip reruns val/test inference, not the pseudo labels and the student."""
    pseudo = next(j for j in jobs if j["rule"] == "pseudo_label")
    infer = next(j for j in jobs if j["rule"] == "infer")
    assert "pseudo_label" in pseudo["params"] and "infer.crop_size" in pseudo["params"]
    assert not {"infer.scales", "infer.flip"} & set(pseudo["params"])
    assert {"infer.scales", "infer.flip"} <= set(infer["params"])


def test_synth_needs_standard_root_names(tmp_path):
    """Params validation (the same line as `stcl params`) refuses roots `stcl synth --out <dir>` does not write."""
    data = small_params()
    data["data"]["vspw_root"] = "elsewhere/VSPW_480p"
    work = workflow_copy(tmp_path / "wf", data)
    out = subprocess.run([SNAKEMAKE, "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "  data: synthetic is true, so the data roots (vspw_root, coco_root, ade_root) must be" in out.stdout + out.stderr


def test_real_data_has_no_synth_job(tmp_path):
    """data.synthetic: false → the graph starts at prepare on the data already in place."""
    work = workflow_copy(tmp_path / "wf", small_params({"data": {"synthetic": False}}))
    for root in ("data/VSPW_480p", "data/coco", "data/ADEChallengeData2016"):
        (work / root).mkdir(parents=True)
    rules = {j["rule"] for j in planned_jobs(work, forceall=True)}
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


def test_ablation_targets_are_on_demand_jobs(jobs):
    """ablation_table3 trains each grid point with its own params file; `all` builds no ablation."""
    trains = [j for j in planned_jobs(REPO, "ablation_table3", forceall=True) if j["rule"] == "ablation_train"]
    names = sorted(j["wildcards"]["name"] for j in trains)
    assert names == sorted(["train_nostcl", "stcl_d512_t0.07", "stcl_d512_t0.05", "stcl_d256_t0.07"])
    for j in trains:
        name = j["wildcards"]["name"]
        assert f"--params results/ablations/{name}/params.yaml --stage train_stcl" in j["shell"]
        assert "results/models/pretrain_coco/model.pt" in j["inputs"]  # grid runs start from COCO-pre
        assert "--init results/models/pretrain_coco/model.pt" in j["shell"]
    assert not any(j["rule"].startswith("ablation") for j in jobs)


def test_bad_params_stop_snakemake_with_stcl_lines(tmp_path):
    """Snakemake validates with stcl's validator: every fault, one line each, the same as `stcl params`."""
    bad = small_params()
    bad["infer"]["models"] = []
    bad["model"]["backbone"] = "resnet9000"
    bad["data"]["synthetic"] = "yes"
    work = workflow_copy(tmp_path / "wf", bad)
    out = subprocess.run([SNAKEMAKE, "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    for key in ("infer.models", "model.backbone", "data.synthetic"):
        assert re.search(rf"^\s+{re.escape(key)}: ", text, re.M), (key, text)
    assert "invalid params (3 problem(s))" in text and "Failed validating" not in text
    stcl = subprocess.run([str(Path(SNAKEMAKE).parent / "stcl"), "params", "--params", "params.yaml"], cwd=work,
                          capture_output=True, text=True)
    assert stcl.returncode == 1
    for line in stcl.stderr.strip().splitlines()[1:]:
        assert line.strip() in text, line
    (work / "params.yaml").write_text("")  # an empty params file: refused by both, with the same reason
    out = subprocess.run([SNAKEMAKE, "-n"], cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "params file is empty" in out.stdout + out.stderr
    stcl = subprocess.run([str(Path(SNAKEMAKE).parent / "stcl"), "params"], cwd=work, capture_output=True, text=True)
    assert stcl.returncode == 1 and "params file is empty" in stcl.stderr


def test_paths_with_spaces_run_through_snakemake(tmp_path):
    """Data roots under `my data/` and `--configfile "<dir>/my params.yaml"`: synth and prepare really run."""
    work = workflow_copy(tmp_path / "wf", small_params())
    params = small_params(
        {"data": {"vspw_root": "my data/VSPW_480p", "coco_root": "my data/coco", "ade_root": "my data/ADEChallengeData2016"}}
    )
    config = tmp_path / "my params" / "my params.yaml"
    config.parent.mkdir()
    write_params(config, params)
    out = run([SNAKEMAKE, "results/prepare/report.json", "--profile", "local", "--configfile", str(config)], work)
    assert (work / "my data/VSPW_480p/train.txt").is_file()
    assert (work / "results/prepare/unlabeled.txt").read_text().strip()
    assert f"--params {shlex.quote(str(config))}" in out.stdout + out.stderr
    dry = run([SNAKEMAKE, "results/test_submission.zip", "-n", "-p", "--configfile", str(config)], work).stdout
    assert "--vspw 'my data/VSPW_480p'" in dry and "--root 'my data/VSPW_480p'" in dry
