# Shared helpers of the rules: params validation, the params keys each rule reads, the results/ layout,
# resources from params.yaml's `cluster` section. The Snakefile and these rules are the only description of
# the pipeline: dvc.yaml is generated from Snakemake's own jobs (workflow/generate.py).

import os
import shlex
import sys
from pathlib import Path

from stcl import roles
from stcl.ablations import TABLE_ABLATIONS, ablation, ablation_params, table_ablations
from stcl.params import TRAIN_STAGES, ParamsError, load_params
from stcl.plan.graph import RuleMeta

# The params file every `stcl` command reads: params.yaml, or the last --configfile given (which must then
# be a complete params file, e.g. from `stcl params --preset paper`).
PARAMS_FILE = (
    workflow.overwrite_configfiles[-1]
    if workflow.overwrite_configfiles
    else "params.yaml"
)

# Read and validated by stcl itself, as every `stcl` command reads it (`stcl params` prints the same lines):
# every fault on one line naming its key path. `--config KEY=VALUE` is not used: commands read the file.
try:
    PARAMS = load_params(PARAMS_FILE)
except ParamsError as err:
    sys.exit(f"stcl: {err}")
VALUES = PARAMS.model_dump(mode="json")


# `describe(name, kind, ...)` just above each rule says once what it is (stcl.plan.graph.RuleMeta), namely
# its kind, the DVC stage and `stcl plan` row its jobs share and the splits a CPU job reads. generate.py
# (dvc.yaml's stages) and `stcl plan` (its rows and how each is projected) read it from the DAG's jobs. Kept
# out of `params:`, whose every value is part of Snakemake's params rerun trigger. (Names here land in
# snakemake.workflow's module globals, which the Snakefile runs in; `RuleInfo` there is Snakemake's own.)
RULE_META = {}


def describe(name, kind, dvc_stage=None, plan_row=None, splits=()):
    """Declare what the rule `name` is (stcl.plan.graph.RuleMeta); each rule once."""
    if name in RULE_META:
        raise ValueError(f"{name}: described twice (workflow/rules/*.smk)")
    RULE_META[name] = RuleMeta(kind, dvc_stage, plan_row, tuple(splits))


envvars:
    "PATH",


# Jobs run the `stcl` and `torchrun` installed beside the Python running Snakemake (.venv/bin), so
# `.venv/bin/snakemake` works without activating the venv (Slurm jobs get this PATH too).
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
)

VSPW = str(PARAMS.data.vspw_root)
COCO = str(PARAMS.data.coco_root)
ADE = str(PARAMS.data.ade_root)
# Where the unlabeled frames of the pseudo labels are read (data.unlabeled): VSPW or a folder of videos.
UNLABELED_FRAMES = (
    str(PARAMS.data.unlabeled.folder)
    if PARAMS.data.unlabeled.source == "folder"
    else VSPW
)
SHARDS = PARAMS.pseudo_label.shards
PSEUDO = "results/pseudo/VSPW_pseudo"  # the pseudo-label dataset (VSPW layout)

# Models evaluated on val (Tables 2-4): the three trained ones, the teacher and the final ensemble.
EVAL_MODELS = roles.EVALUATED
# Keys every inference job reads (sliding window, TTA, batching).
INFER_KEYS = (
    "infer.scales",
    "infer.flip",
    "infer.crop_size",
    "infer.stride",
    "infer.batch_size",
    "infer.workers",
    "infer.amp",
)


def lookup(values, dotted):
    """`lookup(VALUES, "data.vspw_root")` → the value at that key path (KeyError names the path)."""
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params key {dotted!r} not found")
        node = node[part]
    return node


def reads(*keys):
    """{dotted key: value} of the params read by a job: its `params: reads=` rerun trigger and DVC `params:`."""
    return {key: lookup(VALUES, key) for key in keys}


def model_path(stage):
    return f"results/models/{stage}/model.pt"


def train_inputs(params, stage):
    """Named inputs of a training job: the datasets its `datasets` mix reads and its `init` weights."""
    spec = params.stage(stage)
    inputs = {}
    for mix in spec.datasets:
        if mix.name == "vspw":
            inputs["vspw"] = str(params.data.vspw_root)
        elif mix.name == "coco":
            inputs["coco"] = str(params.data.coco_root)
            inputs["coco_semantic"] = "results/prepare/coco_semantic"
        elif mix.name == "ade":
            inputs["ade"] = str(params.data.ade_root)
        elif mix.name == "pseudo":
            # the shards' videos and the gather step's index
            inputs["pseudo"] = f"{PSEUDO}/data"
            inputs["pseudo_index"] = f"{PSEUDO}/train.txt"
    if spec.init is not None:
        inputs["init"] = model_path(spec.init)
    return inputs


_TRAIN_FLAGS = {
    "init": "--init",
    "vspw": "--vspw",
    "coco": "--coco",
    "coco_semantic": "--coco-semantic",
    "ade": "--ade",
}


def train_args(wildcards, input):
    """`stcl train` arguments for the job's named inputs (each path quoted)."""
    names = set(input.keys())
    args = [
        f"{flag} {shlex.quote(input[k])}"
        for k, flag in _TRAIN_FLAGS.items()
        if k in names
    ]
    if "pseudo_index" in names:
        args.append(f"--pseudo {shlex.quote(os.path.dirname(input.pseudo_index))}")
    return " ".join(args)


