# Inference (paper 3.4): sliding window, multi-scale + flip; any trained model, the teacher or the final
# three-model ensemble on val or test. The submission zip of the ensemble's test predictions.

# model → (checkpoints, ensemble weights, params keys naming them)
PREDICTORS = {
    **{
        s: ([model_path(s)], None, ())
        for s in TRAIN_STAGES
        if PARAMS.stage(s).label_space == "vspw"  # COCO-pre predicts COCO classes
    },
    "teacher": (TEACHER, PARAMS.teacher.weights, ("teacher",)),
    "ensemble": (
        [model_path(m) for m in PARAMS.infer.models],
        PARAMS.infer.weights,
        ("infer.models", "infer.weights"),
    ),
}


rule infer:
    input:
        vspw=VSPW,
        checkpoints=lambda wildcards: PREDICTORS[wildcards.model][0],
    output:
        directory("results/predictions/{model}/{split}"),
    log:
        "results/logs/infer/{model}-{split}.log",
    benchmark:
        "results/benchmarks/infer/{model}-{split}.tsv"
    wildcard_constraints:
        model="|".join(PREDICTORS),
        split="train|val|test",
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=lambda wildcards: reads(*INFER_KEYS, *PREDICTORS[wildcards.model][2]),
        weights=lambda wildcards: weights_arg(PREDICTORS[wildcards.model][1]),
    shell:
        "stcl infer --params {params.file:q} --checkpoints {input.checkpoints:q}{params.weights}"
        " --root {input.vspw:q} --split {wildcards.split} --out {output:q} > {log:q} 2>&1"


rule submit:
    input:
        vspw=VSPW,
        pred="results/predictions/ensemble/test",
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
    shell:
        "stcl submit --pred {input.pred:q} --root {input.vspw:q} --split test --out {output:q} > {log:q} 2>&1"
