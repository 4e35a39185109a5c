"""Small heads with mmseg's module names: `ConvModule`, the auxiliary `FCNHead`, the STCL `ProjectionHead`.

Names follow mmseg so that its checkpoints load with a strict key check: a ConvModule is ``conv`` (no bias,
since a BatchNorm follows) + ``bn`` + ReLU; a decode head ends in ``dropout`` (Dropout2d) + ``conv_seg``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvModule", "FCNHead", "ProjectionHead"]


class ConvModule(nn.Module):
    """conv (bias=False) → BatchNorm → ReLU, keys ``conv.weight`` and ``bn.*`` as mmcv's ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C_in,H,W) → (B,C_out,H',W')."""
        return self.activate(self.bn(self.conv(x)))


class FCNHead(nn.Module):
    """mmseg's FCNHead with one 3×3 conv (the auxiliary head on stage 3, loss weight 0.4).

    Args:
        in_channels: channels of the input stage (stride 16).
        channels: hidden channels (256 in mmseg's configs).
        num_classes: output classes.
        dropout: Dropout2d probability before ``conv_seg``.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, padding=1))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C_in,h,w) → logits (B,num_classes,h,w)."""
        return self.conv_seg(self.dropout(self.convs(x)))


class ProjectionHead(nn.Module):
    """Paper 2.2: FC → BN → ReLU per pixel (a 1×1 conv), then L2 normalisation over channels.

    Args:
        in_channels: channels of the feature map it reads.
        dim: output dimension (512 in the paper).
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(in_channels, dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,h,w) → (B,dim,h,w) with unit L2 norm over dim."""
        return F.normalize(self.activate(self.bn(self.fc(x))), dim=1)
