"""The segmentor of the paper (Fig. 2): encoder → UperNet (+ auxiliary FCN) and a projection head for STCL.

Module names follow mmseg's EncoderDecoder (``backbone``, ``decode_head``, ``auxiliary_head``), so converted
mmseg checkpoints load strictly; the STCL head is ``projection``. Inputs are RGB in 0..255: the model
normalises them with ``model.mean``/``model.std`` (mmseg's data preprocessor), so a checkpoint carries
everything needed to run it.

What the projection head reads (``projection_input``):

* ``backbone_last`` (default): the encoder's last stage (stride 32; 2p for a ViT of patch p). Paper 2.1:
  "the encoded features are transformed by the projection head"; 2.2, eq. 1: I_t and I_{t+k} "first pass
  through the encoder to obtain the feature maps F_t and F_{t+k}", then "similar to [1]" (MoCo v2, whose
  MLP head reads the encoder's final output) a projection head. The paper names no level; the last stage
  is the one the whole encoder computes, the map a hierarchical encoder outputs, and the most semantic one.
  The STCL gradient reaches the encoder only; the decoder runs on the query frame alone. STCL's labels are
  taken at this resolution by nearest resize (one label per 32×32 block), so a 768² crop has 24² = 576
  anchors per frame, the tiny scale's 64² crop 2² = 4 (coarse but not empty: `benchmarks/stcl_anchors.py`
  counts anchors, positives and negatives per clip).
* ``fpn_bottleneck``: the UperNet decoder's fused map (stride 4), a variant not in the paper: the decoder
  then runs on every frame, STCL's gradient passes through the decoder into the encoder, and a 768² crop
  has 192² = 36,864 anchors per frame (memory and FLOPs of the STCL block grow by 64²: `stcl plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stcl.models.encoders import Encoder, build_encoder
from stcl.models.heads import FCNHead, ProjectionHead
from stcl.models.upernet import UPerHead
from stcl.params import ModelParams

__all__ = ["SegmentorOutput", "Segmentor", "build_segmentor"]


@dataclass
class SegmentorOutput:
    """Output of `Segmentor.forward` on a clip of T frames (index 0 = query).

    logits: (B,C,H/4,W/4) decode-head logits of the query frame.
    aux_logits: (B,C,H/16,W/16) auxiliary-head logits of the query frame.
    proj: (B,T,D,h,w) L2-normalised projected features of all frames, or None without a projection head.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor
    proj: torch.Tensor | None


