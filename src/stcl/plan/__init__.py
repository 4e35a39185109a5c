"""`stcl plan`: the work, projected GPU and wall time, and peak memory of every job of the pipeline.

Modules: `stcl.plan.work` (FLOPs and activations counted on the meta device through the real model and
TTA code), `stcl.plan.memory` (peak memory per GPU of a training job), `stcl.plan.gpus` (the per-GPU
table, utilisation, calibration from benchmarks/gpu_check.py), `stcl.plan.jobs` (the job list and the
projection with warnings), `stcl.plan.report` (the table and JSON), `stcl.plan.nodes` (training stages on several nodes, `--nodes`).
"""
