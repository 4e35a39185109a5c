# The run report (`stcl report`): training curves, VC per val video, pseudo labels, qualitative views of the
# ensemble's val predictions, and results/report/index.html showing them with the tables. The figures also go
# into `snakemake --report report.html` (captions in workflow/report/).

from stcl.workflow_graph import REPORT_STAGES, report_command


rule report_figures:
    input:
        metrics=expand("results/metrics/{model}.json", model=EVAL_MODELS),
        trained=expand("results/models/{stage}/train_metrics.json", stage=REPORT_STAGES),
        vspw=VSPW,
        pred=prediction_dir("ensemble", "val"),
        pseudo="results/pseudo/stats.json",
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
        cmd=report_command(VSPW),
    shell:
        "{params.cmd} > {log} 2>&1"
