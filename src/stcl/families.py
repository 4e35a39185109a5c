"""The encoder families: one row each, the only list of ``model.backbone`` names and weights-file formats.

A row names the module that owns the family (`stcl.models.swin`, `stcl.models.resnet`, `stcl.models.cswin`,
`stcl.models.dino`), the backbones it builds (``model.backbone`` name → the module's variant) and the public
file formats its module detects. Readers: `stcl.params` (the choices of ``model.backbone``, which are CNNs, which reach timm's hub, ViT depths),
`stcl.models.encoders.build_encoder`, `stcl.models.files.detect_format` and ``stcl weights``.

Each family module provides, beside its encoder class (whose ``weights_state`` maps the file keys):

* ``build(request: stcl.models.encoder_base.BuildRequest) -> Encoder``;
* ``file_format(family, keys) -> str | None``: the format of a file whose (backbone) keys are this family's
  layout, else None; the families' answers never overlap.

Adding a family: one module with these two functions and an `stcl.models.encoder_base.Encoder`, and one row
here. Kept free of torch so that validating params imports none.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

__all__ = [
    "Family", "FAMILIES", "BACKBONES", "CNN_BACKBONES", "HUB_BACKBONES", "VIT_DEPTHS", "FORMATS", "family_of", "family_module",
]


@dataclass(frozen=True)
class Family:
    """One encoder family: its name (as `stcl.models.files.WeightsFile.backbone`), its module, its backbones
    (``model.backbone`` name → variant of the module) and its file formats (name → what the file is)."""

    name: str
    module: str
    backbones: dict[str, str]
    formats: dict[str, str]
    cnn: bool = False  # paper 3.2 trains CNNs with SGD, transformers with AdamW (`stcl.ablations`)
    hub: tuple[str, ...] = ()  # backbones whose weights timm's hub holds (`model.pretrained_from_hub`)
    vit_depths: dict[str, int] | None = None  # ViT blocks of each backbone (`model.out_indices` applies to these)


_SWIN = {
    # paper (Swin-L, IN-22K, 384); swin_mini: reduced, for CPU runs (random init)
    n: n
    for n in (
        "swin_large_patch4_window12_384",
        "swin_base_patch4_window12_384",
        "swin_tiny_patch4_window7_224",
        "swin_mini",
    )
}

FAMILIES: tuple[Family, ...] = (
    Family(
        "swin",
        "stcl.models.swin",
        _SWIN,
        {
            "swin-official": "the official Microsoft Swin release ({'model': ...})",
            "swin-timm": "timm Swin weights",
        },
        hub=("swin_large_patch4_window12_384", "swin_base_patch4_window12_384", "swin_tiny_patch4_window7_224"),
    ),
    # mmseg's ResNetV1c (deep stem) = timm resnet50c / resnet101c
    Family(
        "resnet",
        "stcl.models.resnet",
        {"resnet50": "resnet50c", "resnet101": "resnet101c", "resnet18": "resnet18"},
        {"resnet-timm": "timm ResNet / ResNeSt weights"},
        cnn=True,
        hub=("resnet50", "resnet101", "resnet18"),
    ),
    Family(
        "resnest",
        "stcl.models.resnet",
        {"resnest101e": "resnest101e"},
        {"resnet-timm": "timm ResNet / ResNeSt weights"},
        cnn=True,
        hub=("resnest101e",),
    ),
    Family(
        "cswin",
        "stcl.models.cswin",
        {"cswin_large": "large", "cswin_large_224": "large_224", "cswin_tiny": "tiny", "cswin_mini": "mini"},
        {"cswin-official": "the official microsoft/CSWin-Transformer release"},
    ),
    # ViT-L + simple feature pyramid (stcl.models.dino); *_tiny: reduced, random init
    Family(
        "dinov2",
        "stcl.models.dino",
        {n: n for n in ("dinov2_vitl14", "dinov2_vitl14_reg4", "dinov2_tiny")},
        {
            "dinov2-official": "the official facebookresearch/dinov2 release",
            "dinov2-timm": "timm DINOv2 weights",
        },
        vit_depths={"dinov2_vitl14": 24, "dinov2_vitl14_reg4": 24, "dinov2_tiny": 4},
    ),
    Family(
        "dinov3",
        "stcl.models.dino",
        {n: n for n in ("dinov3_vitl16", "dinov3_tiny")},
        {
            "dinov3-official": "the official facebookresearch/dinov3 release",
            "dinov3-timm": "timm DINOv3 weights",
            "dinov3-hf": "Hugging Face transformers DINOv3 weights (facebook/dinov3-*)",
        },
        vit_depths={"dinov3_vitl16": 24, "dinov3_tiny": 4},
    ),
)

#: valid ``model.backbone`` values, family by family
BACKBONES: tuple[str, ...] = tuple(name for fam in FAMILIES for name in fam.backbones)
#: the CNN encoders (trained with SGD in Table 1)
CNN_BACKBONES: tuple[str, ...] = tuple(name for fam in FAMILIES if fam.cnn for name in fam.backbones)
#: the backbones `model.pretrained_from_hub` may fetch from timm's hub (the CNNs first)
HUB_BACKBONES: tuple[str, ...] = tuple(name for fam in sorted(FAMILIES, key=lambda f: not f.cnn) for name in fam.hub)
#: ViT backbone → its number of blocks (the range of `model.out_indices`)
VIT_DEPTHS: dict[str, int] = {name: depth for fam in FAMILIES for name, depth in (fam.vit_depths or {}).items()}

#: every format `stcl.models.files.detect_format` names → what the file is; the first two span the families
FORMATS: dict[str, str] = {
    "stcl-model": "a model file of this project (stcl-model/1)",
    "mmseg": "an mmsegmentation checkpoint (state_dict with backbone / decode_head / auxiliary_head)",
    **{fmt: what for fam in FAMILIES for fmt, what in fam.formats.items()},
}


def family_of(backbone: str) -> Family:
    """The row whose backbones include ``backbone``; ValueError listing the valid names otherwise."""
    for fam in FAMILIES:
        if backbone in fam.backbones:
            return fam
    raise ValueError(f"model.backbone: unknown encoder {backbone!r}; valid: {', '.join(BACKBONES)}")


def family_module(fam: Family) -> ModuleType:
    """The module that owns ``fam`` (imported on first use: it imports torch)."""
    return importlib.import_module(fam.module)
