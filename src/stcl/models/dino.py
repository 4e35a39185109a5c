"""DINOv2 and DINOv3 ViT encoders: timm's ViT / Eva returning the patch tokens of four blocks, plus a simple
feature pyramid that turns the single-stride tokens into the four maps UperNet reads.

* **Tokens.** ``forward`` runs the timm model (``VisionTransformer`` for DINOv2, ``Eva`` with DINOv3's RoPE for
  DINOv3) and takes the tokens after blocks ``out_indices`` (default evenly spaced: 5, 11, 17, 23 of 24),
  each passed through the final LayerNorm with the class/register tokens removed, as the official
  ``get_intermediate_layers(x, n=out_indices, norm=True)`` of facebookresearch/dinov2 and /dinov3 returns
  them (``tests/test_models_dino_official.py`` checks ≤ 1e-4 against fixtures made with the official code).
* **Position at any size.** DINOv2 resizes its 37×37 learned position table as the official
  ``interpolate_pos_encoding`` does: bicubic with ``scale_factor = (g + offset) / 37`` and no antialias
  (offset 0.1) for the plain models, ``size=`` with antialias for the reg4 models (their hub settings:
  offset 0, antialias on). timm's own resize (antialias on, ``size=``) differs from the plain models by a
  few % away from 518², so `_OfficialPosEmbedViT` replaces it. While exporting to ONNX the same resize is
  computed as interpolation-matrix products built from the symbolic grid
  (`stcl.models.dynamic_shapes.dinov2_pos_embed`), which the exporter cannot freeze at the export size.
  DINOv3 uses RoPE, which timm's ``RotaryEmbeddingDinoV3`` computes for any grid exactly as the official
  code does.
* **Sizes that are not a patch multiple** are padded with zeros at the bottom and right to the next multiple
  (zero is the mean colour after normalisation), as mmseg pads Swin's input ("corner" padding); the first
  three output maps are then cropped to ⌈H·f/p⌉ × ⌈W·f/p⌉ (f = 4, 2, 1; the ½ level is the floor-pooled
  ⌈H/p⌉ grid), so no map keeps a row or column that lies wholly in the padding. The official DINOv2 raises
  at such sizes and the official DINOv3's patch conv silently drops the last H mod 16 rows and W mod 16
  columns; we keep them. The crop, the sliding window (any window size) and the STCL projection need nothing
  else: a 768 crop is 55×55 tokens with patch 14 (padded to 770), 48×48 with patch 16.
* **Views smaller than two patches** along an axis (a 10×13 training crop, ``stcl predict --scales 0.25`` on a
  small frame) are padded the same way to two patches, because the ×½ level max-pools 2×2 tokens; the three
  finer maps are cropped back as above and the ×½ map keeps its one row / column (partly padding), so such
  views give logits of their own size as ResNet's and Swin's encoders do. The official code has no answer
  here (DINOv2 raises below one patch; its pyramid is not part of the release).
* **Neck: the simple feature pyramid** of ViTDet (Li et al., "Exploring Plain Vision Transformer Backbones
  for Object Detection", 2022) in the form BEiT's UperNet segmentation backbone uses it
  (microsoft/unilm ``beit/semantic_segmentation/backbone/beit.py``) and mmseg names ``Feature2Pyramid``: two
  stride-2 transposed convs with BatchNorm + GELU between them (×4), one transposed conv (×2), identity (×1)
  and a 2×2 max-pool (×½, floor, as mmseg's). Its four maps (all ``embed_dim`` channels) sit at strides
  p/4, p/2, p and 2p of the input: 4, 8, 16, 32 for patch 16; 3.5, 7, 14, 28 for patch 14 (the segmentor
  resizes logits to the image, so the heads need no exact stride). Its parameters (``neck.*``) are new: no
  DINO release holds them.

Weights: the official releases, timm's and Hugging Face's files and our model files, mapped by
`DinoEncoder.weights_state` (key mapping in `stcl.models.dino_files`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from stcl.models.dino_files import dino_file_format, official_dinov2_pos_embed
from stcl.models.dynamic_shapes import ceil_div, dinov2_pos_embed, exporting
from stcl.models.encoder_base import BuildRequest, Encoder

__all__ = [
    "DinoSpec",
    "DINO_SPECS",
    "DinoEncoder",
    "SimpleFeaturePyramid",
    "official_dinov2_pos_embed",
    "build_dino",
    "build",
    "file_format",
]


@dataclass(frozen=True)
class DinoSpec:
    """Architecture of one DINO variant (the official release's, or a reduced one for tests).

    ``img_size``: pretraining resolution (DINOv2's position table holds (img_size / patch)² entries);
    ``reg_tokens``: register (DINOv2 reg4) / storage (DINOv3) tokens; ``interp_offset`` / ``interp_antialias``:
    the official DINOv2 position-table resize settings of this release.
    """

    family: str  # "dinov2" or "dinov3"
    patch: int
    embed_dim: int
    depth: int
    heads: int
    img_size: int
    reg_tokens: int = 0
    interp_offset: float = 0.1
    interp_antialias: bool = False
    rope_base: float = 100.0
    layerscale: float = 1e-5

    def default_indices(self) -> tuple[int, ...]:
        """Four evenly spaced blocks ending with the last: (5, 11, 17, 23) for 24 blocks."""
        step = self.depth / 4
        return tuple(int(round(step * (k + 1))) - 1 for k in range(4))


DINO_SPECS: dict[str, DinoSpec] = {
    # facebookresearch/dinov2 hub: dinov2_vitl14 (offset 0.1, no antialias), dinov2_vitl14_reg (offset 0, antialias)
    "dinov2_vitl14": DinoSpec("dinov2", 14, 1024, 24, 16, 518),
    "dinov2_vitl14_reg4": DinoSpec("dinov2", 14, 1024, 24, 16, 518, 4, 0.0, True),
    # facebookresearch/dinov3 hub dinov3_vitl16: 4 storage tokens, RoPE base 100 (normalize "separate")
    "dinov3_vitl16": DinoSpec("dinov3", 16, 1024, 24, 16, 224, 4),
    # reduced variants for CPU tests and the toy scale (random init; same code paths as the L models)
    "dinov2_tiny": DinoSpec("dinov2", 14, 32, 4, 2, 112),
    "dinov2_tiny_reg4": DinoSpec("dinov2", 14, 32, 4, 2, 112, 4, 0.0, True),
    "dinov3_tiny": DinoSpec("dinov3", 16, 32, 4, 2, 128, 4),
}


def _official_pos_embed_vit(spec: DinoSpec, **kwargs):  # noqa: ANN202 - a timm VisionTransformer subclass
    from timm.models.vision_transformer import VisionTransformer

    class _OfficialPosEmbedViT(VisionTransformer):
        """timm's DINOv2 ViT with the official position-table resize (see `official_dinov2_pos_embed`)."""

        def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
            """x: (B, gh, gw, C) patch tokens → (B, prefix + gh·gw, C) with class/register tokens."""
            b, gh, gw, c = x.shape
            prefix = 0 if self.no_embed_class else 1
            pos = self.pos_embed
            # while exporting, the same resize written for a symbolic grid (stcl.models.dynamic_shapes)
            resize = dinov2_pos_embed if exporting() else official_dinov2_pos_embed
            table = resize(pos[:, prefix:], (gh, gw), offset=spec.interp_offset, antialias=spec.interp_antialias)
            x = x.reshape(b, gh * gw, c)
            cls = self.cls_token.expand(b, -1, -1)
            if self.no_embed_class:  # reg4: the class token holds its position already (timm's layout)
                regs = [self.reg_token.expand(b, -1, -1)] if self.reg_token is not None else []
                return self.pos_drop(torch.cat([cls, *regs, x + table], dim=1))
            return self.pos_drop(torch.cat([cls + pos[:, :1], x + table], dim=1))

    return _OfficialPosEmbedViT(**kwargs)


def _timm_model(spec: DinoSpec, drop_path: float) -> nn.Module:
    if spec.family == "dinov2":
        return _official_pos_embed_vit(
            spec,
            img_size=spec.img_size,
            patch_size=spec.patch,
            embed_dim=spec.embed_dim,
            depth=spec.depth,
            num_heads=spec.heads,
            init_values=spec.layerscale,
            reg_tokens=spec.reg_tokens,
            no_embed_class=spec.reg_tokens > 0,
            dynamic_img_size=True,
            num_classes=0,
            drop_path_rate=drop_path,
        )
    from timm.layers import LayerNorm
    from timm.models.eva import Eva

    # timm's vit_large_patch16_dinov3_qkvb arguments (q and v biases; k's is masked to 0 in the release)
    return Eva(
        img_size=spec.img_size,
        patch_size=spec.patch,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.heads,
        qkv_bias=True,
        init_values=spec.layerscale,
        rope_type="dinov3",
        rope_temperature=spec.rope_base,
        use_rot_pos_emb=True,
        use_abs_pos_emb=False,
        rope_rotate_half=True,
        num_reg_tokens=spec.reg_tokens,
        use_fc_norm=False,
        norm_layer=partial(LayerNorm, eps=1e-5),
        dynamic_img_size=True,
        num_classes=0,
        drop_path_rate=drop_path,
    )


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid as BEiT's UperNet builds it, module for module mmseg 1.2.2's
    ``Feature2Pyramid(rescales=[4, 2, 1, 0.5])`` (same names, so its ``neck.*`` keys load unchanged;
    ``tests/test_models_dino.py`` runs mmseg's). ``norm`` is BatchNorm (mmseg's default SyncBN: our
    ``model.sync_bn`` converts it for multi-GPU training).

    ``forward([t1, t2, t3, t4])`` with t_i (B,C,h,w) → [(B,C,4h,4w), (B,C,2h,2w), (B,C,h,w), (B,C,⌊h/2⌋,⌊w/2⌋)].
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.upsample_4x = nn.Sequential(
            nn.ConvTranspose2d(dim, dim, 2, stride=2),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, 2, stride=2),
        )
        self.upsample_2x = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, stride=2))
        self.identity = nn.Identity()
        self.downsample_2x = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        ops = (self.upsample_4x, self.upsample_2x, self.identity, self.downsample_2x)
        return [op(t) for op, t in zip(ops, tokens, strict=True)]


