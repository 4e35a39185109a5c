"""Build one training stage of params.yaml into a :class:`stcl.train.loop.TrainJob`.

Stage → model with ``len(class_names(stage.label_space))`` classes (124 VSPW, 133 COCO) and a projection
head when STCL is enabled; datasets in the stage's label space; init weights from the previous stage's
``model.pt`` (classifier/projection tensors of another shape are re-initialised and reported); the loss of
paper eq. 3 with STCL on clip batches only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stcl.data.classes import class_names
from stcl.data.clips import DataPaths, build_dataset
from stcl.losses import segmentor_loss
from stcl.models import build_segmentor
from stcl.models.checkpoints import load_init_weights, save_model
from stcl.params import Params
from stcl.train.loop import LossFn, TrainJob, seed_everything
from stcl.train.seeds import stage_seed

__all__ = ["params_fingerprint", "make_loss_fn", "build_job"]


def params_fingerprint(params: Params, stage_name: str) -> str:
    """sha256 of every params section that shapes the run: an unfinished run resumes only with the same one.

    The code is deliberately not part of it (resuming a preempted run after a bug fix is common practice);
    a run whose model.pt was written is never resumed (see `stcl.train.loop.train`), so a rerun after a code
change retrains.
    """
    shaping = {
        "stage": params.stage(stage_name).model_dump(mode="json"),
        "model": params.model.model_dump(mode="json"),
        "clips": params.clips.model_dump(mode="json"),
        "augment": params.augment.model_dump(mode="json"),
        "data": params.data.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def make_loss_fn(params: Params, stage_name: str) -> LossFn:
    """CE + aux_weight·aux (+ stcl.weight·STCL on clip batches), see `stcl.losses.segmentor_loss`.

    On batches without STCL the projection output is added with weight 0, so every parameter takes part in
    the graph each step (DDP without ``find_unused_parameters``) while the loss value is unchanged.
    """
    stage = params.stage(stage_name)
    stcl = stage.stcl if stage.stcl.enabled else None

    def loss_fn(out: Any, labels: torch.Tensor, use_stcl: bool) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = segmentor_loss(out, labels, stage.aux_weight, stcl if use_stcl else None)
        if not use_stcl and out.proj is not None:
            total = total + 0.0 * out.proj.float().sum()
        parts.pop("total", None)  # logged as "loss"
        return total, parts

    return loss_fn


def build_job(
    params: Params,
    stage_name: str,
    out_dir: Path,
    paths: DataPaths,
    *,
    init_path: Path | None = None,
    is_main: bool = True,
) -> TrainJob:
    """Everything `train` needs for stage `stage_name`.

    Args:
        params: validated params.
        stage_name: one of TRAIN_STAGES.
        out_dir: the stage's output folder.
        paths: the datasets the stage mixes (see `stcl.data.clips.DataPaths`).
        init_path: init weights file; required when ``stage.init`` is set, ignored otherwise.
        is_main: print the init report (rank 0 only).

    Raises:
        ValueError: ``init_path`` missing for a stage with ``init``, or a path of ``paths`` the stage needs.
        FileNotFoundError: the init weights file (named) does not exist.
    """
    stage = params.stage(stage_name)
    names = class_names(stage.label_space)
    proj_dim = stage.stcl.dim if stage.stcl.enabled else None
    seed = stage_seed(stage.seed, stage.seed_stream or stage_name)  # this run's own stream (stcl.train.seeds)
    seed_everything(seed)  # the same initial weights on every rank
    model: nn.Module = build_segmentor(params.model, len(names), proj_dim, load_pretrained=stage.init is None)
    summary: dict[str, Any] = {"label_space": stage.label_space, "num_classes": len(names)}
    if stage.init is not None:
        if init_path is None:
            raise ValueError(
                f"init_path: stage {stage_name!r} starts from {stage.init!r} (params {stage_name}.init): "
                f"pass its model.pt with --init PATH"
            )
        path = Path(init_path)
        if not path.exists():  # a folder is named as such by the reader
            raise FileNotFoundError(
                f"{path}: init weights of stage {stage_name!r} (init: {stage.init}) not found; "
                f"run `stcl train --stage {stage.init}` first or pass another --init PATH"
            )
        report = load_init_weights(model, path, exclude=params.model.load_exclude)
        if is_main:
            print(f"stcl train: init {stage_name} from {report}", flush=True)
        summary["init"] = {
            "source": str(path),
            "loaded": report.loaded,
            "missing": list(report.missing),
            "unexpected": list(report.unexpected),
            "mismatched": list(report.mismatched),
        }
    datasets = [
        build_dataset(d.name, params, paths, "train", label_space=stage.label_space, seed=seed + i)
        for i, d in enumerate(stage.datasets)
    ]
    summary["datasets"] = {d.name: {"samples": len(ds), "weight": d.weight} for d, ds in zip(stage.datasets, datasets)}

    def save(path: Path, trained: nn.Module, iterations: int | None = None) -> None:
        """The weights file; ``iterations`` it was trained for (default: the stage's ``iters``)."""
        save_model(
            path,
            trained,
            model_params=params.model,
            num_classes=len(names),
            proj_dim=proj_dim,
            label_space=stage.label_space,
            class_names=names,
            extra={"stage": stage_name, "iters": stage.iters if iterations is None else iterations, "init": stage.init},
        )

    return TrainJob(
        name=stage_name,
        stage=stage,
        model=model,
        datasets=datasets,
        loss_fn=make_loss_fn(params, stage_name),
        out_dir=Path(out_dir),
        fingerprint=params_fingerprint(params, stage_name),
        save_model=save,
        seed=seed,
        sync_bn=params.model.sync_bn,
        summary=summary,
    )
