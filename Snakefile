# stcl: the VSPW 2021 winning recipe as a workflow; the one description of the stage graph (ARCHITECTURE.md).
# dvc.yaml is generated from these rules: .venv/bin/python workflow/generate.py
#   .venv/bin/snakemake --profile local                              # the whole chain here (CPU)
#   .venv/bin/snakemake --profile slurm results/test_submission.zip  # on a Slurm GPU cluster
# Every knob is in params.yaml; every rule runs one `stcl` command (also usable by hand).

import sys

from snakemake.utils import min_version

from stcl import runlock

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pseudo.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/test_submission.zip",
        "results/tables/tables.md",
        expand("results/metrics/{model}.json", model=EVAL_MODELS),
        "results/report/index.html",


onstart:
    # One workflow run at a time: this run holds DVC's repository lock until it ends (src/stcl/runlock.py).
    try:
        runlock.hold_for_snakemake(".")
    except runlock.RepositoryInUseError as err:
        print(f"snakemake: error: {err}", file=sys.stderr)
        raise SystemExit(runlock.EXIT_UNAVAILABLE)
    # On a cluster, the work, GPU time and memory of every job (`stcl plan`) before anything is submitted.
    if getattr(workflow.executor_plugin, "name", None) == "slurm":
        shell("stcl plan --params {PARAMS_FILE:q}")


onsuccess:
    shell(
        "stcl summary --params {PARAMS_FILE:q} --submission results/test_submission.zip"
        " --tables results/tables/tables.md --benchmarks results/benchmarks --metrics-dir results/evaluate"
    )
