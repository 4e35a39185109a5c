"""`stcl plan`: the work, projected GPU and wall time, and peak memory of every job of the pipeline.

Modules: `stcl.plan.work` (FLOPs and activations counted on the meta device through the real model and
TTA code), `stcl.plan.memory` (peak memory per GPU of a training job), `stcl.plan.gpus` (the per-GPU
table, utilisation, calibration from benchmarks/gpu_check.py), `stcl.plan.graph` (the workflow's jobs and
what each rule declares), `stcl.plan.jobs` (the rows and their projection with warnings; `stcl.plan.rows`
their types, `stcl.plan.vspw_sizes` the frame counts), `stcl.plan.report` (the table, its JSON dict, the
chain's wall), `stcl.plan.nodes` (training stages on several nodes, `--nodes`).
"""
