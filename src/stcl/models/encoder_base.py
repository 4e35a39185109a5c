"""The encoder interface every backbone family implements (`stcl.families`): four feature maps at strides
4, 8, 16 and 32, the parameter names AdamW must not decay, and the mapping of its weights files' keys.

Its own module so that the family modules (`stcl.models.swin`, `stcl.models.resnet`, `stcl.models.cswin`,
`stcl.models.dino`) import it without importing each other. Each family maps its own files'
keys (`Encoder.weights_state`), so `stcl.models.loading` imports no encoder module (no import cycle;
``tests/test_import_graph.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from stcl.models.files import WeightsFile

__all__ = ["Encoder", "BuildRequest"]


@dataclass(frozen=True)
class BuildRequest:
    """What `stcl.models.encoders.build_encoder` asks of a family module's ``build(request)``: the module's
    ``variant`` (a `stcl.families` row maps ``model.backbone`` to it), stochastic depth, timm's hub weights
    (families with hub backbones only), the device ("meta": count parameters without allocating) and the
    ViT blocks feeding the neck (ViT families only). Params validation has checked every field."""

    variant: str
    drop_path: float = 0.0
    pretrained_from_hub: bool = False
    device: str | torch.device | None = None
    out_indices: tuple[int, ...] | None = None


class Encoder(nn.Module):
    """Base class: ``forward(x (B,3,H,W)) -> [f1 (B,C1,H/4,W/4), f2 (…/8), f3 (…/16), f4 (…/32)]``.

    Subclasses set ``out_channels`` (four ints) and ``strides`` (4, 8, 16, 32; a ViT with patch p: p/4, p/2,
    p, 2p, e.g. 3.5 … 28 for patch 14: the heads need no exact stride, the segmentor resizes its logits).
    """

    out_channels: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)
    #: the family name `stcl.models.files.detect_format` gives files of this encoder (``swin``, ``dinov2``…)
    family: str = ""

    def weights_state(
        self, state: dict[str, torch.Tensor], wf: WeightsFile
    ) -> tuple[dict[str, torch.Tensor], tuple[str, ...], str]:
        """``state`` (the backbone tensors of ``wf``, any public layout of this family) in this encoder's key
        layout; the keys the file's format cannot hold (left at init); a hint appended to load errors.

        Each family implements it beside its model code (as timm keeps ``checkpoint_filter_fn`` beside each
        model), so `stcl.models.loading` dispatches without importing any encoder module.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read weights files")

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to this module) that AdamW should not decay."""
        return set()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute blocks in backward instead of storing their activations (memory for compute)."""
        raise NotImplementedError(f"{type(self).__name__} does not support gradient checkpointing")
