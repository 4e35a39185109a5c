# Datasets: the embedded default is generated (data.synthetic: true); real data is used in place otherwise.


if PARAMS.data.synthetic:

    rule synth:
        output:
            vspw=directory(VSPW),
            coco=directory(COCO),
            ade=directory(ADE),
        log:
            "results/logs/synth.log",
        benchmark:
            "results/benchmarks/synth.tsv"
        conda:
            "../envs/stcl.yaml"
        resources:
            **cluster_resources("default"),
        params:
            file=PARAMS_FILE,
            reads=reads("synth"),
        shell:
            "stcl synth --params {params.file} > {log} 2>&1"


rule prepare:
    input:
        vspw=VSPW,
        coco=COCO,
        ade=ADE,
    output:
        coco_semantic=directory("results/prepare/coco_semantic"),
        unlabeled="results/prepare/unlabeled.txt",
        report="results/prepare/report.json",
    log:
        "results/logs/prepare.log",
    benchmark:
        "results/benchmarks/prepare.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("default")
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        reads=reads("prepare"),
    shell:
        "stcl prepare --params {params.file} > {log} 2>&1"