def model_keys(model):
    """Keys `stcl evaluate` records as the recipe of `model` in its metrics JSON (`stcl.roles`)."""
    return roles.model_keys(model)


def cluster_resources(kind):
    """Slurm resources of one kind of job, from params.yaml `cluster.<kind>` (default, train, infer)."""
    r = getattr(PARAMS.cluster, kind)
    res = {
        "gpu": r.gpus,
        "mem_mb": r.mem_mb,
        "runtime": r.runtime,
        "slurm_partition": r.partition or "",
        "slurm_account": r.account or "",
        # One task per job whatever the GPU count (plugin issues #316/#459): torchrun spawns the ranks.
        "tasks": 0 if r.gpus else 1,
    }
    if r.gpus:
        res["cpus_per_gpu"] = r.cpus_per_gpu
    else:
        res["cpus_per_task"] = r.cpus
    if kind == "train":
        res["nodes"] = r.nodes
    if r.nodes > 1:
        res.update(multi_node_resources(r))
    return res


def multi_node_resources(r):
    """One job over `r.nodes` nodes with `r.gpus` GPUs each; the rule's command runs `srun` (the plugin's
    `mpi` path: Snakemake runs in the batch script, not under `srun -n1`). `gres` asks for GPUs per node
    (`gpu` would be the job's total, spread as Slurm likes). Tasks: `--ntasks-per-node=G`, or with one GPU
    per node `--ntasks=N` (the plugin refuses tasks_per_node 1); `tasks_per_gpu: 0` keeps `tasks` from
    becoming `--ntasks-per-gpu`."""
    return {
        "gpu": 0,
        "gres": f"gpu:{r.gpus}",
        "mpi": "srun",
        "tasks_per_node": r.gpus if r.gpus > 1 else 0,
        "tasks": 0 if r.gpus > 1 else r.nodes,
        "tasks_per_gpu": 0,
    }


def cluster_threads(kind):
    r = getattr(PARAMS.cluster, kind)
    return r.gpus * r.cpus_per_gpu if r.gpus else r.cpus


def train_launcher(wildcards, resources):
    """How a training job starts, from the job's resources alone (no names of rules): across nodes one `srun`
    task per GPU (ranks from SLURM_*: src/stcl/train/slurm_env.py); with GPUs one torchrun with the job's GPU
    count; without, one plain process. The executor caps the resources: the local profile offers `gpu: 0,
    nodes: 1`, so every training rule runs plainly there; Slurm jobs get params' cluster.train.
    """
    if resources.get("nodes", 1) > 1:
        r = PARAMS.cluster.train
        return (
            f"srun --nodes={resources.nodes} --ntasks-per-node={r.gpus} --cpus-per-task={r.cpus_per_gpu}"
            f" --gres=gpu:{r.gpus} --kill-on-bad-exit=1 stcl"
        )
    if resources.gpu > 0:
        return f"torchrun --standalone --nproc-per-node {resources.gpu} -m stcl"
    return "stcl"


def ablation_train_inputs(wildcards):
    """Data and init checkpoint of an ablation's training run (its own params, see src/stcl/ablations.py)."""
    return train_inputs(
        ablation_params(PARAMS, wildcards.name), ablation(wildcards.name).stage
    )


# Inference passes (workflow/rules/infer.smk): one per split, each model once per frame.
INFER_SHARDS = PARAMS.infer.shards
# Each output's members, weights and params keys, and the outputs of each split: `stcl.roles`.
PREDICTORS = roles.outputs(PARAMS)
SPLIT_OUTPUTS = roles.SPLIT_OUTPUTS


def split_members(split):
    """The trained stages a split's pass runs (each once per frame)."""
    return roles.split_members(PARAMS, split)


def split_checkpoints(wildcards):
    return [model_path(m) for m in split_members(wildcards.split)]


def split_keys(wildcards):
    return reads(
        *INFER_KEYS,
        *(k for o in SPLIT_OUTPUTS[wildcards.split] for k in PREDICTORS[o].keys),
    )


def output_args(wildcards, input):
    """`--output=NAME=MEMBERS[:WEIGHTS]=DIR` of every output of the split, DIR inside the split's folder."""
    args = []
    for name in SPLIT_OUTPUTS[wildcards.split]:
        members, weights = PREDICTORS[name].members, PREDICTORS[name].weights
        spec = ",".join(members) + (
            ":" + ",".join(str(w) for w in weights) if weights else ""
        )
        args.append(f"--output={name}={spec}={input.folder}/{name}")
    return " ".join(shlex.quote(a) for a in args)


def named_checkpoints(members, paths):
    """`--checkpoint=STAGE=MODEL.pt` of each model (`stcl infer`, `stcl pseudo_label`)."""
    return " ".join(
        shlex.quote(f"--checkpoint={m}={path}")
        for m, path in zip(members, paths, strict=True)
    )


def checkpoint_args(wildcards, input):
    """`--checkpoint=STAGE=MODEL.pt` of every model the split's pass runs."""
    return named_checkpoints(split_members(wildcards.split), input.checkpoints)


# TC (flow.smk): the flows folder evaluate and the report read, or nothing when no RAFT file is set (the
# embedded chain has none).
TC_FLOWS = ["results/flow/val"] if PARAMS.tc.raft_weights is not None else []


def flows_option(wildcards, input):
    """`--flows <folder>` for a rule whose input `flows` is TC_FLOWS; nothing when TC is off."""
    return f"--flows {shlex.quote(input.flows[0])}" if input.flows else ""
