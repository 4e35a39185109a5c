"""The jobs of the pipeline at the current params, with their work, projected time and memory, and warnings.

`graph_specs` turns the jobs of Snakemake's DAG (`stcl.plan.graph.snakemake_jobs`, the jobs
``snakemake -n --forceall`` lists) into rows: one per training stage, one for the pseudo-label shards
(with their init and gather jobs), one per split's inference shards (with theirs), one per other rule;
each row keeps the names of its Snakemake jobs. Which models a split's pass runs comes from
`stcl.roles`. `plan_jobs` projects each row.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stcl.params import TRAIN_STAGES, Params, grad_accum_steps
from stcl.plan.gpus import GIB, GPU
from stcl.plan.graph import Job
from stcl.plan.memory import MemoryEstimate, train_memory
from stcl.infer.multiscale import pseudo_label_tta, tta_from_params
from stcl.plan.work import BN_MIN_SAMPLES, decoder_batchnorm_samples, predict_frame_flops, train_step_work

__all__ = ["VSPW_FRAMES", "VSPW_FRAME_SIZE", "JobSpec", "JobPlan", "split_frames", "graph_specs", "plan_jobs"]

# VSPW_480p frames per split (VSPW paper and site, rounded to the hundred for val); the real counts are read
# from the split files whenever the data is in place.
VSPW_FRAMES = {"train": 198_244, "val": 24_500, "test": 28_887}
VSPW_FRAME_SIZE = (480, 854)  # (H, W) of a 16:9 480P frame


@dataclass(frozen=True)
class JobSpec:
    """A job of the graph: ``kind`` is "train", "infer", "flow" (RAFT for TC, `stcl.plan.flow`) or "cpu"; ``stage`` the params section it runs."""

    name: str
    kind: str
    stage: str
    frames: int = 0
    models: tuple[str, ...] = ()
    shards: int = 1
    scales: tuple[float, ...] | None = None
    flip: bool | None = None
    snakemake_jobs: tuple[str, ...] = ()  # the graph's jobs of this row: rule[-wildcard values]


@dataclass
class JobPlan:
    """A projected job: work, times (seconds), memory per GPU (bytes, training) and warnings."""

    name: str
    kind: str
    gpus_per_job: int
    jobs: int
    frames: int = 0
    iterations: int = 0
    tflop: float = 0.0
    gpu_hours: float = 0.0
    job_hours: float = 0.0  # wall of one job (one shard)
    stage_hours: float = 0.0  # wall of all its jobs given the GPUs
    runtime_hours: float = 0.0  # cluster.<kind>.runtime
    memory_gib: float | None = None
    memory_parts_gib: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    snakemake_jobs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_frames(params: Params, split: str) -> int:
    """Frames of a VSPW split: counted from the data when present, else the synth or VSPW figures."""
    from stcl.data import vspw

    root = Path(params.data.vspw_root)
    if (root / f"{split}.txt").is_file():
        return sum(len(vspw.list_frames(root, v)) for v in vspw.read_split(root, split))
    if params.data.synthetic:
        return getattr(params.synth.videos, split) * params.synth.frames_per_video
    return VSPW_FRAMES[split]


def _frame_size(params: Params) -> tuple[int, int]:
    return (params.synth.height, params.synth.width) if params.data.synthetic else VSPW_FRAME_SIZE


_ROW_OF_RULE = {
    "pseudo_label_init": "pseudo_label",
    "pseudo_label": "pseudo_label",
    "pseudo_label_gather": "pseudo_label",
    "infer_init": "infer_{split}",
    "infer": "infer_{split}",
    "infer_gather": "infer_{split}",
    "evaluate": "evaluate",
    "flow": "flow",
}


def job_name(job: Job) -> str:
    """A Snakemake job's name in the plan: its rule, then its wildcard values."""
    return "-".join([job.rule, *job.wildcards.values()])


def _row(job: Job) -> str:
    if job.rule in _ROW_OF_RULE:
        return _ROW_OF_RULE[job.rule].format(**job.wildcards)
    return job_name(job)


def graph_specs(params: Params, jobs: list[Job]) -> list[JobSpec]:
    """The rows of the plan from the graph's jobs (in dependency order of each row's first job)."""
    from stcl.roles import split_members

    rows: dict[str, list[Job]] = {}
    for job in jobs:
        rows.setdefault(_row(job), []).append(job)
    specs = []
    for row, members in rows.items():
        names = tuple(job_name(j) for j in members)
        rules = [j.rule for j in members]
        if row in TRAIN_STAGES:
            specs.append(JobSpec(row, "train", row, snakemake_jobs=names))
        elif "pseudo_label" in rules:
            unlabeled = params.data.unlabeled
            pool = sum(split_frames(params, s) for s in unlabeled.splits) if unlabeled.source == "vspw" else 0
            teacher_tta = pseudo_label_tta(params)
            specs.append(
                JobSpec(
                    row, "infer", "pseudo_label", frames=pool, models=params.teacher.members,
                    shards=rules.count("pseudo_label"), scales=teacher_tta.scales,
                    flip=teacher_tta.flip, snakemake_jobs=names,
                )
            )
        elif "infer" in rules:
            split = members[0].wildcards["split"]
            specs.append(
                JobSpec(
                    row, "infer", "infer", frames=split_frames(params, split),
                    models=tuple(split_members(params, split)), shards=rules.count("infer"), snakemake_jobs=names,
                )
            )
        elif row == "prepare":
            frames = sum(split_frames(params, s) for s in ("train", "val", "test"))
            specs.append(JobSpec(row, "cpu", row, frames=frames, snakemake_jobs=names))
        elif row == "flow":
            specs.append(JobSpec(row, "flow", row, snakemake_jobs=names))
        elif row == "evaluate":
            specs.append(JobSpec(row, "cpu", row, frames=split_frames(params, "val"), snakemake_jobs=names))
        else:
            specs.append(JobSpec(row, "cpu", row, snakemake_jobs=names))
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
    height, width = _frame_size(params)
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
            from stcl.plan.flow import flow_plan  # it builds on this module's JobPlan

            plan = flow_plan(params, gpu)
        elif spec.kind == "cpu":
            plan = JobPlan(spec.name, "cpu", 0, len(spec.snakemake_jobs) or 1, frames=spec.frames)
        else:
            raise ValueError(f"job {spec.name!r}: kind must be train, infer, flow or cpu, got {spec.kind!r}")
        plan.snakemake_jobs = list(spec.snakemake_jobs)
        out.append(plan)
    return out
