"""The plan as a fixed-width table (one row per job, warnings below) or as a dict for JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stcl.plan.gpus import GIB, GPU
from stcl.plan.rows import JobPlan

__all__ = ["plan_dict", "plan_table", "chain_hours"]


def chain_hours(plans: Sequence[JobPlan], total_gpus: int) -> float:
    """Wall hours of the chain, from the graph: a row's level is the longest chain of rows whose outputs it
    reads (`JobPlan.after`); the rows of one level run at once when their GPUs fit together (each row asks
    for ``gpus_per_job x jobs``, at most all of them), else one after the other."""
    by = {p.name: p for p in plans}
    level: dict[str, int] = {}

    def level_of(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((level_of(a) for a in by[name].after if a in by), default=-1)
        return level[name]

    for p in plans:
        level_of(p.name)
    hours = 0.0
    for n in sorted(set(level.values())):
        rows = [p for p in plans if level[p.name] == n]
        fit = sum(min(p.gpus_per_job * p.jobs, total_gpus) for p in rows) <= total_gpus
        hours += max(p.stage_hours for p in rows) if fit else sum(p.stage_hours for p in rows)
    return hours


def plan_dict(plans: Sequence[JobPlan], gpu: GPU, total_gpus: int) -> dict[str, Any]:
    return {
        "gpu": {
            "name": gpu.name,
            "memory_gib": gpu.memory / GIB,
            "utilisation": gpu.utilisation,
            "measured": gpu.measured is not None,
        },
        "gpus": total_gpus,
        "jobs": [p.as_dict() for p in plans],
        "total_gpu_hours": sum(p.gpu_hours for p in plans),
        "chain_wall_hours": chain_hours(plans, total_gpus),
        "warnings": [f"{p.name}: {w}" for p in plans for w in p.warnings],
    }


def plan_table(plans: Sequence[JobPlan], gpu: GPU, total_gpus: int) -> str:
    d = plan_dict(plans, gpu, total_gpus)
    rate = "measured rates" if gpu.measured else f"table peak x utilisation {gpu.utilisation:.2f}"
    lines = [
        f"stcl plan: {total_gpus} x {gpu.name} ({gpu.memory / GIB:.0f} GiB, {rate})",
        f"{'job':<14}{'GPUs x jobs':>12}{'frames':>10}{'iters':>8}{'TFLOP':>12}{'GPU-h':>9}{'job h':>8}"
        f"{'stage h':>9}{'limit h':>9}{'mem GiB':>9}",
    ]
    for p in plans:
        mem = f"{p.memory_gib:.1f}" if p.memory_gib is not None else "-"
        lines.append(
            f"{p.name:<14}{f'{p.gpus_per_job} x {p.jobs}':>12}{p.frames or '-':>10}{p.iterations or '-':>8}"
            f"{p.tflop:>12.0f}{p.gpu_hours:>9.1f}{p.job_hours:>8.2f}{p.stage_hours:>9.2f}"
            f"{(f'{p.runtime_hours:.0f}' if p.runtime_hours else '-'):>9}{mem:>9}"
        )
    lines.append(f"total {d['total_gpu_hours']:.1f} GPU-hours; chain wall {d['chain_wall_hours']:.1f} h")
    if d["warnings"]:
        lines += ["warnings:", *(f"  {w}" for w in d["warnings"])]
    else:
        lines.append("no warnings: every job fits its runtime and GPU memory")
    return "\n".join(lines)
