"""The rows of `stcl plan`: what a row is (`JobSpec`, built from the graph's jobs by `stcl.plan.jobs`) and
what its projection holds (`JobPlan`, filled by `stcl.plan.jobs` and `stcl.plan.flow`, shown by
`stcl.plan.report`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["JobSpec", "JobPlan"]


@dataclass(frozen=True)
class JobSpec:
    """A row of the plan: ``kind`` is "train", "infer", "flow" (RAFT for TC, `stcl.plan.flow`) or "cpu" (the
    kind its rules declare, `stcl.plan.graph.RuleMeta`); ``stage`` the params section it runs; ``after`` the
    rows whose outputs its jobs read (from the graph's inputs and outputs)."""

    name: str
    kind: str
    stage: str
    frames: int = 0
    models: tuple[str, ...] = ()
    shards: int = 1
    scales: tuple[float, ...] | None = None
    flip: bool | None = None
    snakemake_jobs: tuple[str, ...] = ()  # the graph's jobs of this row: rule[-wildcard values]
    after: tuple[str, ...] = ()


@dataclass
class JobPlan:
    """A projected row: work, times (seconds), memory per GPU (bytes, training) and warnings; ``after`` as in
    `JobSpec` (used for the chain's wall time, not printed)."""

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
    after: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["after"]
        return out
