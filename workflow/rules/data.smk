# Datasets: the embedded default is generated (data.synthetic: true); real data is used in place otherwise.


if PARAMS.data.synthetic:
    synth_out(
        PARAMS
    )  # the data roots must be the folders `stcl synth --out <dir>` writes

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
            out=lambda wildcards, output: os.path.dirname(output.vspw),
        shell:
            "stcl synth --params {params.file} --out {params.out} > {log} 2>&1"


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
        "stcl prepare --params {params.file} --out results/prepare > {log} 2>&1"
