# Metrics (official VSPW mIoU/WIoU/VC8/VC16) per model on val, and the paper's tables.


rule evaluate:
    input:
        vspw=VSPW,
        pred="results/predictions/{model}/val",
    output:
        "results/metrics/{model}.json",
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
        reads=evaluate_reads,
    shell:
        "stcl evaluate --params {params.file} --gt-root {input.vspw} --pred-root {input.pred}"
        " --split val --out {output} > {log} 2>&1"


rule tables:
    input:
        expand("results/metrics/{model}.json", model=EVAL_MODELS),
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
        reads=reads("tables"),
    shell:
        "stcl tables --params {params.file} --metrics-dir results/metrics --out-dir results/tables"
        " > {log} 2>&1"
