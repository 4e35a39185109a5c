# RAFT flows of val for the TC metric (VSPW_code TC_cal.py), computed once: they do not depend on the model,
# so RAFT (TC's GPU cost) is one GPU job and every `evaluate` job reads its folder. Only in the graph when
# params tc.raft_weights names a RAFT file; otherwise evaluate skips TC with one line.


describe("flow", "flow", plan_row="flow")


rule flow:
    input:
        vspw=VSPW,
        # without a file, asking for this rule names the missing key as its missing input
        weights=str(
            PARAMS.tc.raft_weights or "tc.raft_weights (not set in the params file)"
        ),
    output:
        directory("results/flow/{split}"),
    log:
        "results/logs/flow/{split}.log",
    benchmark:
        "results/benchmarks/flow/{split}.tsv"
    wildcard_constraints:
        split="val",
    conda:
        "../envs/stcl.yaml"
    threads: cluster_threads("infer")
    resources:
        **cluster_resources("infer"),
    params:
        file=PARAMS_FILE,
        reads=lambda wildcards: reads("tc.raft_weights", "tc.videos", "tc.device"),
    shell:
        "stcl flow --params {params.file:q} --vspw-root {input.vspw:q} --split {wildcards.split}"
        " --weights {input.weights:q} --out {output:q} > {log:q} 2>&1"
