"""RAFT flow, warp and TC against the official VSPW TC code (VSPW_code's RAFT_core, TC_cal.py, utils.py),
through a fixture generated once from it (tests/data/make_raft_reference.py states the origin and how to
regenerate it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stcl.flow.raft import build_raft, detect_raft_format, load_raft, official_to_torchvision, padding, raft_flow
from stcl.flow.warp import warp_labels, warp_source
from stcl.metrics.tc import TCCounter, tc_score

from _data_fixtures import reference_maker

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA / "raft_tc_official_reference.pt", weights_only=True), reference_maker("make_raft_reference")


@pytest.fixture(scope="module")
def official_file(reference, tmp_path_factory):
    """A raft-things.pth-like file: the seeded official-layout weights, keys prefixed ``module.``."""
    ref, maker = reference
    path = tmp_path_factory.mktemp("raft") / "raft-things.pth"
    torch.save(maker.seeded_state(ref["shapes"]), path)
    return path


def test_official_layout_converts_strictly(reference):
    ref, maker = reference
    state = maker.seeded_state(ref["shapes"])
    assert len(state) == 179 and all(k.startswith("module.") for k in state)
    assert detect_raft_format(state) == "raft-official"
    converted = official_to_torchvision(state)
    model = build_raft()
    assert set(converted) == set(model.state_dict())  # 169 keys: the ten norm3 duplicates dropped
    assert sum(v.numel() for v in model.parameters()) == 5_257_536
    bad = dict(state)
    bad["module.cnet.layer2.0.norm3.weight"] = bad["module.cnet.layer2.0.norm3.weight"] + 1
    with pytest.raises(ValueError, match="norm3.weight differs from its twin"):
        official_to_torchvision(bad, "x.pth")


@pytest.mark.parametrize("size", ["132x140", "128x160"])
def test_flow_equals_the_official_raft(reference, official_file, size):
    """132×140 is padded to 136×144 (InputPadder's split matters), 128×160 is not padded."""
    ref, _ = reference
    model = load_raft(official_file)
    frames = ref["frames"][size].permute(0, 3, 1, 2)
    flow = raft_flow(model, frames[0:1], frames[1:2])[0]
    want = ref["flows"][size]
    assert flow.shape == want.shape
    delta = (flow - want).abs().max().item()
    print(f"RAFT flow vs official at {size}: max|Δ| {delta:.2e} px (flow up to {want.abs().max():.2f} px)")
    assert delta <= 1e-3


def test_torchvision_layout_loads_and_wrong_files_fail_in_one_line(reference, official_file, tmp_path):
    model = load_raft(official_file)
    tv = tmp_path / "raft_large_C_T_V1.pth"
    torch.save(model.state_dict(), tv)
    again = load_raft(tv)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    short = tmp_path / "short.pth"
    state = torch.load(official_file, weights_only=True)
    state.pop("module.update_block.flow_head.conv2.bias")
    torch.save(state, short)
    want = r"short\.pth: does not fit torchvision raft_large \(raft-official\): 1 missing \[update_block\.flow_head\.conv2\.bias\]"
    with pytest.raises(ValueError, match=want):
        load_raft(short)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.pth: not a RAFT weights file"):
        load_raft(other)


def test_padding_and_minimum_size(official_file):
    assert padding(480, 854) == (1, 1, 0, 0)
    assert padding(132, 140) == (2, 2, 2, 2)
    assert padding(133, 141) == (1, 2, 1, 2)
    model = load_raft(official_file)
    tiny = torch.zeros(1, 3, 120, 200, dtype=torch.uint8)
    with pytest.raises(ValueError, match="at least 128x128"):
        raft_flow(model, tiny, tiny)


def test_warp_equals_the_official_flowwarp(reference):
    ref, maker = reference
    for seed, want in enumerate(ref["warps"]):
        pred, next_pred, flow = maker.seeded_warp_case(seed)
        got = warp_labels(next_pred.numpy(), warp_source(flow).numpy())
        assert np.array_equal(got.astype(np.int64), want.numpy())
    # the quirk: zero flow reads outside in the last row and column (grid normalised by W-1, H-1)
    src = warp_source(torch.zeros(2, 480, 854)).numpy()
    assert (src == 0).sum() == 480 + 854 - 1
    assert (src[:-1, :-1] == 1 + np.arange(479)[:, None] * 854 + np.arange(853)).all()
    # what the flows folder stores: offsets p' - p, lossless
    from stcl.flow.store import OUTSIDE, decode_offsets, encode_offsets

    offsets = encode_offsets(src)
    assert (offsets[:-1, :-1] == 0).all() and (offsets[-1] == OUTSIDE).all()
    assert np.array_equal(decode_offsets(offsets), src)


def test_tc_equals_the_official_score(reference):
    ref, maker = reference
    counter = TCCounter()
    for seed in range(3):
        pred, next_pred, flow = maker.seeded_warp_case(seed)
        counter.add(pred.numpy(), warp_labels(next_pred.numpy(), warp_source(flow).numpy()))
    tc, iou = tc_score(counter.confusion)
    print(f"TC vs official: {tc:.12f} vs {ref['tc']:.12f}, |Δ| {abs(tc - ref['tc']):.1e}")
    assert abs(tc - ref["tc"]) < 1e-12
    assert counter.pairs == 3 and np.isnan(iou).sum() == 124 - (counter.confusion.sum(axis=1) > 0).sum()
    with pytest.raises(ValueError, match="p.png: class id 255 outside 0..123"):
        counter.add(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8), "p.png")


def test_weights_command_recognises_raft_files(official_file, capsys):
    from stcl.cli import main

    assert main(["weights", str(official_file)]) == 0
    out = capsys.readouterr().out
    assert "raft-official" in out and "loads strictly into torchvision raft_large (5,257,536 parameters)" in out
