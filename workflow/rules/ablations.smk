# Ablation targets of the paper's Tables 1-3, built on demand only:
#   .venv/bin/snakemake --profile local ablation_table3      (or ablation_table1, ablation_table2)
#   .venv/bin/snakemake --profile local results/ablations/metrics/stcl_d128_t0.1.json   (any grid point)
# Each ablation trains train_stcl with params overrides (src/stcl/ablations.py), predicts val, evaluates.
# train_stcl_shuffled is a negative control (STCL positives from shuffled labels), not a paper row.


wildcard_constraints:
    name=r"baseline_\w+|train_coco|train_nostcl|train_stcl_shuffled|stcl_d\d+_t[0-9.e-]+",


describe("ablation_params", "cpu")


rule ablation_params:
    output:
        "results/ablations/{name}/params.yaml",
    log:
        "results/logs/ablations/{name}/params.log",
    localrule: True
    conda:
        "../envs/stcl.yaml"
    params:
        file=PARAMS_FILE,
        reads=VALUES,
    shell:
        "stcl ablation {wildcards.name} --params {params.file:q} --out {output:q} > {log:q} 2>&1"


describe("ablation_train", "train")


rule ablation_train:
    input:
        unpack(ablation_train_inputs),
        params="results/ablations/{name}/params.yaml",
    output:
        model="results/ablations/{name}/model.pt",
    log:
        "results/logs/ablations/{name}/train.log",
    benchmark:
        "results/benchmarks/ablations/{name}/train.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("train")
    resources:
        **cluster_resources("train"),
    params:
        launch=train_launcher,
        stage=lambda wildcards: ablation(wildcards.name).stage,
        data=train_args,
        out=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "{params.launch} train --params {input.params:q} --stage {params.stage} {params.data}"
        " --out {params.out:q} > {log:q} 2>&1"


describe("ablation_infer", "infer")


rule ablation_infer:
    input:
        params="results/ablations/{name}/params.yaml",
        vspw=VSPW,
        checkpoint="results/ablations/{name}/model.pt",
    output:
        directory("results/ablations/{name}/predictions/val"),
    log:
        "results/logs/ablations/{name}/infer.log",
    benchmark:
        "results/benchmarks/ablations/{name}/infer.tsv"
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        model=lambda wildcards, input: f"--checkpoint=model={input.checkpoint}",
        output=lambda wildcards, output: f"--output=model=model={output}",
    shell:
        "stcl infer --params {input.params:q} {params.model:q} --root {input.vspw:q}"
        " --split val {params.output:q} > {log:q} 2>&1"


describe("ablation_evaluate", "cpu", splits=("val",))


rule ablation_evaluate:
    input:
        params="results/ablations/{name}/params.yaml",
        vspw=VSPW,
        pred="results/ablations/{name}/predictions/val",
    output:
        metrics="results/ablations/metrics/{name}.json",
        details="results/ablations/evaluate/{name}.json",
    log:
        "results/logs/ablations/{name}/evaluate.log",
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("default")
    resources:
        **cluster_resources("default"),
    shell:
        "stcl evaluate --params {input.params:q} --gt-root {input.vspw:q} --pred-root {input.pred:q}"
        " --split val --model {wildcards.name} --out {output.metrics:q} --details {output.details:q}"
        " > {log:q} 2>&1"


describe("ablation_tables", "cpu")


rule ablation_tables:
    input:
        lambda wildcards: expand(
            "results/ablations/evaluate/{name}.json",
            name=table_ablations(wildcards.table, PARAMS),
        ),
    output:
        "results/ablations/tables/{table}/tables.md",
    log:
        "results/logs/ablations/tables/{table}.log",
    wildcard_constraints:
        table="|".join(TABLE_ABLATIONS),
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        metrics_dir=lambda wildcards, input: os.path.dirname(input[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "stcl tables --metrics-dir {params.metrics_dir:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule ablation_table1:
    input:
        "results/ablations/tables/table1/tables.md",


rule ablation_table2:
    input:
        "results/ablations/tables/table2/tables.md",


rule ablation_table3:
    input:
        "results/ablations/tables/table3/tables.md",
