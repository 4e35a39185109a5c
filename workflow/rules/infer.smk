# Inference (paper 3.4): sliding window, multi-scale + flip, three-model ensemble; the submission zip.


rule infer_val:
    input:
        vspw=VSPW,
        checkpoints=val_checkpoints,
    output:
        directory("results/predictions/{model}/val"),
    log:
        "results/logs/infer_val/{model}.log",
    benchmark:
        "results/benchmarks/infer_val/{model}.tsv"
    wildcard_constraints:
        model="|".join(SINGLE_MODELS + ("ensemble",)),
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=reads("infer_val"),
        weights=lambda wildcards: (
            weights_arg(PARAMS.infer.weights) if wildcards.model == "ensemble" else ""
        ),
    shell:
        "stcl infer --params {params.file} --checkpoints {input.checkpoints}{params.weights} --split val"
        " --out {output} > {log} 2>&1"


rule infer_test:
    input:
        vspw=VSPW,
        checkpoints=ensemble_checkpoints(PARAMS),
    output:
        directory(prediction_dir("ensemble", "test")),
    log:
        "results/logs/infer_test.log",
    benchmark:
        "results/benchmarks/infer_test.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=reads("infer_test"),
        weights=weights_arg(PARAMS.infer.weights),
    shell:
        "stcl infer --params {params.file} --checkpoints {input.checkpoints}{params.weights} --split test"
        " --out {output} > {log} 2>&1"


rule submission:
    input:
        prediction_dir("ensemble", "test"),
    output:
        "results/test_submission.zip",
    log:
        "results/logs/submission.log",
    benchmark:
        "results/benchmarks/submission.tsv"
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        file=PARAMS_FILE,
        reads=reads("submission"),
    shell:
        "stcl submit --params {params.file} --pred {input} --out {output} > {log} 2>&1"
