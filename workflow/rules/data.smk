# Datasets: the embedded default is generated (data.synthetic: true); real data is used in place otherwise.


if PARAMS.data.synthetic:
    # `stcl synth --out DIR` writes DIR/VSPW_480p, DIR/coco and DIR/ADEChallengeData2016: params validation
    # (`stcl.params.DataParams`) holds the three roots to that layout.

    describe("synth", "cpu")

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
            "stcl synth --params {params.file:q} --out {params.out:q} > {log:q} 2>&1"


describe("prepare", "cpu", splits=("train", "val", "test"))


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
        reads=reads("data"),
        out=lambda wildcards, output: os.path.dirname(output.report),
    shell:
        "stcl prepare --params {params.file:q} --vspw {input.vspw:q} --coco {input.coco:q} --ade {input.ade:q}"
        " --out {params.out:q} > {log:q} 2>&1"
