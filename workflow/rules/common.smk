# Shared helpers: config validation, params subsets, resources from params.yaml's `cluster` section.
# Every rule calls one `stcl` command; the paths and commands are those of src/stcl/workflow_graph.py, from
# which dvc.yaml is generated (tests/test_workflow_graph.py checks both agree job by job).

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from snakemake.common.configfile import load_configfile

from stcl.ablations import TABLE_ABLATIONS, ablation, ablation_params
from stcl.params import parse_params
from stcl.workflow_graph import (
    EVAL_MODELS,
    PSEUDO_PARTS,
    SINGLE_MODELS,
    ensemble_checkpoints,
    model_path,
    prediction_dir,
    rule_params,
    snakemake_schema,
    teacher_checkpoints,
    synth_out,
    train_inputs,
    weights_arg,
)

# Types, ranges and defaults come from the schema generated from stcl.params (workflow/generate.py);
# parse_params then applies the cross-field checks the schema cannot express.
if (
    load_configfile(workflow.source_path("../schemas/params.schema.json"))
    != snakemake_schema()
):
    raise WorkflowError(
        "workflow/schemas/params.schema.json is older than src/stcl/params.py: "
        "run `.venv/bin/python workflow/generate.py`"
    )
validate(config, schema="../schemas/params.schema.json")
PARAMS = parse_params(config, "params.yaml")

# The params file every `stcl` command reads: params.yaml, or the last --configfile given (which must then
# be a complete params file, e.g. from `stcl params --preset paper`).
PARAMS_FILE = (
    workflow.overwrite_configfiles[-1]
    if workflow.overwrite_configfiles
    else "params.yaml"
)


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
SHARDS = PARAMS.pseudo_label.shards


def reads(rule_name):
    """The params keys read by `rule_name` (Snakemake's `params` rerun trigger watches exactly these)."""
    return rule_params(config, rule_name)


def evaluate_reads(wildcards):
    """An evaluate job's keys: the metrics JSON also records the evaluated model's recipe."""
    return rule_params(config, "evaluate", wildcards.model)


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
    return res


def cluster_threads(kind):
    r = getattr(PARAMS.cluster, kind)
    return r.gpus * r.cpus_per_gpu if r.gpus else r.cpus


def train_launcher(wildcards, resources):
    """One torchrun per job with the job's GPU count; a plain process on CPU (the local profile)."""
    if resources.gpu > 0:
        return f"torchrun --standalone --nproc-per-node {resources.gpu} -m stcl"
    return "stcl"


def val_checkpoints(wildcards):
    """Checkpoints of one val prediction: a single model, or the final ensemble (infer.models)."""
    if wildcards.model == "ensemble":
        return list(ensemble_checkpoints(PARAMS))
    return [model_path(wildcards.model)]


def ablation_train_inputs(wildcards):
    """Data and init checkpoint of an ablation's training run (its own params, see src/stcl/ablations.py)."""
    spec = ablation(wildcards.name)
    return list(train_inputs(ablation_params(PARAMS, wildcards.name), spec.stage))
