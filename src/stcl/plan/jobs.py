"""The jobs of the pipeline at the current params, with their work, projected time and memory, and warnings.

`graph_specs` turns the jobs of Snakemake's DAG (`stcl.plan.graph.snakemake_jobs`, the jobs
``snakemake -n --forceall`` lists) into rows: the jobs of the rules that declare one ``plan_row`` share it
(the pseudo-label shards with their init and gather jobs, a split's inference shards with theirs, the
evaluate jobs), every other job is a row of its own; each row keeps the names of its Snakemake jobs, the
kind its rules declare (`stcl.plan.graph.RuleMeta`: the kind of its one non-CPU rule, else "cpu") and
the rows whose outputs it reads. Which models a split's pass runs comes from `stcl.roles`. `plan_jobs`
projects each row.

Projection, for a job on ``g`` GPUs of a `stcl.plan.gpus.GPU`:

* training: one iteration is ``batch_size / (g · batch_per_device)`` micro-batches per GPU (gradient
  accumulation reaches the global batch on fewer GPUs); wall = iters · micro-batches · FLOPs per
  micro-batch / rate(amp); GPU time = wall · g.
* inference (pseudo labels, val, test): FLOPs = frames · models · FLOPs of one frame's TTA per model (the
  one-pass design: each model runs once per frame, see `stcl.infer.outputs`; the windows are mmseg's, of
  ``min(crop, size)``, counted by `stcl.plan.work.predict_frame_flops`); each of ``shards`` jobs gets
  1/shards of it; wall of the stage = per-shard time · ceil(shards / shards running at once).
* flow (RAFT over val for TC, only with ``tc.raft_weights``): `stcl.plan.flow`.
* CPU jobs (prepare, evaluate, tables, ...) are listed (prepare and evaluate with their frames); they are
  not projected.

Warnings name the knob that fixes them: a job projected past its ``cluster.<kind>.runtime`` (more shards,
more GPUs, a longer runtime), a training job whose peak memory exceeds the GPU (grad_checkpointing, amp,
batch_per_device), a job asking for more GPUs than there are.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from stcl.infer.multiscale import pseudo_label_tta, tta_from_params
from stcl.params import Params, grad_accum_steps
from stcl.plan.flow import flow_plan
from stcl.plan.gpus import GIB, GPU
from stcl.plan.graph import Job
from stcl.plan.memory import MemoryEstimate, train_memory
from stcl.plan.rows import JobPlan, JobSpec
from stcl.plan.vspw_sizes import frame_size, split_frames
from stcl.plan.work import BN_MIN_SAMPLES, decoder_batchnorm_samples, predict_frame_flops, train_step_work

__all__ = ["graph_specs", "plan_jobs"]


def _lead_job(row: str, members: list[Job]) -> Job:
    """The job that says what a row is: its one rule of a non-CPU kind, else its first job."""
    heavy = list(dict.fromkeys((j.rule, j.kind) for j in members if j.kind != "cpu"))
    if len(heavy) > 1:
        raise ValueError(f"plan row {row!r}: rules of several GPU kinds share it ({heavy}): give them their own plan_row")
    return next(j for j in members if j.kind == heavy[0][1]) if heavy else members[0]


def _after(rows: dict[str, list[Job]]) -> dict[str, tuple[str, ...]]:
    """{row: rows whose outputs its jobs read}: an input that is an output, a folder holding one or a path
    inside one."""
    written = {row: [o[1].rstrip("/") for j in members for o in j.outputs] for row, members in rows.items()}

    def reads(path: str, outs: list[str]) -> bool:
        path = path.rstrip("/")
        return any(path == o or path.startswith(o + "/") or o.startswith(path + "/") for o in outs)

    return {
        row: tuple(
            other for other, outs in written.items()
            if other != row and any(reads(i, outs) for j in members for i in j.inputs)
        )
        for row, members in rows.items()
    }


def graph_specs(params: Params, jobs: list[Job]) -> list[JobSpec]:
    """The rows of the plan from the graph's jobs (in dependency order of each row's first job)."""
    from stcl.roles import split_members

    rows: dict[str, list[Job]] = {}
    for job in jobs:
        rows.setdefault(job.plan_row, []).append(job)
    after = _after(rows)
    specs = []
    for row, members in rows.items():
        names = tuple(j.name for j in members)
        lead = _lead_job(row, members)
        common = {"snakemake_jobs": names, "after": after[row]}
        if lead.kind == "train":
            specs.append(JobSpec(row, "train", lead.rule, **common))
        elif lead.kind == "infer":
            shards = sum(j.rule == lead.rule for j in members)
            if lead.rule == "pseudo_label":  # the teacher over the unlabeled frames, at pseudo_label's TTA
                unlabeled = params.data.unlabeled
                pool = sum(split_frames(params, s) for s in unlabeled.splits) if unlabeled.source == "vspw" else 0
                teacher_tta = pseudo_label_tta(params)
                specs.append(
                    JobSpec(
                        row, "infer", lead.rule, frames=pool, models=params.teacher.members, shards=shards,
                        scales=teacher_tta.scales, flip=teacher_tta.flip, **common,
                    )
                )
            else:  # the models of the split's outputs (stcl.roles), at infer's TTA
                split = lead.wildcards["split"]
                specs.append(
                    JobSpec(
                        row, "infer", lead.rule, frames=split_frames(params, split),
                        models=tuple(split_members(params, split)), shards=shards, **common,
                    )
                )
        elif lead.kind == "flow":
            specs.append(JobSpec(row, "flow", lead.rule, **common))
        else:
            frames = sum(split_frames(params, s) for s in lead.splits)
            specs.append(JobSpec(row, "cpu", row, frames=frames, **common))
    return specs


def _hours(seconds: float) -> float:
    return seconds / 3600.0


def _plan_train(params: Params, spec: JobSpec, gpu: GPU, total_gpus: int) -> JobPlan:
    stage = params.stage(spec.stage)
    res = params.cluster.train
    g = max(min(res.gpus, total_gpus), 1)
    plan = JobPlan(spec.name, "train", g, 1, iterations=stage.iters, runtime_hours=res.runtime / 60)
    # micro-batches per GPU and iteration: exact on the GPUs params ask for (params validation); planned on
    # fewer (warned below), the global batch may not split and a part-filled last micro-batch counts whole
    if g == max(res.gpus, 1):
        micro = grad_accum_steps(stage.batch_size, g, stage.batch_per_device)
    else:
        micro = math.ceil(stage.batch_size / (g * stage.batch_per_device))
    work = train_step_work(params, stage)
    seconds = stage.iters * micro * work.flops / gpu.rate(stage.amp, "train")
    plan.tflop = stage.iters * micro * g * work.flops / 1e12
    plan.job_hours = plan.stage_hours = _hours(seconds)
    plan.gpu_hours = plan.job_hours * g
    mem: MemoryEstimate = train_memory(params, stage, g, work)
    plan.memory_gib = mem.total / GIB
    plan.memory_parts_gib = {k: round(v / GIB, 2) for k, v in asdict(mem).items()}
    if res.gpus > total_gpus:
        plan.warnings.append(
            f"cluster.train.gpus = {res.gpus} > {total_gpus} GPUs: planned on {g} (set cluster.train.gpus)"
        )
    if plan.job_hours > plan.runtime_hours:
        need = math.ceil(plan.job_hours * 60 * 1.1)
        plan.warnings.append(
            f"projected {plan.job_hours:.1f} h > cluster.train.runtime {res.runtime} min: set cluster.train.runtime >= {need}"
            f" or use more GPUs (cluster.train.gpus; the job also resumes after a requeue, exit 75)"
        )
    if mem.total > gpu.memory:
        fixes = []
        if not params.model.grad_checkpointing:
            fixes.append("model.grad_checkpointing: true")
        if stage.amp == "off":
            fixes.append(f"{spec.stage}.amp: bf16")
        half = stage.batch_per_device // 2
        # fewer clips per GPU only where the decoder's BatchNorm still sees 2 samples (or SyncBN spans GPUs)
        bn_ok = params.model.sync_bn and g > 1 or decoder_batchnorm_samples(params, work, half) >= BN_MIN_SAMPLES
        if half and bn_ok:
            fixes.append(f"{spec.stage}.batch_per_device: {half}")
        plan.warnings.append(
            f"peak memory {plan.memory_gib:.1f} GiB > {gpu.memory / GIB:.0f} GiB on {gpu.name}: set "
            + (" or ".join(fixes) if fixes else "a smaller augment.crop_size")
        )
    if stage.amp == "bf16" and gpu.name.startswith("V100"):
        plan.warnings.append(f"{gpu.name} has no bf16 tensor cores: set {spec.stage}.amp: fp16")
    return plan


def _plan_infer(params: Params, spec: JobSpec, gpu: GPU, total_gpus: int) -> JobPlan:
    res = params.cluster.infer
    g = max(res.gpus, 1)
    plan = JobPlan(spec.name, "infer", g, spec.shards, frames=spec.frames, runtime_hours=res.runtime / 60)
    tta = tta_from_params(params.infer, scales=spec.scales, flip=spec.flip)
    height, width = frame_size(params)
    per_frame = predict_frame_flops(params.model, tta, height, width)
    flops = spec.frames * len(spec.models) * per_frame
    seconds = flops / (gpu.rate(params.infer.amp, "infer") * g)
    plan.tflop = flops / 1e12
    plan.gpu_hours = _hours(seconds) * g
    plan.job_hours = _hours(seconds) / spec.shards
    at_once = max(total_gpus // g, 1)
    plan.stage_hours = plan.job_hours * math.ceil(spec.shards / at_once)
    if plan.job_hours > plan.runtime_hours:
        knob = "pseudo_label.shards" if spec.stage == "pseudo_label" else "infer.shards"
        need = math.ceil(plan.job_hours / plan.runtime_hours * spec.shards * 1.1)
        plan.warnings.append(
            f"projected {plan.job_hours:.1f} h per job > cluster.infer.runtime {res.runtime} min: set {knob} >= {need}"
            f" or cluster.infer.runtime >= {math.ceil(plan.job_hours * 66)}"
        )
    return plan


def plan_jobs(params: Params, jobs: list[JobSpec], gpu: GPU, total_gpus: int) -> list[JobPlan]:
    """Project every job of ``jobs`` on ``total_gpus`` GPUs of kind ``gpu``."""
    if total_gpus < 1:
        raise ValueError(f"--gpus must be >= 1, got {total_gpus}")
    out = []
    for spec in jobs:
        if spec.kind == "train":
            plan = _plan_train(params, spec, gpu, total_gpus)
        elif spec.kind == "infer":
            plan = _plan_infer(params, spec, gpu, total_gpus)
        elif spec.kind == "flow":
            plan = flow_plan(params, gpu)
        elif spec.kind == "cpu":
            plan = JobPlan(spec.name, "cpu", 0, len(spec.snakemake_jobs) or 1, frames=spec.frames)
        else:
            raise ValueError(f"job {spec.name!r}: kind must be train, infer, flow or cpu, got {spec.kind!r}")
        plan.snakemake_jobs = list(spec.snakemake_jobs)
        plan.after = list(spec.after)
        out.append(plan)
    return out
