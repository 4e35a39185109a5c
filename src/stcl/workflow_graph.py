"""The stage graph of DESIGN.md as data: what each job runs, reads and writes.

One table, two consumers:

* workflow/rules/*.smk take each rule's params keys from `RULE_PARAMS` (`params:` of a rule, so Snakemake's
  ``params`` rerun trigger invalidates exactly the jobs whose keys changed);
* workflow/gen_dvc.py writes dvc.yaml from `dvc_stages` (one DVC stage per Snakemake job).

tests/test_workflow_graph.py checks that every DVC stage is a Snakemake job with the same inputs, outputs and
command, so the two never drift. Paths are relative to the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stcl.params import TRAIN_STAGES, Params

__all__ = [
    "EVAL_MODELS",
    "RULE_PARAMS",
    "RULE_CODE",
    "Stage",
    "lookup",
    "model_keys",
    "rule_keys",
    "PSEUDO_PARTS",
    "PSEUDO_ROOT",
    "SINGLE_MODELS",
    "synth_out",
    "weights_arg",
    "ensemble_checkpoints",
    "model_path",
    "teacher_checkpoints",
    "train_inputs",
    "prediction_dir",
    "rule_params",
    "dvc_stages",
    "dvc_yaml",
    "REPORT_STAGES",
    "report_command",
]

# Models evaluated on val (Tables 2-4): the three trained ones, the teacher and the final ensemble.
EVAL_MODELS = ("train_stcl", "train_ade", "teacher", "train_student", "ensemble")
# Models that get their own val predictions (single checkpoints).
SINGLE_MODELS = ("train_stcl", "train_ade", "train_student")

_DATA_ROOTS = ("data.vspw_root", "data.coco_root", "data.ade_root")
_INFER = (
    "infer.scales",
    "infer.flip",
    "infer.crop_size",
    "infer.stride",
    "infer.batch_size",
    "infer.workers",
    "infer.amp",
)

# Dotted params.yaml keys each rule reads (DVC `params:` and Snakemake `params:`). A key read by a stage but
# missing here would let a params edit go unnoticed; one listed but unread reruns a stage for nothing.
RULE_PARAMS: dict[str, tuple[str, ...]] = {
    "synth": ("synth",) + _DATA_ROOTS,
    "prepare": ("data",),
    **{s: ("model", "clips", "augment", s) + _DATA_ROOTS for s in TRAIN_STAGES},
    "teacher": ("teacher",) + _INFER + ("data.vspw_root",),
    "pseudo_label": ("pseudo_label", "teacher") + _INFER + ("data",),
    "pseudo_label_init": ("pseudo_label", "teacher") + _INFER + ("data",),
    "pseudo_label_gather": ("pseudo_label",),
    "infer_val": _INFER + ("infer.models", "infer.weights", "data.vspw_root"),
    "infer_test": _INFER + ("infer.models", "infer.weights", "data.vspw_root"),
    "evaluate": ("evaluate", "data.vspw_root", "model.backbone"),  # + the model's recipe (`model_keys`)
    "tables": (),
    "submission": (),
    "report_figures": (),
}

# Source each rule runs (DVC `deps`): editing the code reruns the stage.
_CORE = ("src/stcl/params.py", "src/stcl/cli.py", "src/stcl/resources")
_CMD = "src/stcl/commands/"
_MODEL = ("src/stcl/data", "src/stcl/models")
_INFER_CODE = _CORE + _MODEL + ("src/stcl/infer",)
RULE_CODE: dict[str, tuple[str, ...]] = {
    "synth": _CORE + (_CMD + "synth.py", "src/stcl/data"),
    "prepare": _CORE + (_CMD + "prepare.py", "src/stcl/data"),
    **{s: _CORE + (_CMD + "train.py",) + _MODEL + ("src/stcl/losses", "src/stcl/train") for s in TRAIN_STAGES},
    **{r: _INFER_CODE + (_CMD + "infer.py",) for r in ("teacher", "infer_val", "infer_test")},
    **{r: _INFER_CODE + (_CMD + "pseudo_label.py",) for r in ("pseudo_label", "pseudo_label_init", "pseudo_label_gather")},
    "submission": _CORE + (_CMD + "submit.py", "src/stcl/data", "src/stcl/infer"),
    "evaluate": _CORE + (_CMD + "evaluate.py", "src/stcl/data", "src/stcl/metrics"),
    "tables": _CORE + (_CMD + "tables.py", "src/stcl/metrics"),
    "report_figures": _CORE + (_CMD + "report.py", "src/stcl/report", "src/stcl/metrics"),
}


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """`lookup(config, "data.vspw_root")` → the value at that key path (KeyError names the path)."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params key {dotted!r} not found")
        node = node[part]
    return node


