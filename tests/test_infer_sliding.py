"""Sliding window, multi-scale and flip TTA, the frame loop, ensembles: exactness checks with toy models.

Equality with mmseg's own slide_inference and aug_test order: tests/test_infer_mmseg_equivalence.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stcl.infer.ensemble import normalized_weights
from stcl.infer.frames import blend, frame_probs
from stcl.infer.multiscale import TTA, frames_per_group, scaled_size, tta_from_params, tta_probs
from stcl.infer.sliding import Window, slide_logits, window_grid

from _infer_fixtures import Conv3x3Net, PointwiseNet, random_image


def test_window_grid_is_mmseg_grid():
    win = Window(crop=(64, 64), stride=(48, 48))
    # rows: (96-64+47)//48+1 = 2 → starts 0, 32 (last shifted back); cols: 3 → 0, 48, 64
    assert window_grid(96, 128, win) == [(y, x) for y in (0, 32) for x in (0, 48, 64)]
    assert window_grid(64, 64, win) == [(0, 0)]
    # smaller than the crop: one window of the image's extent along that axis (mmseg: y2 = min(y1 + c, H))
    assert window_grid(40, 128, win) == [(0, 0), (0, 48), (0, 64)]
    assert window_grid(30, 50, win) == [(0, 0)]


def test_window_rejects_stride_larger_than_crop():
    with pytest.raises(ValueError, match="stride"):
        Window(crop=(32, 32), stride=(33, 16))


@pytest.mark.parametrize("size", [(96, 128), (64, 64), (50, 40), (100, 70)])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_sliding_equals_whole_image_for_pointwise_model(size, batch_size):
    model = PointwiseNet().eval()
    image = torch.stack([random_image(*size, seed=1), random_image(*size, seed=2)])
    with torch.no_grad():
        whole = model(image)
    slid = slide_logits(model, image, Window((64, 64), (48, 48)), batch_size=batch_size)
    assert slid.shape == whole.shape
    torch.testing.assert_close(slid, whole, rtol=1e-5, atol=1e-5)


def test_sliding_averages_overlaps_with_count_map():
    """Each window predicts its own index; overlapping pixels get the mean of the covering windows."""
    win = Window((4, 4), (2, 2))
    calls: list[int] = []

    def predict(x):
        base = sum(calls)
        calls.append(x.shape[0])
        idx = torch.arange(base, base + x.shape[0], dtype=torch.float32)
        return idx.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).clone()

    image = torch.zeros(1, 3, 6, 7)
    out = slide_logits(predict, image, win, batch_size=3)[0, 0]
    corners = window_grid(6, 7, win)
    expect_sum, expect_cnt = torch.zeros(6, 7), torch.zeros(6, 7)
    for k, (y, x) in enumerate(corners):
        expect_sum[y : y + 4, x : x + 4] += k
        expect_cnt[y : y + 4, x : x + 4] += 1
    assert expect_cnt.min() > 0
    torch.testing.assert_close(out, expect_sum / expect_cnt)
    assert corners == [(0, 0), (0, 2), (0, 3), (2, 0), (2, 2), (2, 3)]
    assert calls == [3, 3]  # 6 windows in batches of 3


@pytest.mark.parametrize("size", [(10, 20), (10, 40), (30, 12)])
def test_small_image_is_cut_as_is_never_padded(size):
    seen = []

    def predict(x):
        seen.append(tuple(x.shape))
        return x[:, :2]

    out = slide_logits(predict, torch.full((1, 3, *size), 7.0), Window((16, 16), (8, 8)))
    assert out.shape == (1, 2, *size)
    assert all(s[-2:] == (min(16, size[0]), min(16, size[1])) for s in seen)  # windows of min(crop, size)
    assert torch.all(out == 7.0)  # no padding value ever reaches the model


def _reference_tta(model, image, scales, flip):
    """Whole-image mmseg aug_test: resize, (flip), logits, resize back, softmax, (unflip), mean."""
    h, w = image.shape[-2:]
    total = 0
    views = [(s, f) for s in scales for f in ((False, True) if flip else (False,))]
    for s, f in views:
        x = F.interpolate(image[None], size=scaled_size(h, w, s), mode="bilinear", align_corners=False)
        x = x.flip(-1) if f else x
        logits = F.interpolate(model(x), size=(h, w), mode="bilinear", align_corners=False)
        p = logits.softmax(1)
        total = total + (p.flip(-1) if f else p)
    return (total / len(views))[0]


@pytest.mark.parametrize("frames", [1, 3])
def test_multiscale_flip_matches_whole_image_reference(frames):
    model = PointwiseNet().eval()
    images = torch.stack([random_image(96, 128, seed=3 + k) for k in range(frames)])
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    tta = TTA(scales=scales, flip=True, window=Window((64, 64), (48, 48)), batch_size=16)
    probs = tta_probs(model, images, tta)
    assert probs.shape == (frames, 5, 96, 128)
    for k in range(frames):
        with torch.no_grad():
            ref = _reference_tta(model, images[k], scales, flip=True)
        torch.testing.assert_close(probs[k].sum(0), torch.ones(96, 128))
        torch.testing.assert_close(probs[k], ref, rtol=1e-5, atol=1e-5)


def test_windows_of_one_view_share_batches_across_frames():
    sizes = []
    model = PointwiseNet().eval()

    def predict(x):
        sizes.append(tuple(x.shape))
        return model(x)

    tta = TTA(scales=(0.5, 1.0), flip=True, window=Window((64, 64), (48, 48)), batch_size=4)
    images = torch.stack([random_image(96, 128, seed=k) for k in range(3)])
    single = torch.stack([tta_probs(model, images[k : k + 1], tta)[0] for k in range(3)])
    together = tta_probs(predict, images, tta)
    torch.testing.assert_close(together, single)
    # scale 0.5 (48x64): one 48x64 window per frame, 3 frames in one batch per flip; scale 1.0: 6 windows
    # of 64x64 per frame, 18 per flip in batches of 4; never two shapes in a batch
    small, full = [(3, 3, 48, 64)], [(4, 3, 64, 64)] * 4 + [(2, 3, 64, 64)]
    assert sizes == small + small + full + full
    assert frames_per_group(tta, 96, 128) == 4  # the 0.5 view has 1 window: 4 frames fill a batch


def test_frame_loop_groups_equal_sizes_and_keeps_order():
    model = PointwiseNet().eval()
    calls = []

    def predict(x):
        calls.append(x.shape[0])
        return model(x)

    tta = TTA(scales=(1.0,), flip=False, window=Window((64, 64), (64, 64)), batch_size=2)
    rng = np.random.default_rng(0)
    frames = [(k, rng.integers(0, 256, (h, 64, 3), dtype=np.uint8)) for k, h in enumerate((64, 64, 64, 40, 64))]
    out = list(frame_probs({"m": predict}, tta, frames))
    assert [k for k, _, _ in out] == [0, 1, 2, 3, 4]
    assert calls == [2, 1, 1, 1]  # groups of 2 equal-sized frames; a size change ends a group
    for (k, image), (_, _, probs) in zip(frames, out):
        x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
        torch.testing.assert_close(probs["m"], tta_probs(model, x, tta)[0])


def test_tta_from_params_is_the_params_tta():
    from stcl.params import InferParams

    infer = InferParams(scales=(0.5, 1.0), flip=False, crop_size=(32, 48), stride=(16, 24), batch_size=3, amp="bf16")
    tta = tta_from_params(infer)
    assert tta == TTA((0.5, 1.0), False, Window((32, 48), (16, 24)), 3, "bf16")
    assert tta_from_params(infer, scales=(1.0,), flip=True, amp=None).views == [(1.0, False), (1.0, True)]
    with pytest.raises(TypeError, match="unknown"):
        tta_from_params(infer, windows=3)


def test_flip_tta_is_exact_for_flip_equivariant_model():
    image = random_image(64, 64, seed=4)[None]  # one window: the whole pipeline is flip-symmetric
    win = Window((64, 64), (32, 32))
    sym = Conv3x3Net(symmetric=True).eval()
    with_flip = tta_probs(sym, image, TTA(scales=(1.0,), flip=True, window=win))
    without = tta_probs(sym, image, TTA(scales=(1.0,), flip=False, window=win))
    torch.testing.assert_close(with_flip, without, rtol=1e-5, atol=1e-6)
    # a model that is not flip-equivariant gives a different average: the flip really runs
    asym = Conv3x3Net(symmetric=False).eval()
    a = tta_probs(asym, image, TTA(scales=(1.0,), flip=True, window=win))
    b = tta_probs(asym, image, TTA(scales=(1.0,), flip=False, window=win))
    assert (a - b).abs().max() > 1e-3


def test_predictor_shape_is_checked():
    with pytest.raises(ValueError, match="predictor must map"):
        tta_probs(lambda x: x[:, :, :-1], random_image(64, 64)[None], TTA((1.0,), False, Window((64, 64), (64, 64))))


def test_ensemble_weighted_mean():
    image = random_image(70, 90, seed=5)
    frame = [(0, image.permute(1, 2, 0).to(torch.uint8).numpy())]
    tta = TTA(scales=(0.75, 1.0), flip=True, window=Window((64, 64), (48, 48)))
    m1, m2 = PointwiseNet(seed=1).eval(), PointwiseNet(seed=2).eval()
    (_, _, probs), = frame_probs({"a": m1, "b": m2}, tta, frame)
    x = torch.from_numpy(frame[0][1]).permute(2, 0, 1).float()[None]
    p1, p2 = tta_probs(m1, x, tta)[0], tta_probs(m2, x, tta)[0]
    torch.testing.assert_close(blend(probs, ["a", "b"], normalized_weights(2, [3.0, 1.0])), 0.75 * p1 + 0.25 * p2)
    torch.testing.assert_close(blend(probs, ["a", "b"], normalized_weights(2, None)), (p1 + p2) / 2)


def test_ensemble_rejects_mismatched_classes_and_weights():
    tta = TTA(scales=(1.0,), flip=False, window=Window((64, 64), (64, 64)))
    frame = [(0, np.zeros((64, 64, 3), dtype=np.uint8))]
    with pytest.raises(ValueError, match="classes"):
        list(frame_probs({"a": PointwiseNet(5), "b": PointwiseNet(6)}, tta, frame))
    with pytest.raises(ValueError, match="weights"):
        normalized_weights(2, [1.0])
    with pytest.raises(ValueError, match="positive"):
        normalized_weights(2, [1.0, 0.0])


def test_one_tta_builder_and_one_frame_loop_in_src():
    """grep src/: a TTA is built only by `tta_from_params`, frames reach `tta_probs` only through
    `frame_probs`, and no module of infer/ imports report/ (an arrow running back up)."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "stcl"
    builders, loops, upward = [], [], []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(src))
        if re.search(r"(?<![\w.])TTA\(", text) and rel != "infer/multiscale.py":
            builders.append(rel)
        if re.search(r"\btta_probs\(", text) and rel not in ("infer/multiscale.py", "infer/frames.py", "plan/work.py"):
            loops.append(rel)
        if rel.startswith("infer/") and re.search(r"^\s*(from|import) stcl\.report", text, re.M):
            upward.append(rel)
    assert builders == [], f"TTA built outside tta_from_params: {builders}"
    assert loops == [], f"frames run through tta_probs outside the frame loop: {loops}"
    assert upward == [], f"infer/ imports report/: {upward}"
    assert re.findall(r"^def (\w+)\(", (src / "infer" / "frames.py").read_text(), re.M).count("frame_probs") == 1
