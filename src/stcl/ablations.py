"""The paper's ablations (Tables 1-3) as params overrides of one training stage.

Each ablation trains one model with params.yaml plus a few overrides, predicts val and evaluates it; the
workflow builds them only on demand (`snakemake --profile local ablation_table3`). The metrics file of an
ablation carries its name as the model name, which `stcl tables` maps to the paper row it reproduces:

=================  ========================================================================================
baseline_<enc>     Table 1 (backbone <enc>) and Table 2 "Swin-L": VSPW only, no COCO-pre, no STCL; the
                   encoder's own ImageNet file and its family's optimiser (below)
train_coco         Table 2 "+ COCO": VSPW + COCO (mapped to VSPW classes) jointly, no COCO-pre, no STCL
train_nostcl       Table 2 "+ COCO-pre" and Table 3 "Swin-L": COCO-pre init, VSPW only, no STCL
stcl_d<dim>_t<τ>   Table 3 grid: COCO-pre init, VSPW, STCL with projection dim and temperature τ
=================  ========================================================================================

``train_stcl_shuffled`` is no paper row but a negative control: train_stcl with ``stcl.positives: shuffled``
(STCL's positives drawn from shuffled labels); benchmarks/recipe_claims.py expects it below train_stcl, and
`stcl tables` lists it under "Other models".

`stcl ablation NAME --out results/ablations/NAME/params.yaml` writes the complete params file of one.
``ablations.table1_extra`` in params.yaml adds backbones to Table 1 (e.g. ``[dinov3_vitl16]``: a DINO row,
trained with the same protocol as the paper's four; `table_ablations`).

Table 1 trains each encoder as paper 3.2 says: "for the CNN-based networks, the backbone is pretrained on
ImageNet-1K and SGD optimizer is employed with an initial learning rate of 0.01, a weight decay of 0.0001.
For the Transformer-based networks, the backbone is pretrained on ImageNet-22K and AdamW optimizer is
adopted". A CNN's ``baseline_<enc>`` therefore trains with `CNN_OPTIMIZER`; a transformer's keeps the
stage's AdamW, without its layer-wise lr decay unless the encoder is a ViT (the baseline of the chain's own
encoder keeps the stage's optimiser whatever its family: `ablation_overrides`). Each loads its own weights file, ``ablations.pretrained[<enc>]``
(``model.pretrained`` is the main encoder's: a Swin-L file cannot fill a ResNet).

Every ablation run has its own seed stream (``seed_stream: <name>``, `stcl.train.seeds`): an ablation and
the stage it varies draw their samples independently, as separate runs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stcl.params import CNN_BACKBONES, HUB_BACKBONES, VIT_DEPTHS, Params, merge_overrides, parse_params

__all__ = [
    "Ablation",
    "TABLE_ABLATIONS",
    "CNN_OPTIMIZER",
    "ablation",
    "ablation_overrides",
    "ablation_params",
    "pretrained_note",
    "table_ablations",
]

# Table 1 of the paper: ResNet-50 (mmseg V1c), ResNeSt-101, CSWin-L, Swin-L.
TABLE1_BACKBONES = ("resnet50", "resnest101e", "cswin_large", "swin_large_patch4_window12_384")
# Table 3 of the paper: (projection dim, τ).
TABLE3_GRID = ((512, 0.07), (512, 0.05), (256, 0.07))

# The CNN rows of Table 1 (paper 3.2): SGD, lr 0.01, weight decay 0.0001. The paper is silent on momentum and
# schedule: mmseg's CNN schedules (configs/_base_/schedules/schedule_{20,40,80,160}k.py) use momentum 0.9, no
# warmup and poly decay with power 0.9 to a minimum lr of 1e-4, without gradient clipping; mmseg's SGD has no
# paramwise rules (`stcl.train.optim`: decay on every parameter). Their weight decay is 5e-4; the paper's 1e-4
# wins.
CNN_OPTIMIZER: dict[str, Any] = {
    "name": "sgd",
    "lr": 0.01,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "warmup_iters": 0,
    "power": 0.9,
    "min_lr": 1e-4,
    "clip_grad_norm": None,
    "layer_decay": None,
}

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
    """The ablation called `name` (see the module docstring); ValueError lists the valid forms.

    The overrides are those of the name alone; `ablation_overrides` adds what depends on the base params.
    """
    stage = "train_stcl"
    vspw = [{"name": "vspw", "weight": 1.0}]
    own = {"seed_stream": name}
    if name.startswith("baseline_") and len(name) > len("baseline_"):
        backbone = name[len("baseline_") :]
        run = {**own, "init": None, "datasets": vspw, "stcl": {"enabled": False}}
        return Ablation(name, stage, {"model": {"backbone": backbone}, stage: run})
    if name == "train_coco":
        mix = vspw + [{"name": "coco", "weight": 1.0}]
        return Ablation(name, stage, {stage: {**own, "init": None, "datasets": mix, "stcl": {"enabled": False}}})
    if name == "train_nostcl":
        return Ablation(name, stage, {stage: {**own, "datasets": vspw, "stcl": {"enabled": False}}})
    if name == "train_stcl_shuffled":
        stcl = {"enabled": True, "positives": "shuffled"}
        return Ablation(name, stage, {stage: {**own, "datasets": vspw, "stcl": stcl}})
    if name.startswith("stcl_d") and "_t" in name:
        dim, _, tau = name[len("stcl_d") :].partition("_t")
        try:
            stcl = {"enabled": True, "dim": int(dim), "tau": float(tau)}
        except ValueError:
            pass
        else:
            return Ablation(name, stage, {stage: {**own, "datasets": vspw, "stcl": stcl}})
    raise ValueError(
        f"unknown ablation {name!r}; valid: baseline_<backbone>, train_coco, train_nostcl, stcl_d<dim>_t<tau>, "
        f"train_stcl_shuffled "
        f"(paper tables: {', '.join(n for names in TABLE_ABLATIONS.values() for n in names)})"
    )


def ablation_overrides(params: Params, name: str) -> dict[str, Any]:
    """Everything ablation `name` changes in ``params``: `ablation`'s overrides plus, for ``baseline_<b>``,

    * its weights file: ``ablations.pretrained[b]``; without one, ``model.pretrained`` when ``b`` is
      ``model.backbone`` (the same encoder), else none: timm's hub weights of ``b`` with
      ``model.pretrained_from_hub`` where the hub has them (`stcl.params.HUB_BACKBONES`), else random init
      (`pretrained_note` says so);
    * its family's optimiser when ``b`` is a CNN other than ``model.backbone``: `CNN_OPTIMIZER`. The baseline
      of the chain's own encoder keeps the stage's optimiser: it is also Table 2's first row, compared with
      the chain's other runs (COCO-pre, STCL), which train with it. Under the paper preset (Swin-L) every
      Table 1 row thus trains as paper 3.2 says;
    * no layer-wise lr decay when ``b`` is a transformer other than ``model.backbone`` that is not a ViT
      (Swin, CSWin: no layer ids, `stcl.train.optim.layer_decay_groups`) and the stage's AdamW has one (the
      dinov2/dinov3 presets' 0.95): the row keeps the stage's AdamW without ``optimizer.layer_decay``.
    """
    spec = ablation(name)
    backbone = spec.overrides.get("model", {}).get("backbone")
    if backbone is None:
        return spec.overrides
    file = params.ablations.pretrained.get(backbone)
    if file is None and backbone == params.model.backbone:
        file = params.model.pretrained
    model: dict[str, Any] = {"pretrained": None if file is None else str(file)}
    if file is not None or backbone not in HUB_BACKBONES:
        model["pretrained_from_hub"] = False
    extra: dict[str, Any] = {"model": model}
    if backbone in CNN_BACKBONES and backbone != params.model.backbone:
        extra[spec.stage] = {"optimizer": CNN_OPTIMIZER}
    elif backbone not in VIT_DEPTHS and backbone != params.model.backbone:
        if getattr(params, spec.stage).optimizer.layer_decay is not None:
            extra[spec.stage] = {"optimizer": {"layer_decay": None}}
    return merge_overrides(spec.overrides, extra)


def ablation_params(params: Params, name: str) -> Params:
    """params with `ablation_overrides` of ablation `name` merged in (validated)."""
    overrides = ablation_overrides(params, name)
    return parse_params(merge_overrides(params.model_dump(mode="json"), overrides), f"ablation {name}")


def pretrained_note(params: Params, name: str) -> str | None:
    """One line when Table 1's ``baseline_<b>`` has no weights file of its own (random init), else None."""
    backbone = ablation(name).overrides.get("model", {}).get("backbone")
    run = ablation_params(params, name).model
    if backbone is None or run.pretrained is not None or run.pretrained_from_hub:
        return None
    if params.model.pretrained is None and not params.ablations.pretrained and not params.model.pretrained_from_hub:
        return None  # no encoder has weights: the whole recipe starts from random init (the embedded default)
    hub = " nor timm hub weights" if params.model.pretrained_from_hub else ""
    return (
        f"{name}: no weights file{hub} for {backbone} (params ablations.pretrained.{backbone}); its encoder "
        f"starts from random init, not the paper's ImageNet weights"
    )
