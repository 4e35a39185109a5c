# Metrics (official VSPW mIoU/WIoU/VC8/VC16) per model on val, and the paper's tables.


describe("evaluate", "cpu", plan_row="evaluate", splits=("val",))


rule evaluate:
    input:
        vspw=VSPW,
        preds="results/predictions/val",
        manifest="results/infer/val.json",
        flows=TC_FLOWS,  # RAFT flows for TC (flow.smk); none without tc.raft_weights: TC skipped
    output:
        metrics="results/metrics/{model}.json",  # headline figures: `dvc metrics show/diff`
        details="results/evaluate/{model}.json",  # per-class IoU, pixel counts, run details
    log:
        "results/logs/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}.tsv"
    wildcard_constraints:
        model="|".join(EVAL_MODELS),
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("default")
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        pred=lambda wildcards, input: f"{input.preds}/{wildcards.model}",
        tc=flows_option,
        # the metrics JSON also records the evaluated model's recipe; with flows, TC checks they are the
        # RAFT file's
        reads=lambda wildcards: reads(
            "evaluate",
            "model.backbone",
            *model_keys(wildcards.model),
            *(["tc.raft_weights"] if TC_FLOWS else []),
        ),
    shell:
        "stcl evaluate --params {params.file:q} --gt-root {input.vspw:q} --pred-root {params.pred:q}"
        " --split val --model {wildcards.model} --out {output.metrics:q} --details {output.details:q}"
        " {params.tc} > {log:q} 2>&1"


describe("tables", "cpu")


rule tables:
    input:
        expand("results/evaluate/{model}.json", model=EVAL_MODELS),
    output:
        md=report(
            "results/tables/tables.md",
            caption="../report/tables.rst",
            category="Metrics",
        ),
        parquet="results/tables/tables.parquet",
        plot=report(
            "results/tables/per_class_iou.png",
            caption="../report/per_class_iou.rst",
            category="Metrics",
        ),
    log:
        "results/logs/tables.log",
    benchmark:
        "results/benchmarks/tables.tsv"
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        metrics=lambda wildcards, input: os.path.dirname(input[0]),
        out=lambda wildcards, output: os.path.dirname(output.md),
    shell:
        "stcl tables --params {params.file:q} --metrics-dir {params.metrics:q} --out-dir {params.out:q}"
        " > {log:q} 2>&1"
