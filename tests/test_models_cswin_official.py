"""CSWin against the official release (microsoft/CSWin-Transformer), through a fixture generated once from
its segmentation backbone (tests/data/make_cswin_reference.py states the origin and how to regenerate)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stcl.models import build_encoder, build_segmentor
from stcl.models.cswin import CSWinEncoder, build_cswin
from stcl.params import ModelParams

from _data_fixtures import reference_maker

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference():
    ref = torch.load(DATA / "cswin_official_reference.pt", weights_only=True)
    maker = reference_maker("make_cswin_reference")
    cfg = ref["config"]
    enc = CSWinEncoder(
        embed_dim=cfg["embed_dim"],
        depths=tuple(cfg["depth"]),
        num_heads=tuple(cfg["num_heads"]),
        split_sizes=tuple(cfg["split_size"]),
    ).eval()
    shapes = {k: torch.Size(v) for k, v in ref["shapes"].items()}
    assert shapes == {k: v.shape for k, v in enc.state_dict().items()}  # the official names and shapes
    enc.load_state_dict(maker.seeded_state(shapes), strict=True)
    return ref, enc, maker


@pytest.mark.parametrize("index", [0, 1, 2])
def test_cswin_equals_the_official_segmentation_backbone(reference, index):
    """96² (no padding), 128² (stage-3 stripes padded, centred) and 122×170 (stem rounding + padding)."""
    ref, enc, maker = reference
    size = tuple(ref["sizes"][index])
    with torch.no_grad():
        outs = enc(maker.seeded_input(size, index))
    want = ref["outputs"][f"{size[0]}x{size[1]}"]
    diffs = []
    for got, exp in zip(outs, want):
        assert got.shape == exp.shape
        diffs.append((got - exp).abs().max().item())
    print(f"CSWin vs official {size}: max|Δ| per stage " + ", ".join(f"{d:.2e}" for d in diffs))
    assert max(diffs) < 1e-4


def test_cswin_stem_rounds_down_as_the_official_one():
    enc = build_encoder("cswin_mini").eval()
    with torch.no_grad():
        outs = enc(torch.randn(1, 3, 480, 854))  # a VSPW 480P frame: ⌊(854−3)/4⌋+1 = 213, not ⌈854/4⌉ = 214
    assert outs[0].shape[2:] == (120, 213) and outs[3].shape[2:] == (15, 27)


def _official_file(enc: CSWinEncoder) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in enc.state_dict().items() if not k.startswith(("norm1.", "norm2.", "norm3.", "norm4."))}
    c = enc.out_channels[-1]
    return state | {"norm.weight": torch.ones(c), "norm.bias": torch.zeros(c), "head.weight": torch.zeros(10, c)}


@pytest.mark.parametrize("wrapper", ["state_dict_ema", "state_dict", "model"])
def test_every_official_release_layout_loads_through_build_encoder(tmp_path, wrapper):
    src = build_cswin("mini")
    path = tmp_path / "cswin_mini.pth"
    torch.save({wrapper: _official_file(src), "epoch": 300}, path)
    enc = build_encoder("cswin_mini", pretrained=path)
    for key, value in src.state_dict().items():
        if not key.startswith(("norm1.", "norm2.", "norm3.", "norm4.")):
            assert torch.equal(enc.state_dict()[key], value), key


def test_split_size_of_the_checkpoint_is_checked(tmp_path):
    """A 224-pixel CSWin-L release (split 7) is refused by cswin_large (split 12), with the name to use."""
    with torch.device("meta"):
        src = build_cswin("large_224")
    state = {k: torch.zeros(v.shape) for k, v in _official_file(src).items()}
    path = tmp_path / "cswin_large_224.pth"
    torch.save({"state_dict_ema": state, "arch": "CSWin_144_24322_large_224"}, path)
    with pytest.raises(ValueError, match=r"cswin_large_224.pth.*stripe size 7.*uses 12.*cswin_large_224"):
        build_encoder("cswin_large", pretrained=path)
    enc = build_encoder("cswin_large_224", pretrained=path)
    assert enc.split_sizes[2] == 7


def test_cswin_missing_keys_are_an_error(tmp_path):
    state = _official_file(build_cswin("mini"))
    del state["stage3.1.attns.1.get_v.weight"]
    path = tmp_path / "cut.pth"
    torch.save({"state_dict_ema": state}, path)
    with pytest.raises(ValueError, match=r"cut.pth.*1 missing \[backbone.stage3.1.attns.1.get_v.weight\]"):
        build_segmentor(ModelParams(backbone="cswin_mini", channels=8, aux_channels=8, pretrained=path), 3)