def model_keys(model: str) -> tuple[str, ...]:
    """Keys `stcl evaluate` records as the recipe of `model` in its metrics JSON (model_info)."""
    if model in TRAIN_STAGES:
        return (f"{model}.datasets", f"{model}.init", f"{model}.stcl")
    return {"teacher": ("teacher.members",), "ensemble": ("infer.models",)}.get(model, ())


def rule_keys(rule: str, model: str | None = None) -> tuple[str, ...]:
    """Dotted params keys one job of `rule` reads (`model`: the evaluated model of an evaluate job)."""
    return RULE_PARAMS[rule] + (model_keys(model) if rule == "evaluate" and model else ())


def rule_params(config: dict[str, Any], rule: str, model: str | None = None) -> dict[str, Any]:
    """The params values a job reads, as {dotted key: value} (Snakemake `params:` of the rule)."""
    return {key: lookup(config, key) for key in rule_keys(rule, model)}


def teacher_checkpoints(params: Params) -> tuple[str, ...]:
    return tuple(model_path(m) for m in params.teacher.members)


def ensemble_checkpoints(params: Params) -> tuple[str, ...]:
    return tuple(model_path(m) for m in params.infer.models)


def model_path(stage: str) -> str:
    return f"results/models/{stage}/model.pt"


def prediction_dir(model: str, split: str) -> str:
    return f"results/predictions/{model}/{split}"


@dataclass(frozen=True)
class Stage:
    """One job of the graph: a DVC stage and the Snakemake job of `rule` with the same outputs."""

    name: str
    rule: str
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    plots: tuple[dict[str, Any], ...] = field(default=())
    # Snakemake rules whose jobs together do this stage (default: `rule` alone). DVC runs the pseudo-label
    # shards one after the other in one stage; Snakemake spreads them over jobs (GPUs).
    rules: tuple[str, ...] = ()
    model: str | None = None  # the evaluated model of an evaluate stage (its recipe keys are params too)

    @property
    def snakemake_rules(self) -> tuple[str, ...]:
        return self.rules or (self.rule,)


PSEUDO_ROOT = "results/pseudo/VSPW_pseudo"
# What Snakemake sees of the pseudo-label dataset: the shards' video folders and the gather's index.
PSEUDO_PARTS = (f"{PSEUDO_ROOT}/data", f"{PSEUDO_ROOT}/train.txt")


def synth_out(params: Params) -> str:
    """The folder `stcl synth --out` writes: the common parent of the three data roots.

    Raises ValueError when data.synthetic is true but the roots are not `<out>/VSPW_480p`, `<out>/coco`
    and `<out>/ADEChallengeData2016` (the names `stcl synth` writes).
    """
    d = params.data
    out = d.vspw_root.parent
    if (d.vspw_root.name, d.coco_root, d.ade_root) != ("VSPW_480p", out / "coco", out / "ADEChallengeData2016"):
        raise ValueError(
            "data.synthetic is true, so the data roots must be <dir>/VSPW_480p, <dir>/coco and "
            f"<dir>/ADEChallengeData2016 (what `stcl synth --out <dir>` writes); got {d.vspw_root}, "
            f"{d.coco_root}, {d.ade_root}"
        )
    return str(out)