class Segmentor(nn.Module):
    """Encoder + UPerHead + FCNHead (+ ProjectionHead).

    Args:
        backbone: an `Encoder` (four maps at strides 4..32).
        num_classes: output classes.
        channels: UPerHead width.
        aux_channels: FCNHead width.
        dropout: Dropout2d before both classifiers.
        proj_dim: projection output dim; None → no projection head.
        projection_input: "backbone_last" (the encoder's last stage, stride 32: the paper, default) or
            "fpn_bottleneck" (the decoder's fused map, stride 4: a variant not in the paper); module docstring.
        mean, std: RGB normalisation of 0..255 inputs.
    """

    def __init__(
        self,
        backbone: Encoder,
        *,
        num_classes: int,
        channels: int,
        aux_channels: int,
        dropout: float = 0.1,
        proj_dim: int | None = None,
        projection_input: str = "backbone_last",
        mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        std: tuple[float, float, float] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if projection_input not in ("fpn_bottleneck", "backbone_last"):
            raise ValueError(f"projection_input must be 'fpn_bottleneck' or 'backbone_last', got {projection_input!r}")
        self.num_classes = num_classes
        self.projection_input = projection_input
        self.backbone = backbone
        chans = backbone.out_channels
        self.decode_head = UPerHead(chans, channels, num_classes, dropout=dropout)
        self.auxiliary_head = FCNHead(chans[2], aux_channels, num_classes, dropout=dropout)
        proj_in = channels if projection_input == "fpn_bottleneck" else chans[-1]
        self.projection = ProjectionHead(proj_in, proj_dim) if proj_dim is not None else None
        # Not persistent: they come from model_params, and mmseg checkpoints do not have them.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) 0..255 → normalised (N,3,H,W)."""
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor) -> SegmentorOutput:
        """images: (B,T,3,H,W) float RGB 0..255, frame 0 the query → `SegmentorOutput`.

        All T frames go through the encoder only when the projection head exists (STCL needs them);
        otherwise only the query frame is computed. The decoder sees the query frames only (every frame with
        ``fpn_bottleneck``): in train mode B (B·T with ``fpn_bottleneck``) must be >= 2 per BatchNorm, or
        SyncBatchNorm must span several GPUs (the PPM's 1×1 pooled BatchNorm, as in mmseg).
        """
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images: expected (B,T,3,H,W), got {tuple(images.shape)}")
        b, t = images.shape[:2]
        frames = t if self.projection is not None else 1
        x = self.normalize(images[:, :frames].flatten(0, 1))  # (B*frames,3,H,W), frame-major per clip
        feats = self.backbone(x)
        query_feats = [f.unflatten(0, (b, frames))[:, 0] for f in feats]  # (B,C_i,h_i,w_i) of frame 0
        proj = None
        if self.projection is not None and self.projection_input == "fpn_bottleneck":
            fused_all = self.decode_head.features(feats)  # (B*T,channels,H/4,W/4): every frame is projected
            proj = self.projection(fused_all).unflatten(0, (b, frames))
            fused = fused_all.unflatten(0, (b, frames))[:, 0]
        else:
            fused = self.decode_head.features(query_feats)
            if self.projection is not None:
                proj = self.projection(feats[-1]).unflatten(0, (b, frames))
        logits = self.decode_head.classify(fused)
        aux_logits = self.auxiliary_head(query_feats[2])
        return SegmentorOutput(logits=logits, aux_logits=aux_logits, proj=proj)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B,3,H,W) float RGB 0..255 → logits (B,C,H,W), upsampled bilinear (align_corners=False).

        Call ``model.eval()`` first (dropout, BatchNorm); no projection is computed.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (B,3,H,W), got {tuple(images.shape)}")
        feats = self.backbone(self.normalize(images))
        logits = self.decode_head(feats)
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)

    def no_weight_decay(self) -> set[str]:
        """Full parameter names that AdamW should not decay (Swin's position tables and norms)."""
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}


def build_segmentor(
    model: ModelParams,
    num_classes: int,
    proj_dim: int | None = None,
    *,
    device: str | torch.device | None = None,
    load_pretrained: bool = True,
) -> Segmentor:
    """Build the segmentor that ``model`` (params.yaml ``model:``) describes.

    Args:
        model: the params section.
        num_classes: output classes (124 for VSPW, 133 for COCO-pre).
        proj_dim: projection dim for STCL (``stage.stcl.dim``); None → no projection head.
        device: "meta" builds without allocating memory (parameter counting).
        load_pretrained: load ``model.pretrained`` (strictly, `stcl.models.loading`) / hub weights (False
            when a full checkpoint is about to be loaded anyway).
    """
    meta = device is not None and torch.device(device).type == "meta"
    backbone = build_encoder(
        model.backbone,
        drop_path=model.drop_path,
        pretrained_from_hub=model.pretrained_from_hub and load_pretrained and not meta,
        grad_checkpointing=model.grad_checkpointing,
        device=device,
        out_indices=model.out_indices,
    )
    kwargs = dict(
        num_classes=num_classes,
        channels=model.channels,
        aux_channels=model.aux_channels,
        dropout=model.dropout,
        proj_dim=proj_dim,
        projection_input=model.projection_input,
        mean=model.mean,
        std=model.std,
    )
    if meta:
        with torch.device("meta"):
            segmentor = Segmentor(backbone, **kwargs)
    else:
        segmentor = Segmentor(backbone, **kwargs)
    if load_pretrained and not meta and model.pretrained is not None:
        from stcl.models.loading import load_segmentor_weights

        # A backbone file (ImageNet release, timm) fills the encoder; a whole-model file (mmseg model zoo)
        # fills the heads too. Strict: anything that does not fit is an error unless in model.load_exclude.
        load_segmentor_weights(segmentor, model.pretrained, exclude=model.load_exclude, what="model.pretrained file")
    return segmentor  # model.sync_bn is applied by the training loop, which knows the device and world size
