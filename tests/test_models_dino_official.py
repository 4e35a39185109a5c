"""DINOv2 / DINOv3 encoders against the official code (facebookresearch/dinov2, /dinov3), through a fixture
generated once from it (tests/data/make_dino_reference.py states the commits and how to regenerate).

The official weights go through the same path a user's release file takes: the official state dict (seeded
weights, the official buffers) is written to a ``.pth``, recognised as ``dinov2-official`` /
``dinov3-official`` and loaded strictly; timm's own converter (``checkpoint_filter_fn``) writes the timm layout
of the same weights, which must load to the same encoder.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from stcl.models.dino import build_dino
from stcl.models.files import open_weights
from stcl.models.loading import load_encoder_weights

from _data_fixtures import reference_maker

DATA = Path(__file__).parent / "data"
SPEC_OF = {"dinov2": "dinov2_tiny", "dinov2_reg4": "dinov2_tiny_reg4", "dinov3": "dinov3_tiny"}
# timm's registered model of the same family (its checkpoint_filter_fn is what timm applies to the releases)
TIMM_OF = {
    "dinov2": "vit_large_patch14_dinov2",
    "dinov2_reg4": "vit_large_patch14_reg4_dinov2",
    "dinov3": "vit_large_patch16_dinov3_qkvb",
}


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA / "dino_official_reference.pt", weights_only=True), reference_maker("make_dino_reference")


def _official_state(ref, maker, name):
    entry = ref["models"][name]
    shapes = {k: torch.Size(v) for k, v in entry["shapes"].items()}
    buffers = entry["buffers"]
    return maker.seeded_state(shapes, skip=set(buffers)) | dict(buffers)


def _official_file(tmp_path, ref, maker, name):
    path = tmp_path / f"{name}_official.pth"
    torch.save(_official_state(ref, maker, name), path)
    return path


@pytest.fixture(scope="module")
def encoders(reference, tmp_path_factory):
    ref, maker = reference
    tmp = tmp_path_factory.mktemp("dino")
    out = {}
    for name, spec in SPEC_OF.items():
        enc = build_dino(spec).eval()
        report = load_encoder_weights(enc, _official_file(tmp, ref, maker, name))
        out[name] = (enc, report)
    return out


def _compare(enc, ref, maker, name, label):
    size = tuple(ref["sizes"][name][label])
    index = list(ref["sizes"][name]).index(label)
    want = ref["models"][name]["outputs"][label]
    with torch.no_grad():
        got = enc.tokens(maker.seeded_input(size, index))
    if len(want) == 1:  # stored: last block, first channels
        got = [got[-1][:, : want[0].shape[1]]]
    diffs = []
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        diffs.append((g - w).abs().max().item())
    return max(diffs), max(w.abs().max().item() for w in want)


@pytest.mark.parametrize("name", list(SPEC_OF))
@pytest.mark.parametrize("label", ["pretrain", "small", "768", "480x854"])
def test_tokens_equal_official_get_intermediate_layers(encoders, reference, name, label):
    """Pretraining size, a non-square interpolated size, 768² class, 480×854 → nearest valid: ≤ 1e-4."""
    ref, maker = reference
    enc, _ = encoders[name]
    delta, scale = _compare(enc, ref, maker, name, label)
    print(f"{name} {label} {tuple(ref['sizes'][name][label])}: max|Δ| {delta:.2e} (largest value {scale:.2f})")
    assert delta <= 1e-4


def test_dinov3_at_480x854_we_pad_where_the_official_drops_columns(encoders, reference):
    """The official DINOv3 at 480×854 equals itself at 480×848 (the conv drops the last 6 columns); we pad to
    480×864 instead (grid 30×54), and our tokens on the zero-padded image equal those of the padded input."""
    ref, maker = reference
    enc, _ = encoders["dinov3"]
    outs = ref["models"]["dinov3"]["outputs"]
    x = maker.seeded_input((480, 854), list(ref["sizes"]["dinov3"]).index("raw480x854"))
    with torch.no_grad():
        got = enc.tokens(x[..., :848])[-1][:, : ref["keep_channels"]]
        maps = enc(x)
        padded = enc.neck(enc.tokens(torch.nn.functional.pad(x, (0, 10))))
    assert (got - outs["raw480x854"][0]).abs().max().item() <= 1e-4
    assert [tuple(m.shape[-2:]) for m in maps] == [(120, 214), (60, 107), (30, 54), (15, 27)]
    assert torch.equal(maps[2], padded[2][..., :54])


def test_a_mapping_error_would_show(encoders, reference):
    """The fixture is sensitive: swapping two blocks' layer scales moves the tokens far beyond 1e-4."""
    ref, maker = reference
    enc, _ = encoders["dinov2"]
    blocks = enc.model.blocks
    with torch.no_grad():
        g0, g1 = blocks[0].ls1.gamma.clone(), blocks[1].ls1.gamma.clone()
        blocks[0].ls1.gamma.copy_(g1), blocks[1].ls1.gamma.copy_(g0)
        try:
            delta, _ = _compare(enc, ref, maker, "dinov2", "pretrain")
        finally:
            blocks[0].ls1.gamma.copy_(g0), blocks[1].ls1.gamma.copy_(g1)
    assert delta > 1e-2