def weights_arg(weights: tuple[float, ...] | None) -> str:
    """`--weights w1 w2 ...` for `stcl infer`, or nothing for equal weights."""
    return "" if weights is None else " --weights " + " ".join(f"{w:g}" for w in weights)


def train_inputs(params: Params, stage: str, pseudo: tuple[str, ...] = PSEUDO_PARTS) -> tuple[str, ...]:
    """Dataset folders and init checkpoint a training stage reads (its `datasets` mix and `init`)."""
    deps = ["results/prepare/report.json"]
    for mix in params.stage(stage).datasets:
        deps.append(
            {
                "vspw": str(params.data.vspw_root),
                "coco": "results/prepare/coco_semantic",  # label maps; images stay in coco_root
                "ade": str(params.data.ade_root),
            }.get(mix.name, mix.name)
        )
        if mix.name == "pseudo":
            deps[-1:] = pseudo
        if mix.name == "coco":
            deps.append(str(params.data.coco_root))
    init = params.stage(stage).init
    if init is not None:
        deps.append(model_path(init))
    return tuple(dict.fromkeys(deps))


def dvc_stages(params: Params, params_file: str = "params.yaml") -> list[Stage]:
    """Every job of the default target plus the submission, in dependency order."""
    p = f"--params {params_file}"
    vspw = str(params.data.vspw_root)
    roots = (vspw, str(params.data.coco_root), str(params.data.ade_root))
    stages: list[Stage] = []
    if params.data.synthetic:
        stages.append(Stage("synth", "synth", f"stcl synth {p} --out {synth_out(params)}", (), roots))
    stages.append(
        Stage(
            "prepare",
            "prepare",
            f"stcl prepare {p} --out results/prepare",
            roots,
            ("results/prepare/coco_semantic", "results/prepare/unlabeled.txt", "results/prepare/report.json"),
        )
    )
    for stage in TRAIN_STAGES:
        if stage == "train_student":
            continue
        stages.append(_train_stage(params, stage, p))
    members = teacher_checkpoints(params)
    stages.append(
        Stage(
            "teacher",
            "teacher",
            f"stcl infer {p} --checkpoints {' '.join(members)}{weights_arg(params.teacher.weights)}"
            f" --split val --out {prediction_dir('teacher', 'val')}",
            (vspw,) + members,
            (prediction_dir("teacher", "val"),),
        )
    )
    n = params.pseudo_label.shards
    shard_cmds = [f"stcl pseudo-label {p} --shard {i}/{n}" for i in range(n)]
    stages.append(
        Stage(
            "pseudo_label",
            "pseudo_label",
            " && ".join(shard_cmds + [f"stcl pseudo-label {p} --gather"]),
            ("results/prepare/unlabeled.txt",) + members,
            (PSEUDO_ROOT, "results/pseudo/shards", "results/pseudo/stats.json"),
            rules=("pseudo_label_init", "pseudo_label", "pseudo_label_gather"),
        )
    )
    stages.append(_train_stage(params, "train_student", p))
    for model in SINGLE_MODELS:
        out = prediction_dir(model, "val")
        stages.append(
            Stage(
                f"infer_val-{model}",
                "infer_val",
                f"stcl infer {p} --checkpoints {model_path(model)} --split val --out {out}",
                (vspw, model_path(model)),
                (out,),
            )
        )
    ensemble = ensemble_checkpoints(params)
    for split, rule in (("val", "infer_val"), ("test", "infer_test")):
        out = prediction_dir("ensemble", split)
        stages.append(
            Stage(
                f"{rule}-ensemble" if rule == "infer_val" else rule,
                rule,
                f"stcl infer {p} --checkpoints {' '.join(ensemble)}{weights_arg(params.infer.weights)}"
                f" --split {split} --out {out}",
                (vspw,) + ensemble,
                (out,),
            )
        )
    metrics = []
    for model in EVAL_MODELS:
        out = f"results/metrics/{model}.json"
        metrics.append(out)
        pred = prediction_dir(model, "val")
        stages.append(
            Stage(
                f"evaluate-{model}",
                "evaluate",
                f"stcl evaluate {p} --gt-root {vspw} --pred-root {pred} --split val --out {out}",
                (vspw, pred),
                (),
                metrics=(out,),
                model=model,
            )
        )
    stages.append(
        Stage(
            "tables",
            "tables",
            f"stcl tables {p} --metrics-dir results/metrics --out-dir results/tables",
            tuple(metrics),
            ("results/tables/tables.md", "results/tables/tables.parquet"),
            plots=({"results/tables/per_class_iou.png": {}},),
        )
    )
    stages.append(
        Stage(
            "report_figures",
            "report_figures",
            report_command(vspw),
            (
                *metrics,
                *(f"results/models/{s}/train_metrics.json" for s in REPORT_STAGES),
                prediction_dir("ensemble", "val"),
                "results/pseudo/stats.json",
                vspw,
            ),
            ("results/report",),
        )
    )
    test_pred = prediction_dir("ensemble", "test")
    stages.append(
        Stage(
            "submission",
            "submission",
            f"stcl submit {p} --pred {test_pred} --out results/test_submission.zip",
            (test_pred,),
            ("results/test_submission.zip",),
        )
    )
    return stages