class DinoEncoder(Encoder):
    """A DINOv2 / DINOv3 ViT (timm) + `SimpleFeaturePyramid`; see the module doc.

    Args:
        spec: the architecture (`DINO_SPECS`).
        out_indices: the four blocks whose tokens feed the neck (0-based); default evenly spaced.
        drop_path: stochastic depth rate (linear over blocks, timm's rule).
    """

    def __init__(self, spec: DinoSpec, *, out_indices: tuple[int, ...] | None = None, drop_path: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.family = spec.family
        self.out_indices = tuple(out_indices) if out_indices is not None else spec.default_indices()
        if len(self.out_indices) != 4 or not all(0 <= i < spec.depth for i in self.out_indices):
            raise ValueError(
                f"model.out_indices: need four block indices in [0, {spec.depth}), got {list(self.out_indices)}"
            )
        self.model = _timm_model(spec, drop_path)
        self.neck = SimpleFeaturePyramid(spec.embed_dim)
        self.out_channels = (spec.embed_dim,) * 4
        self.patch = spec.patch
        self.strides = (spec.patch / 4, spec.patch / 2, spec.patch, 2 * spec.patch)  # 3.5 … 28 for patch 14

    def tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised, H and W multiples of the patch → four (B,C,H/p,W/p) normalised token maps."""
        return list(
            self.model.forward_intermediates(x, indices=list(self.out_indices), norm=True, intermediates_only=True)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B,3,H,W) normalised → four maps (B,C,⌈4H/p⌉,⌈4W/p⌉), (…,⌈2H/p⌉,…), (…,⌈H/p⌉,…), (…,⌊g/2⌋,…)
        with g = max(⌈H/p⌉, 2) (per axis; see `grid`)."""
        h, w = x.shape[-2:]
        p = self.patch
        gh, gw = self.grid(h, w)
        pad_h, pad_w = gh * p - h, gw * p - w
        pad = pad_h or pad_w or exporting()  # an exported graph pads and crops at every size (zero / no-op)
        if pad:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        maps = self.neck(self.tokens(x))
        if pad:
            cut = [m[..., : ceil_div(h * f, p), : ceil_div(w * f, p)] for m, f in zip(maps[:3], (4, 2, 1))]
            maps = [*cut, maps[3]]
        return maps

    def grid(self, h: int, w: int) -> tuple[int, int]:
        """Token grid of an (h, w) view: ⌈h/p⌉ × ⌈w/p⌉, at least 2 × 2 (the ×½ level pools 2 × 2 tokens).
        Integer arithmetic only (`ceil_div`, ``torch.sym_max``), so a symbolic size stays symbolic."""
        return torch.sym_max(ceil_div(h, self.patch), 2), torch.sym_max(ceil_div(w, self.patch), 2)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        """Tokens, the position table and every 1-D parameter (norms, biases, layer scales), as mmseg's
        layer-decay constructor for ViTs."""
        tokens = ("model.cls_token", "model.reg_token", "model.pos_embed")
        return {n for n, p in self.named_parameters() if p.dim() == 1 or n in tokens}

    @property
    def num_layers(self) -> int:
        """Blocks of the ViT (layer-wise lr decay counts them)."""
        return self.spec.depth

    def layer_id(self, name: str) -> int:
        """Layer of parameter ``name`` for layer-wise lr decay, as mmseg's ``get_layer_id_for_vit``: 0 for
        the embeddings and tokens, i+1 for block i, ``num_layers + 1`` for the final norm and the neck."""
        if name.startswith(("model.cls_token", "model.reg_token", "model.pos_embed", "model.patch_embed")):
            return 0
        if name.startswith("model.blocks."):
            return int(name.split(".")[2]) + 1
        return self.num_layers + 1

    def weights_state(self, state: dict, wf) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
        """Official / timm / our files → our keys; the neck is absent from every DINO release."""
        from stcl.models.dino_files import dino_state

        return dino_state(state, wf, self)


def build_dino(
    name: str,
    *,
    drop_path: float = 0.0,
    out_indices: tuple[int, ...] | None = None,
    device: str | torch.device | None = None,
    **changes,  # noqa: ANN003
) -> DinoEncoder:
    """The `DinoEncoder` of ``DINO_SPECS[name]`` (``changes`` replace spec fields); ``device="meta"`` skips
    allocation."""
    spec = replace(DINO_SPECS[name], **changes) if changes else DINO_SPECS[name]
    if device is not None:
        with torch.device(device):
            return DinoEncoder(spec, out_indices=out_indices, drop_path=drop_path)
    return DinoEncoder(spec, out_indices=out_indices, drop_path=drop_path)


def build(request: BuildRequest) -> DinoEncoder:
    """`build_dino` for the family table (`stcl.families`); no DINO weights come from timm's hub."""
    return build_dino(request.variant, drop_path=request.drop_path, device=request.device, out_indices=request.out_indices)


file_format = dino_file_format  # the layouts are read in `stcl.models.dino_files`
