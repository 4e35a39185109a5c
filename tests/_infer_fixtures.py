"""Toy predictors for the inference tests: tiny fully convolutional models, no checkpoints needed."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointwiseNet(nn.Module):
    """Two 1×1 convolutions: receptive field of one pixel, so any tiling gives whole-image logits.

    Also exactly equivariant to horizontal flips. (B, 3, h, w) 0..255 → (B, C, h, w).
    """

    def __init__(self, num_classes: int = 5, seed: int = 0, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, num_classes, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return self.gain * self.b(torch.tanh(self.a(x / 255.0 - 0.5)))


class Conv3x3Net(nn.Module):
    """One 3×3 convolution (zero padding). ``symmetric=True`` makes the kernel left-right symmetric, so the
    model is equivariant to horizontal flips of the whole input. (B, 3, h, w) → (B, C, h, w)."""

    def __init__(self, num_classes: int = 4, symmetric: bool = True, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        with torch.no_grad():
            w = torch.randn(self.conv.weight.shape, generator=g)
            if symmetric:
                w = (w + w.flip(-1)) / 2
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(torch.randn(num_classes, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x / 64.0)


def random_image(height: int, width: int, seed: int = 0) -> Tensor:
    """(3, H, W) float image with values 0..255."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((3, height, width), generator=g) * 255.0