# Stages whose training curves the report draws (`stcl report`, workflow/rules/report.smk).
REPORT_STAGES = ("pretrain_coco", "train_stcl", "train_ade", "train_student")


def report_command(vspw: str) -> str:
    """The `stcl report` command of the run: curves, VC per val video and views of the ensemble, pseudo labels."""
    logs = " ".join(f"--train-log {s}=results/models/{s}/dvclive" for s in REPORT_STAGES)
    return (
        f"stcl report --out-dir results/report --metrics-dir results/metrics {logs} --gt-root {vspw} --split val"
        f" --pred-root {prediction_dir('ensemble', 'val')} --pred-model ensemble --pseudo-stats results/pseudo/stats.json"
    )


def _train_stage(params: Params, stage: str, p: str) -> Stage:
    out = f"results/models/{stage}"
    return Stage(
        stage,
        stage,
        f"stcl train {p} --stage {stage} --out {out}",
        train_inputs(params, stage, pseudo=(PSEUDO_ROOT,)),
        # train_metrics.json is a plain output: `dvc metrics` stays the evaluation (mIoU, WIoU, VC8, VC16).
        (model_path(stage), f"{out}/train_metrics.json"),
        plots=({f"{out}/dvclive/plots/metrics": {"x": "step"}},),
    )


def dvc_yaml(params: Params, params_file: str = "params.yaml") -> dict[str, Any]:
    """The content of dvc.yaml: stages with cmd, deps (data + code), params, outs, metrics and plots."""
    out: dict[str, Any] = {}
    for st in dvc_stages(params, params_file):
        entry: dict[str, Any] = {"cmd": st.cmd}
        deps = list(st.deps) + list(RULE_CODE[st.rule])
        if deps:
            entry["deps"] = deps
        keys = rule_keys(st.rule, st.model)
        if keys:
            entry["params"] = list(keys) if params_file == "params.yaml" else [{params_file: list(keys)}]
        if st.outs:
            entry["outs"] = list(st.outs)
        if st.metrics:
            entry["metrics"] = list(st.metrics)
        if st.plots:
            entry["plots"] = [next(iter(pl)) if not next(iter(pl.values())) else pl for pl in st.plots]
        out[st.name] = entry
    return {"stages": out}


def snakemake_schema() -> dict[str, Any]:
    """The JSON schema Snakemake's `validate(config, ...)` reads (workflow/schemas/params.schema.json)."""
    from stcl.params import params_json_schema

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "params.yaml of stcl; generated from stcl.params by workflow/generate.py, do not edit",
        **params_json_schema(),
    }
