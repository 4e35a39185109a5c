"""The named presets of params.yaml: complete recipes `stcl params --preset NAME` prints.

* ``tiny``: the schema's defaults (`stcl.params`), the embedded scale that runs on a CPU in minutes;
* ``paper``: the paper's scale (`PAPER_OVERRIDES`: paper sections 3.2-3.4 and mmsegmentation's Swin UperNet
  configs), ``stcl params --preset paper > params.yaml``;
* ``dinov2`` / ``dinov3``: the paper's recipe on a DINO ViT-L encoder (not the paper: `_dino_overrides`).

A preset is written as a hand-written params file would be (overrides of the defaults; `train:` fills each
stage) and validated by `stcl.params.parse_params`; `recipe_dict` is what a printed file states: every key.
"""

from __future__ import annotations

import copy
from typing import Any

from stcl.params import Params, ParamsError, parse_params

__all__ = ["PAPER_OVERRIDES", "PRESETS", "preset_params", "recipe_dict"]

# The paper's scale (paper 3.2-3.4 and mmseg's Swin UperNet configs), as overrides of the tiny defaults.
# `stcl params --preset paper > params.yaml` writes a complete params.yaml at this scale.
_PAPER_TRAIN = {
    "iters": 20000,
    "batch_size": 16,  # 8 GPUs x 2 images; fewer GPUs reach it by accumulation
    "batch_per_device": 2,
    "workers": 4,
    "amp": "bf16",
    "checkpoint_every": 2000,
    "log_every": 50,
    "stcl": {"dim": 512, "tau": 0.07, "chunk_size": 4096},
    "optimizer": {"name": "adamw", "lr": 7e-5, "weight_decay": 0.01, "warmup_iters": 1500},
}
PAPER_OVERRIDES: dict[str, Any] = {
    "data": {"synthetic": False},  # VSPW_480p, COCO panoptic and ADE20K in place (the embedded data is 64x96)
    "clips": {"reference_offsets": [-9, -6, -3]},
    "augment": {"scale": [854, 480], "crop_size": [768, 768]},
    "model": {
        "backbone": "swin_large_patch4_window12_384",
        "channels": 512,
        "aux_channels": 256,
        "drop_path": 0.3,
        # mmseg's UperNet configs: norm_cfg = dict(type="SyncBN"): batch statistics over all GPUs (2 clips each
        # on 8 GPUs; 1 each on 2 nodes, where plain BatchNorm would see one sample per GPU)
        "sync_bn": True,
    },
    "train": _PAPER_TRAIN,
    "pretrain_coco": {"iters": 80000},
    # VSPW train (198,244 frames) and the pseudo-labelled test frames (28,887) as one combined dataset.
    "train_student": {"iters": 20000, "datasets": [{"name": "vspw", "weight": 6.86}, {"name": "pseudo", "weight": 1.0}]},
    "pseudo_label": {"shards": 8, "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]},
    "infer": {
        "scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
        "crop_size": [768, 768],
        "stride": [512, 512],
        "batch_size": 8,
        # bf16 autocast on the GPU (float32 on CPU); gpu_check.py measures its argmax agreement with float32.
        # 3 models x 44 TFLOP per frame (mmseg's windows) over 24.5K val frames is ~8 A100-hours: 8 shards of ~1 h.
        "amp": "bf16",
        "shards": 8,
    },
    "evaluate": {"workers": 8},
    "cluster": {
        # `stcl plan` projects train_stcl/train_student at ~1.3 h on 8 x A100-80GB (35% MFU; 4.5 h with
        # model.projection_input: fpn_bottleneck): 12 h leaves margin
        # and schedules sooner than 48 h; a job past its limit resumes from its last checkpoint when requeued.
        "train": {"gpus": 8, "cpus_per_gpu": 8, "mem_mb": 256000, "runtime": 720},
        "infer": {"gpus": 1, "cpus_per_gpu": 8, "mem_mb": 64000, "runtime": 240},
    },
}


def _dino_overrides(backbone: str) -> dict[str, Any]:
    """The paper's recipe (data, clips, STCL, teacher, pseudo labels, TTA, 8 GPUs) on a DINO ViT-L encoder.

    NOT the paper and not a published recipe: no VSPW number exists for UperNet + STCL on these encoders.
    What changes, and where it comes from: mmseg 1.2.2's BEiT-L UperNet config
    (``configs/beit/beit-large_upernet_8xb1-amp-160k_ade20k-640x640.py``: AdamW lr 2e-5, weight decay 0.05,
    layer-wise lr decay 0.95 over 24 layers, drop path 0.2, Feature2Pyramid neck); gradient checkpointing of
    the 24 blocks so that 2 clips of 4 frames at 768² fit 80 GB in bf16 (`stcl plan`). Crop, stride and
    scales stay the paper's: with patch 14 a 768 crop is padded to 770 (55×55 tokens), with patch 16 it is
    48×48 tokens. Set model.pretrained to the official or timm weights file of the backbone.
    """
    optimizer = {**_PAPER_TRAIN["optimizer"], "lr": 2e-5, "weight_decay": 0.05, "layer_decay": 0.95}
    return {
        **PAPER_OVERRIDES,
        "model": {**PAPER_OVERRIDES["model"], "backbone": backbone, "drop_path": 0.2, "grad_checkpointing": True},
        "train": {**_PAPER_TRAIN, "optimizer": optimizer},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "paper": PAPER_OVERRIDES,
    "dinov2": _dino_overrides("dinov2_vitl14_reg4"),  # with registers, as EoMT / VidEoMT use DINOv2-L
    "dinov3": _dino_overrides("dinov3_vitl16"),
}


def recipe_dict(params: Params) -> dict[str, Any]:
    """params as a printed params file states them (`stcl params`, `stcl ablation`): every key of every section.

    Each training stage section is complete, so reading the file back gives the same params whatever
    ``train:`` and the stage defaults (`stcl.params.STAGE_RECIPES`) say: a stage's value never falls back to a default
    that differs between stages (the paper's 20,000-iteration student stays 20,000).
    """
    return params.model_dump(mode="json")


def preset_params(name: str) -> Params:
    """The validated params of a named preset: "tiny" (the default), "paper", or "dinov2" / "dinov3" (the paper's
    recipe on a DINO ViT-L encoder; not the paper, see `_dino_overrides`)."""
    if name not in PRESETS:
        raise ParamsError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    # A preset is a hand-written params file: `train:` fills each stage, then the stage's recipe and own keys.
    return parse_params(copy.deepcopy(PRESETS[name]), f"preset {name}")