@pytest.mark.parametrize("name", list(SPEC_OF))
def test_official_files_load_strictly_and_name_what_they_drop(encoders, name):
    _, report = encoders[name]
    assert report.format == f"{name.split('_')[0]}-official"
    assert report.missing == [k for k in report.missing if k.startswith("backbone.neck.")] and report.missing
    assert not report.unexpected and not report.mismatched
    assert "mask_token" in report.dropped
    if name == "dinov3":
        assert {"rope_embed.periods", "blocks.*.attn.qkv.bias_mask", "blocks.*.attn.qkv.bias[k]"} <= set(report.dropped)


@pytest.mark.parametrize("name", list(SPEC_OF))
def test_timm_converted_files_load_to_the_same_encoder(encoders, reference, tmp_path, name):
    """timm's own model + checkpoint_filter_fn (the converter timm applies to the releases) → safetensors."""
    import timm
    from safetensors.torch import save_file

    ref, maker = reference
    spec = build_dino(SPEC_OF[name]).spec
    kwargs = dict(embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.heads, img_size=spec.img_size)
    model = timm.create_model(TIMM_OF[name], pretrained=False, num_classes=0, **kwargs)
    module = importlib.import_module(type(model).__module__)
    state = module.checkpoint_filter_fn(_official_state(ref, maker, name), model)
    model.load_state_dict(state, strict=True)  # timm's converter fills timm's model exactly
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    wf = open_weights(path)
    assert wf.format == f"{spec.family}-timm"
    enc = build_dino(SPEC_OF[name]).eval()
    load_encoder_weights(enc, path)
    official, _ = encoders[name]
    x = maker.seeded_input((112, 224), 7)  # a multiple of 14 and 16
    with torch.no_grad():
        delta = max((a - b).abs().max().item() for a, b in zip(enc.tokens(x), official.tokens(x)))
    print(f"{name} timm layout (checkpoint_filter_fn) vs official layout, 112×224: max|Δ| {delta:.2e}")
    assert delta <= 1e-5


def test_parameter_counts_against_the_official_releases():
    """timm's layout holds the official parameters less mask_token (pretraining only), DINOv3's k bias
    (masked to 0) and, in reg4, the class position (folded into cls_token): exactly those, per release."""
    from stcl.models.encoders import build_encoder

    official = {"dinov2_vitl14": 304_368_640, "dinov2_vitl14_reg4": 304_372_736, "dinov3_vitl16": 303_154_176}
    left_out = {"dinov2_vitl14": 1024, "dinov2_vitl14_reg4": 2 * 1024, "dinov3_vitl16": 1024 + 24 * 1024}
    for name, count in official.items():
        enc = build_encoder(name, device="meta")
        ours = sum(p.numel() for p in enc.model.parameters())
        print(f"{name}: ViT {ours:,} + neck {sum(p.numel() for p in enc.neck.parameters()):,}; official {count:,}")
        assert ours + left_out[name] == count


def test_timms_own_position_resize_would_not_match(encoders, reference):
    """Why `official_dinov2_pos_embed` replaces timm's resize: with timm's (antialias, ``size=``) the plain
    DINOv2 tokens at 770² move far beyond 1e-4 from the official ones."""
    from timm.models.vision_transformer import VisionTransformer

    ref, maker = reference
    enc, _ = encoders["dinov2"]
    vit = enc.model
    vit._pos_embed = VisionTransformer._pos_embed.__get__(vit)  # timm's own method, this instance only
    try:
        delta, _ = _compare(enc, ref, maker, "dinov2", "768")
    finally:
        del vit._pos_embed
    print(f"dinov2 768 with timm's resize: max|Δ| {delta:.2e}")
    assert delta > 1e-3


def test_hugging_face_layout_equals_transformers_own_model(capsys):
    """tests/data/dinov3_tiny_hf.safetensors was written by transformers' own DINOv3ViTModel.save_pretrained
    (tests/data/make_dino_hf_reference.py); loaded strictly as ``dinov3-hf``, our tokens equal that model's."""
    ref = torch.load(DATA / "dinov3_hf_reference.pt", weights_only=True)
    path = DATA / "dinov3_tiny_hf.safetensors"
    assert open_weights(path).format == "dinov3-hf"
    enc = build_dino("dinov3_tiny").eval()
    report = load_encoder_weights(enc, path)
    assert not report.unexpected and "embeddings.mask_token" in report.dropped
    maker = reference_maker("make_dino_reference")
    for i, (label, size) in enumerate(ref["sizes"].items()):
        with torch.no_grad():
            got = enc.tokens(maker.seeded_input(tuple(size), i))
        delta = max((g - w).abs().max().item() for g, w in zip(got, ref["outputs"][label], strict=True))
        print(f"dinov3 hf {label} {tuple(size)}: max|Δ| {delta:.2e}")
        assert delta <= 1e-4
