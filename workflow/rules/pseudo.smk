# Pseudo labels of the teacher on the unlabeled 480P frames (paper 2.3), one job per shard, then a gather.
# The teacher's own val predictions and metrics are `infer`/`evaluate` jobs of the model `teacher`.

TEACHER = [model_path(m) for m in PARAMS.teacher.members]
# The teacher's TTA: `pseudo_label.scales`/`flip` replace infer's (stcl.infer.multiscale.pseudo_label_tta), so
# editing the val/test scales or flip does not redo the pseudo labels and the student.
PSEUDO_KEYS = ("pseudo_label", "teacher", "data.unlabeled") + tuple(
    k for k in INFER_KEYS if k not in ("infer.scales", "infer.flip")
)


# The shards write their videos into one dataset folder, which this job (re)creates empty whenever the
# teacher or the pseudo-label settings change, so no shard resumes from labels of an older teacher.
describe("pseudo_label_init", "cpu", dvc_stage="pseudo_label", plan_row="pseudo_label")


rule pseudo_label_init:
    input:
        unlabeled="results/prepare/unlabeled.txt",
        checkpoints=TEACHER,
    output:
        directory(f"{PSEUDO}/data"),
    log:
        "results/logs/pseudo_label_init.log",
    localrule: True
    conda:
        "../envs/stcl.yaml"
    params:
        reads=reads(*PSEUDO_KEYS),
    shell:
        "mkdir -p {output:q} > {log:q} 2>&1"


describe("pseudo_label", "infer", dvc_stage="pseudo_label", plan_row="pseudo_label")


rule pseudo_label:
    input:
        folder=f"{PSEUDO}/data",
        unlabeled="results/prepare/unlabeled.txt",
        frames=UNLABELED_FRAMES,
        checkpoints=TEACHER,
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
        reads=reads(*PSEUDO_KEYS),
        dataset=lambda wildcards, input: os.path.dirname(input.folder),
        models=lambda wildcards, input: named_checkpoints(
            PARAMS.teacher.members, input.checkpoints
        ),
    shell:
        "stcl pseudo_label --params {params.file:q} --root {input.frames:q} {params.models}"
        " --shard {wildcards.shard}/{wildcards.n} --unlabeled {input.unlabeled:q}"
        " --dataset {params.dataset:q} --record {output:q} > {log:q} 2>&1"


describe(
    "pseudo_label_gather", "cpu", dvc_stage="pseudo_label", plan_row="pseudo_label"
)


rule pseudo_label_gather:
    input:
        unlabeled="results/prepare/unlabeled.txt",
        records=expand(
            "results/pseudo/shards/{shard}-of-{n}.json", shard=range(SHARDS), n=SHARDS
        ),
    output:
        index=f"{PSEUDO}/train.txt",
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
        reads=reads("pseudo_label"),
        dataset=lambda wildcards, output: os.path.dirname(output.index),
    shell:
        "stcl pseudo_label --params {params.file:q} --gather --unlabeled {input.unlabeled:q}"
        " --dataset {params.dataset:q} --record {input.records:q} --stats {output.stats:q} > {log:q} 2>&1"
