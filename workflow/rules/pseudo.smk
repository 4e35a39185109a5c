# Teacher (Table 4) and its pseudo labels on the unlabeled 480P frames (paper 2.3), one job per shard.


rule teacher:
    input:
        vspw=VSPW,
        checkpoints=teacher_checkpoints(PARAMS),
    output:
        directory(prediction_dir("teacher", "val")),
    log:
        "results/logs/teacher.log",
    benchmark:
        "results/benchmarks/teacher.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=reads("teacher"),
        weights=weights_arg(PARAMS.teacher.weights),
    shell:
        "stcl infer --params {params.file} --checkpoints {input.checkpoints}{params.weights}"
        " --split val --out {output} > {log} 2>&1"


# The shards write their videos into one dataset folder, which this job (re)creates empty whenever the
# teacher or the pseudo-label settings change, so no shard resumes from labels of an older teacher.
rule pseudo_label_init:
    input:
        unlabeled="results/prepare/unlabeled.txt",
        checkpoints=teacher_checkpoints(PARAMS),
    output:
        directory(PSEUDO_PARTS[0]),
    log:
        "results/logs/pseudo_label_init.log",
    localrule: True
    conda:
        "../envs/stcl.yaml"
    params:
        reads=reads("pseudo_label_init"),
    shell:
        "mkdir -p {output} > {log} 2>&1"


rule pseudo_label:
    input:
        folder=PSEUDO_PARTS[0],
        unlabeled="results/prepare/unlabeled.txt",
        checkpoints=teacher_checkpoints(PARAMS),
    output:
        "results/pseudo/shards/{shard}-of-{n}.json",
    log:
        "results/logs/pseudo_label/{shard}-of-{n}.log",
    benchmark:
        "results/benchmarks/pseudo_label/{shard}-of-{n}.tsv"
    wildcard_constraints:
        shard=r"\d+",
        n=r"\d+",
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=reads("pseudo_label"),
    shell:
        "stcl pseudo-label --params {params.file} --shard {wildcards.shard}/{wildcards.n}"
        " > {log} 2>&1"


rule pseudo_label_gather:
    input:
        expand(
            "results/pseudo/shards/{shard}-of-{n}.json", shard=range(SHARDS), n=SHARDS
        ),
    output:
        index=PSEUDO_PARTS[1],
        stats="results/pseudo/stats.json",
    log:
        "results/logs/pseudo_label_gather.log",
    benchmark:
        "results/benchmarks/pseudo_label_gather.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("default")
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        reads=reads("pseudo_label_gather"),
    shell:
        "stcl pseudo-label --params {params.file} --gather > {log} 2>&1"
