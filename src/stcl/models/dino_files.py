"""DINOv2 / DINOv3 weights files in their public layouts → the keys of `stcl.models.dino.DinoEncoder`.

Our keys are timm's (``model.`` + timm's ``VisionTransformer`` / ``Eva``) plus ``neck.*``. Layouts read:

``dinov2-official``  facebookresearch/dinov2 ``dinov2_vitl14_pretrain.pth`` / ``…_reg4_pretrain.pth``: a plain state
                     dict; ``pos_embed`` (1, 1+37², C) with the class position first; ``register_tokens`` in
                     reg4; ``ls1.gamma``; ``mask_token`` (pretraining only: dropped). For reg4, timm's layout
                     adds the class position to ``cls_token`` and keeps the 37² patch positions (as timm's
                     ``_convert_dinov2``), which computes the same tokens.
``dinov2-timm``      timm's ``vit_large_patch14{,_reg4}_dinov2.lvd142m`` files: our keys without ``model.``.
``dinov3-official``  facebookresearch/dinov3 ``dinov3_vitl16_pretrain_lvd1689m-<hash>.pth``: ``storage_tokens`` →
                     ``reg_token``; ``ls1.gamma``/``ls2.gamma`` → ``gamma_1``/``gamma_2``; ``attn.qkv.bias`` with
                     ``attn.qkv.bias_mask`` → ``q_bias`` and ``v_bias``: the mask must be [1…, 0…, 1…] (the k
                     bias is multiplied by 0 in the official code, so it is dropped); without a mask the k bias
                     must be 0. ``rope_embed.periods`` must equal the periods our RoPE computes (base, dims),
                     then is dropped (timm recomputes it in float32); ``mask_token`` dropped.
``dinov3-timm``      timm's ``vit_large_patch16_dinov3_qkvb.lvd1689m``: our keys without ``model.``.
``dinov3-hf``        Hugging Face transformers (``facebook/dinov3-vitl16-pretrain-lvd1689m``): ``embeddings.{cls_token,
                     register_tokens,patch_embeddings}``; ``layer.N.`` (``model.layer.N.`` in transformers 5's
                     own state dict) with ``attention.{q,k,v}_proj`` (concatenated into ``qkv``; q and v biases,
                     a k bias must be 0), ``attention.o_proj`` → ``attn.proj``, ``layer_scale{1,2}.lambda1`` →
                     ``gamma_{1,2}``, ``mlp.up_proj``/``down_proj`` → ``mlp.fc1``/``fc2``; ``embeddings.mask_token``
                     dropped.

A DINOv2 position table of another grid than the configured one is resized with the official
``interpolate_pos_encoding`` (`stcl.models.dino.official_dinov2_pos_embed`). A file of another patch size,
width, depth or register count is refused with one line naming the file and both values. Every dropped key is
recorded with its reason in ``WeightsFile.dropped`` (printed by ``stcl weights`` and in the load report).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["dino_state", "dino_file_format", "dino_file_facts", "official_dinov2_pos_embed"]


def _family(keys: Sequence[str]) -> str | None:
    if any(k == "storage_tokens" or (k.startswith("blocks.") and k.endswith(".gamma_1")) for k in keys):
        return "dinov3"
    if any(k.startswith(("layer.", "model.layer.")) and k.endswith(".layer_scale1.lambda1") for k in keys):
        return "dinov3"  # Hugging Face transformers' DINOv3 layout
    if any(k.startswith("blocks.") and k.endswith(".ls1.gamma") for k in keys):
        return "dinov2"
    return None


def dino_file_format(family: str, keys: Sequence[str]) -> str | None:
    """The layout (see the module doc) of a file whose keys are a ``family`` (``dinov2``/``dinov3``) ViT's,
    else None. DINOv3 files are told by ``storage_tokens``, ``gamma_1`` or transformers' ``layer_scale1``;
    DINOv2 ones by ``ls1.gamma`` without those."""
    if _family(keys) != family:
        return None
    if family == "dinov3" and any(k.startswith("embeddings.patch_embeddings.") for k in keys):
        return "dinov3-hf"
    official = any(k in ("mask_token", "register_tokens", "storage_tokens") for k in keys)
    return f"{family}-{'official' if official else 'timm'}"


def official_dinov2_pos_embed(
    table: torch.Tensor, grid: tuple[int, int], *, offset: float, antialias: bool
) -> torch.Tensor:
    """The official DINOv2 ``interpolate_pos_encoding`` on a square table of patch positions.

    table: (1, M², C); grid: (gh, gw) → (1, gh·gw, C). Unchanged when the grid is M×M (as the official code).
    Bicubic in float32; ``scale_factor = ((gh + offset)/M, (gw + offset)/M)`` when ``offset`` else ``size``.
    """
    n, dim = table.shape[1], table.shape[2]
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"position table of {n} entries is not square")
    gh, gw = grid
    if gh == gw == m:
        return table
    kwargs = {"scale_factor": ((gh + offset) / m, (gw + offset) / m)} if offset else {"size": (gh, gw)}
    out = F.interpolate(
        table.float().reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic", antialias=antialias, **kwargs
    )
    if tuple(out.shape[-2:]) != (gh, gw):
        raise ValueError(f"position table resized to {tuple(out.shape[-2:])}, expected {(gh, gw)}")
    return out.permute(0, 2, 3, 1).reshape(1, gh * gw, dim).to(table.dtype)


def _need(state: dict, key: str, ndim: int, path) -> torch.Tensor:  # noqa: ANN001
    """``state[key]`` with ``ndim`` dimensions, else one line naming the file and the key."""
    value = state.get(key)
    if value is None:
        raise ValueError(f"{path}: {key} missing (the layout holds it)")
    if value.ndim != ndim:
        raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected {ndim} dimensions")
    return value


def dino_file_facts(state: dict[str, torch.Tensor], path="weights") -> dict[str, int]:  # noqa: ANN001
    """Patch size, width, depth and register tokens of a DINO file in any of the layouts (no ``model.``)."""
    proj = _need(state, "patch_embed.proj.weight", 4, path) if "patch_embed.proj.weight" in state else None
    depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    regs = 0
    for key in ("register_tokens", "storage_tokens", "reg_token"):
        if key in state:
            regs = int(_need(state, key, 3, path).shape[1])
    return {
        "patch": int(proj.shape[-1]) if proj is not None else 0,
        "width": int(proj.shape[0]) if proj is not None else 0,
        "depth": depth,
        "registers": regs,
    }


def _check_shape(facts: dict[str, int], spec, path, fam: str) -> None:  # noqa: ANN001
    want = {"patch": spec.patch, "width": spec.embed_dim, "depth": spec.depth, "registers": spec.reg_tokens}
    bad = [k for k in want if facts[k] != want[k]]
    if bad:
        has = ", ".join(f"{k} {facts[k]}" for k in want)
        cfg = ", ".join(f"{k} {want[k]}" for k in want)
        raise ValueError(f"{path}: a {fam} ViT with {has}; the configured model.backbone has {cfg}")


def _resize_pos(table: torch.Tensor, spec, dropped: dict[str, str], path) -> torch.Tensor:  # noqa: ANN001
    """(1, M², C) patch positions → our (img_size/patch)² grid by the official resize (when M differs)."""
    g = spec.img_size // spec.patch
    m = int(math.sqrt(table.shape[1]))
    if m * m != table.shape[1] or table.shape[0] != 1 or table.shape[2] != spec.embed_dim:
        raise ValueError(
            f"{path}: pos_embed holds {tuple(table.shape)} patch positions; expected (1, M², {spec.embed_dim}) "
            "for a square grid of M×M"
        )
    if m == g:
        return table
    dropped[f"pos_embed ({m}×{m})"] = f"resized to {g}×{g} by the official DINOv2 interpolation"
    return official_dinov2_pos_embed(table, (g, g), offset=spec.interp_offset, antialias=spec.interp_antialias)


def _dinov2_official(state: dict, spec, path, dropped: dict[str, str]) -> dict:  # noqa: ANN001
    state = dict(state)
    if "mask_token" in state:
        state.pop("mask_token")
        dropped["mask_token"] = "pretraining only (masked image modelling)"
    pos = _need(state, "pos_embed", 3, path)
    cls = _need(state, "cls_token", 3, path)
    if tuple(cls.shape) != (1, 1, spec.embed_dim) or pos.shape[1] < 2:
        raise ValueError(
            f"{path}: cls_token {tuple(cls.shape)} / pos_embed {tuple(pos.shape)} do not hold one class "
            f"token and its position of width {spec.embed_dim}"
        )
    del state["pos_embed"], state["cls_token"]
    if "register_tokens" in state:  # timm's no_embed_class layout: class position folded into cls_token
        state["reg_token"] = state.pop("register_tokens")
        state["pos_embed"] = _resize_pos(pos[:, 1:], spec, dropped, path)
        state["cls_token"] = cls + pos[:, :1]
    else:
        state["cls_token"] = cls
        state["pos_embed"] = torch.cat([pos[:, :1], _resize_pos(pos[:, 1:], spec, dropped, path)], dim=1)
    return state


def _dinov2_timm(state: dict, spec, path, dropped: dict[str, str]) -> dict:  # noqa: ANN001
    state = dict(state)
    pos = _need(state, "pos_embed", 3, path)
    if spec.reg_tokens:
        state["pos_embed"] = _resize_pos(pos, spec, dropped, path)
    else:
        state["pos_embed"] = torch.cat([pos[:, :1], _resize_pos(pos[:, 1:], spec, dropped, path)], dim=1)
    return state


def _dinov3_official(state: dict, encoder, path, dropped: dict[str, str]) -> dict:  # noqa: ANN001
    out = {}
    c = encoder.spec.embed_dim
    for key, value in state.items():
        if key == "mask_token":
            dropped[key] = "pretraining only (masked image modelling)"
            continue
        if key == "rope_embed.periods":
            d_head = c // encoder.spec.heads  # the DINOv3 RoPE: base ** (2·i / (D_head/2)), i < D_head/4
            ours = encoder.spec.rope_base ** (2 * torch.arange(d_head // 4, dtype=torch.float64) / (d_head // 2))
            if value.shape != ours.shape or not torch.allclose(value.double(), ours, rtol=1e-2):
                raise ValueError(
                    f"{path}: rope_embed.periods differs from the RoPE periods of the configured backbone "
                    f"(base {encoder.spec.rope_base}); another RoPE base or head width"
                )
            dropped[key] = "checked equal to the periods timm recomputes in float32"
            continue
        if key.endswith("attn.qkv.bias_mask"):
            continue  # read with its bias below
        if key.endswith("attn.qkv.bias"):
            if tuple(value.shape) != (3 * c,):
                raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected ({3 * c},) (q, k, v biases)")
            q, k, v = value.split(c)
            mask = state.get(key + "_mask")
            if mask is not None:
                want = torch.cat([torch.ones(c), torch.zeros(c), torch.ones(c)])
                if not torch.equal(mask.float(), want):
                    raise ValueError(f"{path}: {key}_mask is not [1 (q), 0 (k), 1 (v)]; this layout is not supported")
                every = re.sub(r"^blocks\.\d+\.", "blocks.*.", key)  # one entry for all blocks
                dropped[every.replace("bias", "bias[k]")] = "multiplied by bias_mask 0 in the official code"
                dropped[every + "_mask"] = "checked [1, 0, 1]"
            elif bool(k.any()):
                raise ValueError(f"{path}: {key} has a non-zero k bias and no bias_mask; timm's DINOv3 has none")
            out[key.replace("qkv.bias", "q_bias")] = q
            out[key.replace("qkv.bias", "v_bias")] = v
            continue
        key = key.replace("storage_tokens", "reg_token")
        key = key.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")
        out[key] = value
    return out


_HF_RENAMES = (
    (".attention.o_proj.", ".attn.proj."),
    (".layer_scale1.lambda1", ".gamma_1"),
    (".layer_scale2.lambda1", ".gamma_2"),
    (".mlp.up_proj.", ".mlp.fc1."),
    (".mlp.down_proj.", ".mlp.fc2."),
)


def _dinov3_hf(state: dict, path, dropped: dict[str, str]) -> dict:  # noqa: ANN001
    """transformers' DINOv3 layout → timm's Eva keys (no width needed: renames and one concatenation)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("model.layer."):
            key = key[len("model.") :]
        if key == "embeddings.mask_token":
            dropped[key] = "pretraining only (masked image modelling)"
            continue
        if key.startswith("rope_embeddings."):
            dropped[key] = "recomputed by timm's RoPE"
            continue
        m = re.match(r"layer\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$", key)
        if m:
            qkv.setdefault(m.group(1), {})[f"{m.group(2)}.{m.group(3)}"] = value
            continue
        key = {
            "embeddings.cls_token": "cls_token",
            "embeddings.register_tokens": "reg_token",
            "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
            "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
        }.get(key, key)
        if key.startswith("layer."):
            key = "blocks." + key[len("layer.") :]
            for old, new in _HF_RENAMES:
                key = key.replace(old, new)
        out[key] = value
    for i, parts in qkv.items():
        weights = [parts.get(f"{name}.weight") for name in "qkv"]
        for name, w in zip("qkv", weights):
            if w is None or w.ndim != 2 or w.shape != weights[0].shape:
                what = "missing" if w is None else f"of shape {tuple(w.shape)}, not that of q_proj.weight"
                raise ValueError(f"{path}: layer.{i}.attention.{name}_proj.weight {what}")
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(weights)
        if "k.bias" in parts:
            if bool(parts["k.bias"].any()):
                raise ValueError(f"{path}: layer.{i}.attention.k_proj.bias is not 0; timm's DINOv3 has no k bias")
            dropped["layer.*.attention.k_proj.bias"] = "checked 0"
        for name in ("q", "v"):
            if f"{name}.bias" in parts:
                out[f"blocks.{i}.attn.{name}_bias"] = parts[f"{name}.bias"]
    return out


def dino_state(state: dict, wf, encoder) -> tuple[dict, tuple[str, ...], str]:  # noqa: ANN001
    """The `Encoder.weights_state` of `stcl.models.dino.DinoEncoder` (see the module doc)."""
    if wf.format == "stcl-model":
        return state, (), ""
    spec = encoder.spec
    if wf.format not in (f"{spec.family}-official", f"{spec.family}-timm", f"{spec.family}-hf"):
        raise ValueError(f"{wf.path}: a {wf.format} file cannot fill a {spec.family} encoder")
    dropped = wf.dropped
    if wf.format == "dinov3-hf":
        state = _dinov3_hf(state, wf.path, dropped)
    _check_shape(dino_file_facts(state, wf.path), spec, wf.path, spec.family)
    if wf.format == "dinov2-official":
        state = _dinov2_official(state, spec, wf.path, dropped)
    elif wf.format == "dinov2-timm":
        state = _dinov2_timm(state, spec, wf.path, dropped)
    elif wf.format == "dinov3-official":
        state = _dinov3_official(state, encoder, wf.path, dropped)
    return {f"model.{k}": v for k, v in state.items()}, ("neck.*",), ""
