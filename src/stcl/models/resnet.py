"""The ResNet and ResNeSt families: timm CNNs read at their four residual stages, and their weights files.

`TimmCnnEncoder` wraps the full timm model and reads its stages through timm's ``forward_intermediates``, so
the state-dict keys are timm's own (``model.layer1.0.conv1.weight``) and a timm checkpoint loads unchanged.
``resnet50`` is timm's ``resnet50c``: the deep stem (three 3×3 convs, 32-32-64) that mmseg calls ResNetV1c.
ResNeSt needs at least two samples per BatchNorm in train mode.

Files (`file_format`, `TimmCnnEncoder.weights_state`): mmseg model-zoo checkpoints, timm's ImageNet weights
and mmcv's (deep stem named ``stem.N``, e.g. ``resnet50_v1c-2cccc1ad.pth``), all ``resnet-timm``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from stcl.models.encoder_base import BuildRequest, Encoder

__all__ = ["TimmCnnEncoder", "build", "file_format", "mmseg_resnet_to_timm", "timm_resnet_to_mmseg"]


class TimmCnnEncoder(Encoder):
    """A timm CNN (ResNet family) read at its four residual stages.

    Args:
        name: timm model name (``resnet18``, ``resnet50c``, ``resnest101e``, …).
        drop_path: stochastic depth rate.
        pretrained_from_hub: let timm fetch its pretrained weights (network access; opt-in).
    """

    def __init__(self, name: str, *, drop_path: float = 0.0, pretrained_from_hub: bool = False) -> None:
        super().__init__()
        import timm

        self.timm_name = name
        self.model = timm.create_model(name, pretrained=pretrained_from_hub, num_classes=0, drop_path_rate=drop_path)
        infos = self.model.feature_info
        # Stage indices whose reduction is 4, 8, 16, 32 (index 0 is the stride-2 stem).
        self._indices = [i for i, info in enumerate(infos) if info["reduction"] in (4, 8, 16, 32)]
        if len(self._indices) != 4:
            raise ValueError(f"timm model {name!r} does not expose stages at strides 4/8/16/32: {infos}")
        self.model.prune_intermediate_layers(self._indices, prune_head=True)
        self.out_channels = tuple(int(infos[i]["num_chs"]) for i in self._indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised → four maps (B,C_i,H/s_i,W/s_i)."""
        return list(self.model.forward_intermediates(x, indices=self._indices, intermediates_only=True))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    @property
    def family(self) -> str:  # type: ignore[override]
        return "resnest" if "resnest" in self.timm_name else "resnet"

    def weights_state(self, state: dict, wf) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
        """mmseg (``backbone.`` stripped), mmcv deep-stem (``stem.N``) and timm ImageNet layouts → ours."""
        if wf.format == "mmseg":
            state = mmseg_resnet_to_timm(state)
        elif wf.format == "resnet-timm" and any(k.startswith("stem.") for k in state):
            # mmcv / mmseg ImageNet files (open-mmlab://resnet50_v1c, resnest101): deep stem named stem.N
            state = mmseg_resnet_to_timm({k: v for k, v in state.items() if not k.startswith("fc.")})
        elif wf.format == "resnet-timm":
            state = {f"model.{k}": v for k, v in state.items() if not k.startswith(("fc.", "head."))}
        return state, (), ""


def mmseg_resnet_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg ResNetV1c / ResNeSt keys → timm resnet*c / resnest*e keys under ``model.``.

    The deep stem ``stem.{0,3,6}`` (convs) and ``stem.{1,4}`` (BNs) becomes ``conv1.N``, ``stem.7`` becomes
    ``bn1``; every other name is shared (timm's ResNeSt split attention is ``conv``, ``bn0``, ``fc1``,
    ``bn1``, ``fc2`` as mmseg's; its average-pool downsample is ``downsample.{1,2}`` in both).
    """
    out = {}
    for key, value in state.items():
        new = re.sub(r"^stem\.([013456])\.", r"conv1.\1.", key)
        new = re.sub(r"^stem\.7\.", "bn1.", new)
        out[f"model.{new}"] = value
    return out


def timm_resnet_to_mmseg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `mmseg_resnet_to_timm`."""
    out = {}
    for key, value in state.items():
        if not key.startswith("model."):
            raise ValueError(f"unexpected ResNet encoder key {key!r}")
        new = re.sub(r"^conv1\.(\d)\.", r"stem.\1.", key[len("model.") :])
        new = re.sub(r"^bn1\.", "stem.7.", new)
        out[new] = value
    return out


def build(request: BuildRequest) -> TimmCnnEncoder:
    """The `TimmCnnEncoder` of timm model ``variant`` (``out_indices``: ViTs only, refused by params validation)."""
    if request.device is not None and torch.device(request.device).type == "meta":
        with torch.device("meta"):
            return TimmCnnEncoder(request.variant, drop_path=request.drop_path)
    return TimmCnnEncoder(request.variant, drop_path=request.drop_path, pretrained_from_hub=request.pretrained_from_hub)


def _resnest(keys: Sequence[str]) -> bool:
    return any(".conv2.fc1." in k or ".conv2.conv." in k or ".conv2.bn0." in k for k in keys)


def file_format(family: str, keys: Sequence[str]) -> str | None:
    """``resnet-timm`` when ``keys`` are a ``family`` (``resnet`` or ``resnest``: split attention in its
    ``conv2``) backbone's, in the timm, mmcv or mmseg layout; else None."""
    if not any(k.startswith(("layer1.", "stem.", "conv1.")) for k in keys):
        return None
    return "resnet-timm" if _resnest(keys) == (family == "resnest") else None
