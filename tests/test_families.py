"""The encoder family table (`stcl.families`) is the only list: each row's module builds its backbones as
encoders of that family and names only the row's formats; params and ``stcl weights`` read the same rows."""

from __future__ import annotations

import pytest

from stcl.families import BACKBONES, FAMILIES, FORMATS, family_module, family_of
from stcl.models.encoders import build_encoder


@pytest.mark.parametrize("fam", FAMILIES, ids=[f.name for f in FAMILIES])
def test_each_row_builds_encoders_of_its_family(fam):
    for name in fam.backbones:
        assert family_of(name) is fam
        # the name `stcl.models.files` gives the family's files is the one loading checks against the encoder
        assert build_encoder(name, device="meta").family == fam.name
    assert set(fam.formats) <= set(FORMATS)


def test_detection_asks_each_family_and_answers_overlap_nowhere():
    layouts = {
        "swin": ["layers.0.blocks.0.attn.qkv.weight", "layers.1.downsample.reduction.weight"],
        "resnet": ["conv1.weight", "layer1.0.conv1.weight"],
        "resnest": ["conv1.0.weight", "layer1.0.conv2.fc1.weight"],
        "cswin": ["stage1_conv_embed.0.weight", "stage1.0.qkv.weight"],
        "dinov2": ["blocks.0.ls1.gamma", "mask_token"],
        "dinov3": ["blocks.0.ls1.gamma", "storage_tokens"],
    }
    rows = {f.name: f for f in FAMILIES}
    assert set(layouts) == set(rows)
    for name, keys in layouts.items():
        said = {f.name: family_module(f).file_format(f.name, keys) for f in FAMILIES}
        assert [f for f, fmt in said.items() if fmt is not None] == [name], said
        assert said[name] in rows[name].formats


def test_params_choices_are_the_table():
    from stcl.params import BACKBONES as PARAMS_BACKBONES

    assert PARAMS_BACKBONES == BACKBONES == tuple(n for f in FAMILIES for n in f.backbones)
    with pytest.raises(ValueError, match="valid: swin_large_patch4_window12_384"):
        family_of("resnet9000")
