"""`stcl plan --nodes 1,2,4`: wall time of each training stage on 1, 2, 4 ... nodes, all-reduce included.

For ``n`` nodes of ``G`` GPUs (``cluster.train.gpus``) a stage's global batch ``B`` (``batch_size``) splits
as ``B = n · g · b · a``: ``g`` GPUs per node (``G``, or the largest count below it that divides ``B / n``),
``b`` clips per GPU (``batch_per_device``, or the largest value below it that fits) and ``a`` micro-batches
of gradient accumulation. Per iteration:

* compute = ``a · b ·`` FLOPs of one clip (forward + backward, counted by `stcl.plan.work`) / the GPU's
  rate (`stcl.plan.gpus`), as the one-node plan counts it;
* all-reduce = ``2 (n-1)/n · S / L``: a ring all-reduce of the float32 gradients (``S`` = 4 bytes ×
  parameters; DDP reduces in the parameters' dtype, float32 also under autocast) over one inter-node link
  of ``L`` bit/s per node (stated: 100 and 400 Gb/s InfiniBand by default). Once per iteration: DDP
  skips it on accumulation micro-batches (``no_sync``). Within a node NVLink is not counted (the one-node
  plan does not count it either). Not overlapped with the backward pass: an upper bound, DDP overlaps
  part of it.

Settings: a layout is run with ``cluster.train.nodes: n``, ``cluster.train.gpus: g`` where ``g`` differs from
it and, where ``b`` is below the stage's ``batch_per_device``, ``batch_per_device: b`` (params validation
refuses a layout that does not split the batch exactly); the table lists them per node count. They are what
the layout needs, not faults. A node count where some stage's batch does not split, or where the stages
need different ``g``, gets no settings: the warnings say why.

Warnings: a stage whose layout needs fewer GPUs per node than ``cluster.train.gpus``, a global batch no
layout reaches, and fewer than 2 samples per BatchNorm in the decoder without ``model.sync_bn`` (``b`` query
frames; ``b`` × frames per clip with ``projection_input: fpn_bottleneck``, which runs the decoder on every
frame): UperNet's pyramid pooling pools to 1×1, where BatchNorm in train mode refuses one sample,
and one image per GPU gives noisy statistics anyway (mmseg's UperNet configs use SyncBN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stcl.params import TRAIN_STAGES, Params, grad_accum_steps
from stcl.plan.gpus import GPU
from stcl.plan.work import BN_MIN_SAMPLES, decoder_batchnorm_samples, train_step_work

__all__ = ["LINKS_GBIT", "StageOnNodes", "plan_nodes", "nodes_dict", "nodes_table"]

LINKS_GBIT = (100.0, 400.0)  # InfiniBand HDR100/EDR-class and NDR-class links, one per node


@dataclass
class StageOnNodes:
    """One training stage on ``nodes`` nodes: layout, hours of compute and of all-reduce per link speed."""

    stage: str
    nodes: int
    gpus_per_node: int = 0
    batch_per_device: int = 0
    accum: int = 0
    compute_hours: float = 0.0
    allreduce_hours: dict[str, float] = field(default_factory=dict)  # link "100 Gb/s" -> hours
    wall_hours: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)  # the params this layout runs with (besides nodes)

    @property
    def possible(self) -> bool:
        return self.gpus_per_node > 0


def _largest_divisor_at_most(value: int, limit: int) -> int:
    return max(d for d in range(1, max(min(value, limit), 1) + 1) if value % d == 0)


def _link_label(gbit: float) -> str:
    return f"{gbit:g} Gb/s"


def _plan_stage(params: Params, name: str, nodes: int, gpu: GPU, links: tuple[float, ...]) -> StageOnNodes:
    stage = params.stage(name)
    out = StageOnNodes(name, nodes)
    want = max(params.cluster.train.gpus, 1)
    if stage.batch_size % nodes:
        out.warnings.append(f"{nodes} nodes: batch_size {stage.batch_size} does not split over {nodes} nodes")
        return out
    per_node = stage.batch_size // nodes
    g = _largest_divisor_at_most(per_node, want)
    b = _largest_divisor_at_most(per_node // g, stage.batch_per_device)
    out.gpus_per_node, out.batch_per_device = g, b
    out.accum = grad_accum_steps(stage.batch_size, nodes * g, b)
    if g < want:
        out.warnings.append(
            f"{nodes} nodes: the global batch {stage.batch_size} keeps {g} of {want} GPUs per node busy:"
            f" set cluster.train.gpus: {g}"
        )
    if g != params.cluster.train.gpus:
        out.settings.append(f"cluster.train.gpus: {g}")
    if b < stage.batch_per_device:
        out.settings.append(f"batch_per_device: {b}")
    work = train_step_work(params, stage)
    per_clip = work.flops / stage.batch_per_device
    decoded = decoder_batchnorm_samples(params, work, b)
    if decoded < BN_MIN_SAMPLES and not params.model.sync_bn:
        out.warnings.append(
            f"{nodes} nodes × {g} GPUs: {decoded} sample per GPU in BatchNorm, where UperNet's 1×1"
            f" pyramid pooling fails in train mode below {BN_MIN_SAMPLES}: set model.sync_bn: true"
        )
    seconds = stage.iters * out.accum * b * per_clip / gpu.rate(stage.amp, "train")
    out.compute_hours = seconds / 3600
    grad_bytes = 4 * work.parameters
    for gbit in links:
        per_iter = 2 * (nodes - 1) / nodes * grad_bytes * 8 / (gbit * 1e9)
        label = _link_label(gbit)
        out.allreduce_hours[label] = stage.iters * per_iter / 3600
        out.wall_hours[label] = out.compute_hours + out.allreduce_hours[label]
    return out


def plan_nodes(
    params: Params, gpu: GPU, nodes: tuple[int, ...], links: tuple[float, ...] = LINKS_GBIT
) -> list[StageOnNodes]:
    """Every training stage on each node count of ``nodes`` (stage-major order)."""
    if not nodes or any(n < 1 for n in nodes):
        raise ValueError(f"--nodes must be counts >= 1, got {nodes}")
    if not links or any(gbit <= 0 for gbit in links):
        raise ValueError(f"--link-gbit must be speeds > 0, got {links}")
    rows = [_plan_stage(params, name, n, gpu, links) for name in TRAIN_STAGES for n in nodes]
    for n in nodes:
        mine = [r for r in rows if r.nodes == n and r.possible]
        per_node = {r.gpus_per_node for r in mine}
        if len(per_node) > 1:
            mine[0].warnings.append(
                f"{n} nodes: the stages need different GPU counts per node ({', '.join(map(str, sorted(per_node)))}):"
                " no one cluster.train.gpus trains them all"
            )
    return rows


def _chain(rows: list[StageOnNodes], n: int, label: str) -> float | None:
    """Training wall hours of the chain on ``n`` nodes: stages one after the other (train_stcl and train_ade
    each take the whole allocation)."""
    mine = [r for r in rows if r.nodes == n]
    if not all(r.possible for r in mine):
        return None
    return sum(r.wall_hours[label] for r in mine)


def nodes_dict(rows: list[StageOnNodes]) -> dict[str, Any]:
    counts = sorted({r.nodes for r in rows})
    labels = list(rows[0].wall_hours) if rows and rows[0].possible else []
    return {
        "stages": [asdict(r) for r in rows],
        "training_wall_hours": {str(n): {lab: _chain(rows, n, lab) for lab in labels} for n in counts},
        "settings": _settings(rows),
        "warnings": _grouped_warnings(rows),
    }


def _settings(rows: list[StageOnNodes]) -> dict[str, list[str]]:
    """Per node count that trains every stage with one ``cluster.train`` setting: the params its layouts run
    with, each followed by the stages it concerns (a count that does not is left out: the warnings say why)."""
    out: dict[str, list[str]] = {}
    for n in sorted({r.nodes for r in rows}):
        mine = [r for r in rows if r.nodes == n]
        if not all(r.possible for r in mine) or len({r.gpus_per_node for r in mine}) > 1:
            continue
        stages: dict[str, list[str]] = {}
        for r in rows:
            if r.nodes == n:
                for item in r.settings:
                    stages.setdefault(item, []).append(r.stage)
        common = [k for k, v in stages.items() if k.startswith("cluster.") and len(v) == len(mine)]
        out[str(n)] = [f"cluster.train.nodes: {n}", *common] + [
            f"{k} ({', '.join(v)})" for k, v in stages.items() if k not in common
        ]
    return out


def _grouped_warnings(rows: list[StageOnNodes]) -> list[str]:
    """Each warning once, followed by the stages it concerns."""
    stages: dict[str, list[str]] = {}
    for r in rows:
        for w in r.warnings:
            stages.setdefault(w, []).append(r.stage)
    return [f"{w} ({', '.join(names)})" for w, names in stages.items()]


def nodes_table(rows: list[StageOnNodes], gpu: GPU) -> str:
    """Fixed-width table: one row per stage and node count, wall hours per link speed; warnings below."""
    labels = next((list(r.wall_hours) for r in rows if r.possible), [])
    head = f"{'stage':<14}{'nodes':>6}{'layout n×g×b×acc':>18}{'compute h':>11}" + "".join(
        f"{'wall h @' + lab:>20}" for lab in labels
    )
    lines = [f"stcl plan --nodes: training on {gpu.name}, gradient all-reduce over one link per node", head]
    for r in rows:
        if not r.possible:
            lines.append(f"{r.stage:<14}{r.nodes:>6}{'-':>18}")
            continue
        layout = f"{r.nodes}×{r.gpus_per_node}×{r.batch_per_device}×{r.accum}"
        cells = "".join(f"{f'{r.wall_hours[lab]:.2f} (+{r.allreduce_hours[lab]:.2f})':>20}" for lab in labels)
        lines.append(f"{r.stage:<14}{r.nodes:>6}{layout:>18}{r.compute_hours:>11.2f}{cells}")
    d = nodes_dict(rows)
    for n, per_link in d["training_wall_hours"].items():
        parts = ", ".join(f"{h:.1f} h @ {lab}" if h is not None else f"- @ {lab}" for lab, h in per_link.items())
        lines.append(f"training stages on {n} node(s), one after another: {parts}")
    lines.append("(+h: the all-reduce share, not overlapped with backward: an upper bound)")
    for n in d["training_wall_hours"]:
        if n in d["settings"]:
            lines.append(f"to train on {n} node(s) set: {'; '.join(d['settings'][n])}")
        else:
            lines.append(f"{n} node(s): no setting trains every stage (see the warnings)")
    if d["warnings"]:
        lines += ["warnings:", *(f"  {w}" for w in d["warnings"])]
    return "\n".join(lines)
