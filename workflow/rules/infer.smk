# Inference (paper 3.4): sliding window, multi-scale + flip. One pass per split, in `infer.shards` jobs: each
# model runs once per frame and every output of the split is written from its probabilities (on val: each
# trained model, the teacher and the final ensemble; on test: the ensemble). The submission zip of the
# ensemble's test predictions.


# The shards write their videos into one folder per split, which this job (re)creates empty whenever a model
# or an inference setting changes, so no shard resumes from predictions of an older model.
describe("infer_init", "cpu", dvc_stage="infer-{split}", plan_row="infer_{split}")


rule infer_init:
    input:
        checkpoints=split_checkpoints,
    output:
        directory("results/predictions/{split}"),
    log:
        "results/logs/infer/{split}-init.log",
    wildcard_constraints:
        split="train|val|test",
    localrule: True
    conda:
        "../envs/stcl.yaml"
    params:
        reads=split_keys,
    shell:
        "mkdir -p {output:q} > {log:q} 2>&1"


describe("infer", "infer", dvc_stage="infer-{split}", plan_row="infer_{split}")


rule infer:
    input:
        folder="results/predictions/{split}",
        vspw=VSPW,
        checkpoints=split_checkpoints,
    output:
        "results/infer/{split}/{shard}-of-{n}.json",
    log:
        "results/logs/infer/{split}-{shard}-of-{n}.log",
    benchmark:
        "results/benchmarks/infer/{split}-{shard}-of-{n}.tsv"
    wildcard_constraints:
        split="train|val|test",
        shard=r"\d+",
        n=r"\d+",
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=split_keys,
        models=checkpoint_args,
        outputs=output_args,
    shell:
        "stcl infer --params {params.file:q} --root {input.vspw:q} --split {wildcards.split} {params.models}"
        " {params.outputs} --shard {wildcards.shard}/{wildcards.n} --record {output:q} > {log:q} 2>&1"


describe("infer_gather", "cpu", dvc_stage="infer-{split}", plan_row="infer_{split}")


rule infer_gather:
    input:
        folder="results/predictions/{split}",
        vspw=VSPW,
        records=lambda wildcards: expand(
            "results/infer/{split}/{shard}-of-{n}.json",
            split=wildcards.split,
            shard=range(INFER_SHARDS),
            n=INFER_SHARDS,
        ),
    output:
        "results/infer/{split}.json",
    log:
        "results/logs/infer/{split}-gather.log",
    wildcard_constraints:
        split="train|val|test",
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        reads=split_keys,
        outputs=output_args,
    shell:
        "stcl infer --params {params.file:q} --root {input.vspw:q} --split {wildcards.split} {params.outputs}"
        " --gather --record {input.records:q} --manifest {output:q} > {log:q} 2>&1"


describe("submit", "cpu")


rule submit:
    input:
        vspw=VSPW,
        preds="results/predictions/test",
        manifest="results/infer/test.json",
    output:
        "results/test_submission.zip",
    log:
        "results/logs/submit.log",
    benchmark:
        "results/benchmarks/submit.tsv"
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        pred=lambda wildcards, input: f"{input.preds}/ensemble",
    shell:
        "stcl submit --pred {params.pred:q} --root {input.vspw:q} --split test --out {output:q} > {log:q} 2>&1"
