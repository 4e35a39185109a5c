"""mmsegmentation 1.2.2's own models, built from the configs shipped in its wheel, for equivalence tests.

mmseg, mmengine and mmcv-lite are test dependencies (`workflow/setup.sh --tests`). mmcv-lite has no compiled
``mmcv.ops``; ``mmseg.models`` imports it at module level for heads these tests never build, so
`stub_mmcv_ops` puts a module there whose every member raises when used.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
from torch import nn


class _OpsStub(types.ModuleType):
    """``mmcv.ops`` without its compiled kernels: any member is a class/function that raises if called."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def fail(*args, **kwargs):
            raise RuntimeError(f"mmcv.ops.{name} was called, but mmcv.ops is a test stub (mmcv-lite)")

        return type(name, (nn.Module,), {"__init__": fail, "__call__": fail})


def stub_mmcv_ops() -> None:
    """Install the raising ``mmcv.ops`` stub (idempotent), then import mmseg's model registry."""
    if not isinstance(sys.modules.get("mmcv.ops"), _OpsStub):
        sys.modules["mmcv.ops"] = _OpsStub("mmcv.ops")
    import mmseg.models  # noqa: F401 - registers the models
    from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)


def config_path(rel: str) -> Path:
    import mmseg

    path = Path(mmseg.__file__).parent / ".mim" / "configs" / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config not shipped in this mmseg wheel")
    return path


def build_mmseg(rel: str, num_classes: int | None = None, seed: int = 0, **backbone_overrides) -> nn.Module:
    """mmseg EncoderDecoder of the config ``rel`` (under mmseg's configs), eval mode, seeded random weights.

    Every float tensor (weights, BN running statistics, Swin position tables) is redrawn so that nothing
    sits at a trivial init (zeros, ones) that would hide a wrong mapping.
    """
    stub_mmcv_ops()
    from mmengine.config import Config
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(config_path(rel)))
    model_cfg = cfg.model
    model_cfg.pop("data_preprocessor", None)
    model_cfg.backbone.pop("init_cfg", None)
    model_cfg.backbone.pop("pretrained", None)
    model_cfg.pretrained = None
    model_cfg.backbone.update(backbone_overrides)
    if num_classes is not None:
        model_cfg.decode_head.num_classes = num_classes
        model_cfg.auxiliary_head.num_classes = num_classes
    if model_cfg.backbone.get("norm_cfg", {}).get("type") == "SyncBN":
        model_cfg.backbone.norm_cfg = dict(type="BN", requires_grad=True)
    for head in ("decode_head", "auxiliary_head"):
        model_cfg[head].norm_cfg = dict(type="BN", requires_grad=True)
    model = MODELS.build(model_cfg)
    randomize(model, seed)
    return model.eval()


def randomize(model: nn.Module, seed: int) -> None:
    """Redraw every float parameter and buffer: N(0, s²) scaled per tensor, positive BN variances."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith(("norm.weight", "bn.weight")) or ".bn" in name and name.endswith("weight"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif t.dim() >= 2 and not name.endswith("relative_position_bias_table"):
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
            else:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))


def mmseg_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """Backbone stages, decode logits and aux logits of an mmseg EncoderDecoder on normalised x (B,3,H,W)."""
    with torch.no_grad():
        feats = model.backbone(x)
        feats_in = model.neck(feats) if getattr(model, "with_neck", False) else feats
        return {
            "stages": [f.clone() for f in feats],
            "logits": model.decode_head.forward(list(feats_in)),
            "aux": model.auxiliary_head.forward(list(feats_in)),
        }


def ours_outputs(segmentor: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """The same outputs from a `stcl.models.Segmentor` on normalised x (B,3,H,W)."""
    with torch.no_grad():
        feats = segmentor.backbone(x)
        return {
            "stages": feats,
            "logits": segmentor.decode_head(feats),
            "aux": segmentor.auxiliary_head(feats[2]),
        }


def max_diffs(a: dict[str, object], b: dict[str, object]) -> dict[str, float]:
    """Max |Δ| per stage and head; shapes must agree (ValueError otherwise)."""
    out = {}
    for i, (x, y) in enumerate(zip(a["stages"], b["stages"])):
        if x.shape != y.shape:
            raise ValueError(f"stage {i}: shapes {tuple(x.shape)} vs {tuple(y.shape)}")
        out[f"stage{i}"] = (x - y).abs().max().item()
    for key in ("logits", "aux"):
        if a[key].shape != b[key].shape:
            raise ValueError(f"{key}: shapes {tuple(a[key].shape)} vs {tuple(b[key].shape)}")
        out[key] = (a[key] - b[key]).abs().max().item()
    return out
