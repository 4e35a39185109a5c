# The run report (`stcl report`): training curves, VC per val video, pseudo labels, qualitative views of the
# ensemble's val predictions, and results/report/index.html showing them with the tables. The figures also go
# into `snakemake --report report.html` (captions in workflow/report/).

# Stages whose training curves the report draws.
REPORT_STAGES = TRAIN_STAGES


describe("report_figures", "cpu")


rule report_figures:
    input:
        details=expand("results/evaluate/{model}.json", model=EVAL_MODELS),
        trained=expand("results/models/{stage}/train_metrics.json", stage=REPORT_STAGES),
        vspw=VSPW,
        preds="results/predictions/val",
        manifest="results/infer/val.json",
        pseudo="results/pseudo/stats.json",
        flows=TC_FLOWS,  # the TC view (flow.smk); none without tc.raft_weights
    output:
        page="results/report/index.html",
        curves=report(
            expand("results/report/curves/{stage}.png", stage=REPORT_STAGES),
            caption="../report/curves.rst",
            category="Training curves",
        ),
        vc=report(
            "results/report/vc_per_video.png",
            caption="../report/vc_per_video.rst",
            category="Metrics",
        ),
        per_class="results/report/per_class_iou.png",
        pseudo=report(
            "results/report/pseudo_labels.png",
            caption="../report/pseudo_labels.rst",
            category="Pseudo labels",
        ),
        views=report(
            directory("results/report/qualitative"),
            patterns=["{video}.{view}.png", "{video}.{view}.html"],
            caption="../report/qualitative.rst",
            category="Qualitative views",
            subcategory="{video}",
            labels={"video": "{video}", "view": "{view}"},
        ),
    log:
        "results/logs/report_figures.log",
    benchmark:
        "results/benchmarks/report_figures.tsv"
    conda:
        "../envs/stcl.yaml"
    resources:
        **cluster_resources("default"),
    params:
        pred=lambda wildcards, input: f"{input.preds}/ensemble",
        tc=flows_option,
        details=lambda wildcards, input: os.path.dirname(input.details[0]),
        out=lambda wildcards, output: os.path.dirname(output.page),
        logs=lambda wildcards: [
            f"--train-log={s}=results/models/{s}/dvclive" for s in REPORT_STAGES
        ],
    shell:
        "stcl report --out-dir {params.out:q} --metrics-dir {params.details:q} {params.logs:q}"
        " --gt-root {input.vspw:q} --split val --pred-root {params.pred:q} --pred-model ensemble"
        " --pseudo-stats {input.pseudo:q} {params.tc} > {log:q} 2>&1"
