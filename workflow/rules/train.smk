# Training stages (paper 2.1-2.3): COCO-pre → {STCL, +ADE} → teacher pseudo labels → student.
# Each job is one `stcl train` process, or one torchrun with the job's GPU count (train_launcher).


rule pretrain_coco:
    input:
        train_inputs(PARAMS, "pretrain_coco"),
    output:
        model=model_path("pretrain_coco"),
        metrics="results/models/pretrain_coco/train_metrics.json",
    log:
        "results/logs/pretrain_coco.log",
    benchmark:
        "results/benchmarks/pretrain_coco.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("train")
    resources:
        **cluster_resources("train"),
    params:
        file=PARAMS_FILE,
        reads=reads("pretrain_coco"),
        launch=train_launcher,
    shell:
        "{params.launch} train --params {params.file} --stage pretrain_coco"
        " --out results/models/pretrain_coco > {log} 2>&1"


rule train_stcl:
    input:
        train_inputs(PARAMS, "train_stcl"),
    output:
        model=model_path("train_stcl"),
        metrics="results/models/train_stcl/train_metrics.json",
    log:
        "results/logs/train_stcl.log",
    benchmark:
        "results/benchmarks/train_stcl.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("train")
    resources:
        **cluster_resources("train"),
    params:
        file=PARAMS_FILE,
        reads=reads("train_stcl"),
        launch=train_launcher,
    shell:
        "{params.launch} train --params {params.file} --stage train_stcl"
        " --out results/models/train_stcl > {log} 2>&1"


rule train_ade:
    input:
        train_inputs(PARAMS, "train_ade"),
    output:
        model=model_path("train_ade"),
        metrics="results/models/train_ade/train_metrics.json",
    log:
        "results/logs/train_ade.log",
    benchmark:
        "results/benchmarks/train_ade.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("train")
    resources:
        **cluster_resources("train"),
    params:
        file=PARAMS_FILE,
        reads=reads("train_ade"),
        launch=train_launcher,
    shell:
        "{params.launch} train --params {params.file} --stage train_ade"
        " --out results/models/train_ade > {log} 2>&1"


rule train_student:
    input:
        train_inputs(PARAMS, "train_student"),
    output:
        model=model_path("train_student"),
        metrics="results/models/train_student/train_metrics.json",
    log:
        "results/logs/train_student.log",
    benchmark:
        "results/benchmarks/train_student.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("train")
    resources:
        **cluster_resources("train"),
    params:
        file=PARAMS_FILE,
        reads=reads("train_student"),
        launch=train_launcher,
    shell:
        "{params.launch} train --params {params.file} --stage train_student"
        " --out results/models/train_student > {log} 2>&1"
