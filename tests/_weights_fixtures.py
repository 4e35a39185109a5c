"""Tiny weights files: `model_file`, a stcl model file of random weights (the tests that run `stcl predict`,
`infer`, `train --init` on one), and `weights_files`, one file in every layout `stcl` reads (`stcl.models.files`,
`stcl.flow.raft`) for the hardening tests."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from _data_fixtures import DATA, reference_maker
from _flow_fixtures import raft_file

from stcl.params import ModelParams, Params

CHANNELS = {"channels": 8, "aux_channels": 8}


def model_file(
    path: Path, *, seed: int = 0, label_space: str = "vspw", model_params: ModelParams | None = None
) -> Path:
    """A stcl model file of ``model_params`` (default: the default tiny architecture, params.yaml `model`) with
    random weights (``seed``), no download, for the VSPW (124) or COCO (133) classes; returns ``path``."""
    from stcl.data.classes import COCO_CLASSES, VSPW_CLASSES
    from stcl.models import build_segmentor, save_model

    names = VSPW_CLASSES if label_space == "vspw" else COCO_CLASSES
    params = model_params or Params().model
    torch.manual_seed(seed)
    model = build_segmentor(params, len(names), load_pretrained=False)
    return save_model(path, model, model_params=params, num_classes=len(names), proj_dim=None,
                      label_space=label_space, class_names=names)
_TIMM_DINO = {"dinov2": "vit_large_patch14_dinov2", "dinov3": "vit_large_patch16_dinov3_qkvb"}


def _dino_official(name: str) -> dict[str, torch.Tensor]:
    maker = reference_maker("make_dino_reference")
    entry = torch.load(DATA / "dino_official_reference.pt", weights_only=True)["models"][name]
    shapes = {k: torch.Size(v) for k, v in entry["shapes"].items()}
    return maker.seeded_state(shapes, skip=set(entry["buffers"])) | dict(entry["buffers"])


def _dino_timm(name: str) -> dict[str, torch.Tensor]:
    """timm's own layout of the official file: its model and its ``checkpoint_filter_fn``."""
    import timm

    from stcl.models.dino import build_dino

    spec = build_dino(f"{name}_tiny", device="meta").spec
    kwargs = dict(embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.heads, img_size=spec.img_size)
    model = timm.create_model(_TIMM_DINO[name], pretrained=False, num_classes=0, **kwargs)
    module = importlib.import_module(type(model).__module__)
    return dict(module.checkpoint_filter_fn(_dino_official(name), model))


def _segmentor(backbone: str):  # noqa: ANN202
    from stcl.models import build_segmentor
    from stcl.params import ModelParams

    torch.manual_seed(0)
    return build_segmentor(ModelParams(backbone=backbone, **CHANNELS), 124), ModelParams(backbone=backbone, **CHANNELS)


def weights_files(folder: Path) -> dict[str, tuple[Path, object, str]]:
    """One small file per layout under ``folder``: name → (path, its loaded content, the backbone it fits)."""
    from stcl.data.classes import VSPW_CLASSES
    from stcl.flow.raft import official_to_torchvision
    from stcl.models import build_encoder, save_model
    from stcl.models.convert import to_mmseg_checkpoint

    files: dict[str, tuple[Path, object, str]] = {}

    def put(name: str, content: object, backbone: str, suffix: str = ".pth") -> None:
        path = folder / f"{name}{suffix}"
        torch.save(content, path)
        files[name] = (path, content, backbone)

    model, params = _segmentor("resnet18")
    path = folder / "stcl-model.pt"
    save_model(
        path, model, model_params=params, num_classes=124, proj_dim=None, label_space="vspw", class_names=VSPW_CLASSES
    )
    files["stcl-model"] = (path, torch.load(path, weights_only=True), "resnet18")
    swin, _ = _segmentor("swin_mini")
    put("mmseg", {"state_dict": to_mmseg_checkpoint(swin.state_dict(), window=7), "meta": {"epoch": 1}}, "swin_mini")
    official = {}
    for key, value in build_encoder("swin_mini").model.state_dict().items():
        if ".downsample." in key:  # PatchMerging ends stage N in the official layout
            n = int(key.split(".")[1])
            key = key.replace(f"layers.{n}.downsample", f"layers.{n - 1}.downsample")
        official[key] = value
    put("swin-official", {"model": official}, "swin_mini")
    timm_swin = {
        k[len("model.") :]: v for k, v in build_encoder("swin_mini").state_dict().items() if k.startswith("model.")
    }
    put("swin-timm", timm_swin, "swin_mini")
    put("cswin-official", {"state_dict_ema": build_encoder("cswin_mini").state_dict()}, "cswin_mini")
    put("resnet-timm", {k[len("model.") :]: v for k, v in build_encoder("resnet18").state_dict().items()}, "resnet18")
    for fam in ("dinov2", "dinov3"):
        put(f"{fam}-official", _dino_official(fam), f"{fam}_tiny")
        put(f"{fam}-timm", _dino_timm(fam), f"{fam}_tiny")
    from safetensors.torch import load_file

    hf = folder / "dinov3-hf.safetensors"
    hf.write_bytes((DATA / "dinov3_tiny_hf.safetensors").read_bytes())
    files["dinov3-hf"] = (hf, load_file(str(hf)), "dinov3_tiny")
    raft = raft_file(folder / "raft-official.pth")
    files["raft-official"] = (raft, torch.load(raft, weights_only=True), "raft")
    put("raft-torchvision", official_to_torchvision(files["raft-official"][1]), "raft")
    return files
