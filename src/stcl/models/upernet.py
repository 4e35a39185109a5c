"""UperNet decode head (Xiao et al., ECCV 2018) with mmseg's UPerHead structure and parameter names.

``psp_modules.N.1.{conv,bn}`` (pooling pyramid on the last stage), ``bottleneck``, ``lateral_convs.N``,
``fpn_convs.N``, ``fpn_bottleneck``, ``conv_seg``: an mmseg UperNet ``decode_head.*`` loads strictly.
Resizes are bilinear with align_corners=False, as in mmseg's configs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stcl.models.dynamic_shapes import adaptive_avg_pool2d, exporting
from stcl.models.heads import ConvModule

__all__ = ["UPerHead"]


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UPerHead(nn.Module):
    """Pyramid pooling on the last stage + FPN over all stages, fused at stride 4.

    Args:
        in_channels: channels of the four encoder stages (strides 4, 8, 16, 32).
        channels: width of every conv (512 in the paper).
        num_classes: output classes.
        pool_scales: PPM output sizes.
        dropout: Dropout2d probability before ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        channels: int,
        num_classes: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"in_channels: need at least two stages, got {in_channels}")
        self.in_channels = tuple(in_channels)
        self.channels = channels
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels[-1], channels, 1))
            for scale in pool_scales
        )
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def _psp(self, x: torch.Tensor) -> torch.Tensor:
        if exporting():  # the same bins at any size (stcl.models.dynamic_shapes); eager keeps torch's kernel
            pooled = [m[1](adaptive_avg_pool2d(x, m[0].output_size)) for m in self.psp_modules]
        else:
            pooled = [m(x) for m in self.psp_modules]
        outs = [x] + [_resize(p, x.shape[2:]) for p in pooled]
        return self.bottleneck(torch.cat(outs, dim=1))

    def features(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Encoder maps [(B,C_i,h_i,w_i)] → fused features (B,channels,h_0,w_0) (output of fpn_bottleneck)."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"inputs: expected {len(self.in_channels)} feature maps, got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)] + [self._psp(inputs[-1])]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        outs = [outs[0]] + [_resize(x, outs[0].shape[2:]) for x in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B,channels,h,w) → logits (B,num_classes,h,w)."""
        return self.conv_seg(self.dropout(features))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Encoder maps → logits (B,num_classes,h_0,w_0) at the first stage's resolution."""
        return self.classify(self.features(inputs))
