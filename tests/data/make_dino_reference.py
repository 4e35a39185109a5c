"""Regenerate tests/data/dino_official_reference.pt from the official DINOv2 and DINOv3 code.

    git clone https://github.com/facebookresearch/dinov2 /tmp/dinov2   # commit b8931f7bf91576930313be2c6d6af376033b35f0
    git clone https://github.com/facebookresearch/dinov3 /tmp/dinov3   # commit 6876159a11b4df116f30f667f8c9888617df0751
    PYTHONPATH=/tmp/dinov2:/tmp/dinov3 XFORMERS_DISABLED=1 .venv/bin/python tests/data/make_dino_reference.py

Nothing of the official code is copied into this repository. Each official model is built as its hub
function builds the ViT-L release (dinov2 ``hub/backbones.py``: plain ``dinov2_vitl14`` with interpolation
offset 0.1 and no antialias, ``dinov2_vitl14_reg`` with 4 registers, offset 0 and antialias;
dinov3 ``hub/backbones.py`` ``dinov3_vitl16``: 4 storage tokens, RoPE base 100 with ``normalize_coords=
"separate"``, ``rescale_coords=2``, float32 RoPE, LayerNorm eps 1e-5, layer scale, qkv bias with
``mask_k_bias``), at a reduced size that takes the same code paths: width 32, 4 blocks, 2 heads, pretraining
grid 8×8 (patch 14, 112 px) for DINOv2 and 128 px for DINOv3 (the `stcl.models.dino.DINO_SPECS` tiny
variants). Every parameter gets seeded random values (`seeded_state`, re-created by the test; layer scales
and norm scales far from their init so that every block and every mapping matters); buffers keep the
official init (DINOv3's RoPE ``periods``, ``qkv.bias_mask`` = [1, 0, 1]) and are stored.

Stored per model: the official parameter shapes, its buffers, and ``get_intermediate_layers(x, n=[0, 1, 2, 3],
reshape=True, norm=True)`` on seeded inputs (normalised images, batch 1) at
* the pretraining size (all four blocks, all channels);
* a small non-square size that needs interpolation / another RoPE grid (all four blocks, all channels);
* 768-class square (770² for patch 14, 768² for patch 16) and 480×854 → the nearest valid size below it
  (476×854 for patch 14, 480×848 for patch 16): the last block, first 16 channels (file size);
* DINOv3 only: the official output at 480×854 itself (its patch conv drops the last 6 columns).
"""

from __future__ import annotations

from pathlib import Path

import torch

OUT = Path(__file__).with_name("dino_official_reference.pt")
WIDTH, DEPTH, HEADS = 32, 4, 2
SIZES = {
    "dinov2": {"pretrain": (112, 112), "small": (168, 238), "768": (770, 770), "480x854": (476, 854)},
    "dinov2_reg4": {"pretrain": (112, 112), "small": (168, 238), "768": (770, 770), "480x854": (476, 854)},
    "dinov3": {"pretrain": (128, 128), "small": (160, 240), "768": (768, 768), "480x854": (480, 848), "raw480x854": (480, 854)},
}
FULL = ("pretrain", "small")  # all blocks and channels; the others: last block, KEEP_CHANNELS channels
KEEP_CHANNELS = 16


def seeded_state(shapes: dict[str, torch.Size], skip: set[str] = frozenset(), seed: int = 0) -> dict[str, torch.Tensor]:
    """Parameters drawn in sorted key order: N(0, 1/fan_in) for matrices and kernels, 1 ± 0.1 for norm
    scales, 0.5 ± 0.2 for layer scales (``gamma``), N(0, 0.1) otherwise (biases, tokens, position table)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        if key in skip:
            continue
        shape = shapes[key]
        x = torch.randn(shape, generator=g)
        if len(shape) >= 2 and key not in ("pos_embed", "cls_token", "register_tokens", "storage_tokens", "mask_token"):
            x = x / shape[1:].numel() ** 0.5
        elif "norm" in key and key.endswith("weight"):
            x = 1 + 0.1 * x
        elif "gamma" in key:
            x = 0.5 + 0.2 * x
        else:
            x = 0.1 * x
        out[key] = x
    return out


def seeded_input(size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2000 + seed))


def official_models() -> dict[str, torch.nn.Module]:
    from functools import partial

    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as Block
    from dinov2.models.vision_transformer import DinoVisionTransformer as V2
    from dinov3.models.vision_transformer import DinoVisionTransformer as V3

    v2 = dict(
        img_size=112, patch_size=14, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=4,
        block_fn=partial(Block, attn_class=MemEffAttention), init_values=1.0, ffn_layer="mlp", block_chunks=0,
    )
    models = {
        "dinov2": V2(**v2, num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1),
        "dinov2_reg4": V2(**v2, num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0),
        "dinov3": V3(
            img_size=128, patch_size=16, pos_embed_rope_base=100, pos_embed_rope_normalize_coords="separate",
            pos_embed_rope_rescale_coords=2, pos_embed_rope_dtype="fp32", embed_dim=WIDTH, depth=DEPTH,
            num_heads=HEADS, ffn_ratio=4, qkv_bias=True, drop_path_rate=0.0, layerscale_init=1e-5,
            norm_layer="layernormbf16", ffn_layer="mlp", ffn_bias=True, proj_bias=True, n_storage_tokens=4,
            mask_k_bias=True,
        ),
    }
    models["dinov3"].init_weights()  # as the hub builder: RoPE periods, qkv bias_mask
    return models


def main() -> None:
    out = {
        "origin": {
            "dinov2": "facebookresearch/dinov2@b8931f7bf91576930313be2c6d6af376033b35f0 dinov2/models/vision_transformer.py",
            "dinov3": "facebookresearch/dinov3@6876159a11b4df116f30f667f8c9888617df0751 dinov3/models/vision_transformer.py",
        },
        "sizes": SIZES,
        "keep_channels": KEEP_CHANNELS,
        "models": {},
    }
    for name, model in official_models().items():
        params = dict(model.named_parameters())
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        buffers = {k: v.clone() for k, v in model.state_dict().items() if k not in params}
        model.load_state_dict(seeded_state(shapes, skip=set(buffers)) | buffers, strict=True)
        model.eval()
        outputs = {}
        with torch.no_grad():
            for i, (label, size) in enumerate(SIZES[name].items()):
                feats = model.get_intermediate_layers(seeded_input(size, i), n=[0, 1, 2, 3], reshape=True, norm=True)
                if label in FULL:
                    outputs[label] = [f.clone() for f in feats]
                else:
                    outputs[label] = [feats[-1][:, :KEEP_CHANNELS].clone()]
        out["models"][name] = {
            "shapes": {k: list(v) for k, v in shapes.items()},
            "buffers": buffers,
            "outputs": outputs,
            "params": sum(p.numel() for p in model.parameters()),
        }
        print(name, {k: tuple(v[-1].shape) for k, v in outputs.items()})
    torch.save(out, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
