"""The models of the recipe and their roles, named once: read by the workflow (common.smk), `stcl plan`,
`stcl evaluate` and `stcl tables`.

* trained stages: `stcl.params.TRAIN_STAGES`; those predicting VSPW classes are also outputs of their own;
* teacher: ``teacher.members`` with ``teacher.weights`` (paper Table 4 "Teacher", the pseudo labeller);
* ensemble: ``infer.models`` with ``infer.weights`` (paper 3.4, the final predictions);
* evaluated outputs: `EVALUATED` on val (Tables 2-4 and the final row); test predicts the ensemble only.

`outputs` gives each output's members, weights and the params keys that name them; `split_members` the
trained stages one inference pass over a split runs (each once per frame); `model_info` / `model_keys` the
recipe `stcl evaluate` records for an output and the params keys that recipe reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stcl.params import TRAIN_STAGES, Params

__all__ = [
    "PRETRAIN_COCO", "TRAIN_STCL", "TRAIN_ADE", "TRAIN_STUDENT", "TEACHER", "ENSEMBLE",
    "EVALUATED", "SPLIT_OUTPUTS", "Role", "outputs", "split_members", "model_info", "model_keys",
]

# The trained stages, as `stcl.params` names them (in chain order): COCO pretraining (paper 2.2), the STCL
# model (2.1), the model trained with ADE20K (2.2), the student of the pseudo labels (2.3).
PRETRAIN_COCO, TRAIN_STCL, TRAIN_ADE, TRAIN_STUDENT = TRAIN_STAGES
TEACHER = "teacher"  # the pseudo labeller: teacher.members (Table 4 "Teacher")
ENSEMBLE = "ensemble"  # the final predictions: infer.models (3.4)
EVALUATED = (TRAIN_STCL, TRAIN_ADE, TEACHER, TRAIN_STUDENT, ENSEMBLE)
SPLIT_OUTPUTS = {"val": EVALUATED, "test": (ENSEMBLE,)}


@dataclass(frozen=True)
class Role:
    """An output: the weighted mean of ``members``' probabilities (equal weights when None); ``keys`` are the
    params keys that name it (part of the rerun trigger of the jobs that write it)."""

    members: tuple[str, ...]
    weights: tuple[float, ...] | None
    keys: tuple[str, ...]


def outputs(params: Params) -> dict[str, Role]:
    """Every output a split's pass can write: each trained stage predicting VSPW classes, teacher, ensemble."""
    roles = {s: Role((s,), None, ()) for s in TRAIN_STAGES if params.stage(s).label_space == "vspw"}
    roles[TEACHER] = Role(tuple(params.teacher.members), params.teacher.weights, ("teacher",))
    roles[ENSEMBLE] = Role(tuple(params.infer.models), params.infer.weights, ("infer.models", "infer.weights"))
    return roles


def split_members(params: Params, split: str) -> list[str]:
    """The trained stages the pass over ``split`` runs, in first-use order, each once."""
    roles = outputs(params)
    return list(dict.fromkeys(m for o in SPLIT_OUTPUTS[split] for m in roles[o].members))


def model_info(params: Params, model: str) -> dict[str, Any]:
    """Backbone and recipe of ``model`` (a stage, teacher, ensemble, or anything else: backbone only)."""
    info: dict[str, Any] = {"backbone": params.model.backbone}
    if model in TRAIN_STAGES:
        stage = params.stage(model)
        info["datasets"] = [d.name for d in stage.datasets]
        info["init"] = stage.init
        info["stcl"] = {"enabled": stage.stcl.enabled, "dim": stage.stcl.dim, "tau": stage.stcl.tau}
    elif model == TEACHER:
        info["members"] = list(params.teacher.members)
    elif model == ENSEMBLE:
        info["members"] = list(params.infer.models)
    return info


def model_keys(model: str) -> tuple[str, ...]:
    """The params keys `model_info` reads for ``model`` (besides ``model.backbone``)."""
    if model in TRAIN_STAGES:
        return (f"{model}.datasets", f"{model}.init", f"{model}.stcl")
    return {TEACHER: ("teacher.members",), ENSEMBLE: ("infer.models",)}.get(model, ())
