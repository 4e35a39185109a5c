# Training stages (paper 2.1-2.3): COCO-pre → {STCL, +ADE} → teacher pseudo labels → student.
# One rule per stage of params.yaml, written once: `snakemake train_stcl` builds that stage. Each job is one
# `stcl train` process, or one torchrun with the job's GPU count (train_launcher).

# Keys a training job reads: the shared model/clips/augment/train sections and the stage's own section
# (`reads` takes the stage's values after inheriting from `train`, so an edit of either reruns it).
TRAIN_KEYS = ("model", "clips", "augment", "train")

for _stage in TRAIN_STAGES:
    describe(_stage, "train")

    rule:
        name:
            _stage
        input:
            **train_inputs(PARAMS, _stage),
        output:
            model=model_path(_stage),
            metrics=f"results/models/{_stage}/train_metrics.json",
        log:
            f"results/logs/{_stage}.log",
        benchmark:
            f"results/benchmarks/{_stage}.tsv"
        conda:
            "../envs/stcl.yaml"
        threads: cluster_threads("train")
        resources:
            **cluster_resources("train"),
        params:
            file=PARAMS_FILE,
            reads=reads(*TRAIN_KEYS, _stage),
            stage=_stage,
            launch=train_launcher,
            data=train_args,
            out=lambda wildcards, output: os.path.dirname(output.model),
        shell:
            "{params.launch} train --params {params.file:q} --stage {params.stage} {params.data}"
            " --out {params.out:q} > {log:q} 2>&1"
