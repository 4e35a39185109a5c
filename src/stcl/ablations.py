"""The paper's ablations (Tables 1-3) as params overrides of one training stage.

Each ablation trains one model with params.yaml plus a few overrides, predicts val and evaluates it; the
workflow builds them only on demand (`snakemake --profile local ablation_table3`). The metrics file of an
ablation carries its name as the model name, which `stcl tables` maps to the paper row it reproduces:

=================  ========================================================================================
baseline_<enc>     Table 1 (backbone <enc>) and Table 2 "Swin-L": VSPW only, no COCO-pre, no STCL
train_coco         Table 2 "+ COCO": VSPW + COCO (mapped to VSPW classes) jointly, no COCO-pre, no STCL
train_nostcl       Table 2 "+ COCO-pre" and Table 3 "Swin-L": COCO-pre init, VSPW only, no STCL
stcl_d<dim>_t<τ>   Table 3 grid: COCO-pre init, VSPW, STCL with projection dim and temperature τ
=================  ========================================================================================

`stcl ablation NAME --out results/ablations/NAME/params.yaml` writes the complete params file of one.
``ablations.table1_extra`` in params.yaml adds backbones to Table 1 (e.g. ``[dinov3_vitl16]``: a DINO row,
trained with the same protocol as the paper's four; `table_ablations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stcl.params import Params, merge_overrides, parse_params

__all__ = ["Ablation", "TABLE_ABLATIONS", "ablation", "ablation_params", "table_ablations"]

# Table 1 of the paper: ResNet-50 (mmseg V1c), ResNeSt-101, CSWin-L, Swin-L.
TABLE1_BACKBONES = ("resnet50", "resnest101e", "cswin_large", "swin_large_patch4_window12_384")
# Table 3 of the paper: (projection dim, τ).
TABLE3_GRID = ((512, 0.07), (512, 0.05), (256, 0.07))

TABLE_ABLATIONS: dict[str, tuple[str, ...]] = {
    "table1": tuple(f"baseline_{b}" for b in TABLE1_BACKBONES),
    "table2": ("train_coco", "train_nostcl"),
    "table3": ("train_nostcl",) + tuple(f"stcl_d{d}_t{t:g}" for d, t in TABLE3_GRID),
}


def table_ablations(table: str, params: Params) -> tuple[str, ...]:
    """The ablations of ``table``: the paper's, plus ``baseline_<b>`` for ``ablations.table1_extra`` in table1."""
    names = TABLE_ABLATIONS[table]
    if table == "table1":
        names += tuple(f"baseline_{b}" for b in params.ablations.table1_extra if f"baseline_{b}" not in names)
    return names


@dataclass(frozen=True)
class Ablation:
    """One ablation: train `stage` of the params with `overrides` merged in."""

    name: str
    stage: str
    overrides: dict[str, Any]


def ablation(name: str) -> Ablation:
    """The ablation called `name` (see the module docstring); ValueError lists the valid forms."""
    stage = "train_stcl"
    vspw = [{"name": "vspw", "weight": 1.0}]
    if name.startswith("baseline_") and len(name) > len("baseline_"):
        backbone = name[len("baseline_") :]
        return Ablation(
            name,
            stage,
            {"model": {"backbone": backbone}, stage: {"init": None, "datasets": vspw, "stcl": {"enabled": False}}},
        )
    if name == "train_coco":
        mix = vspw + [{"name": "coco", "weight": 1.0}]
        return Ablation(name, stage, {stage: {"init": None, "datasets": mix, "stcl": {"enabled": False}}})
    if name == "train_nostcl":
        return Ablation(name, stage, {stage: {"datasets": vspw, "stcl": {"enabled": False}}})
    if name.startswith("stcl_d") and "_t" in name:
        dim, _, tau = name[len("stcl_d") :].partition("_t")
        try:
            stcl = {"enabled": True, "dim": int(dim), "tau": float(tau)}
        except ValueError:
            pass
        else:
            return Ablation(name, stage, {stage: {"datasets": vspw, "stcl": stcl}})
    raise ValueError(
        f"unknown ablation {name!r}; valid: baseline_<backbone>, train_coco, train_nostcl, stcl_d<dim>_t<tau> "
        f"(paper tables: {', '.join(n for names in TABLE_ABLATIONS.values() for n in names)})"
    )


def ablation_params(params: Params, name: str) -> Params:
    """params with the overrides of ablation `name` merged in (validated)."""
    spec = ablation(name)
    return parse_params(merge_overrides(params.model_dump(mode="json"), spec.overrides), f"ablation {name}")
