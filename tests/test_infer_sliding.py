"""Sliding window, multi-scale and flip TTA, ensembles: exactness checks with toy models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stcl.infer.ensemble import Member, ensemble_probs, normalized_weights
from stcl.infer.multiscale import TTA, scaled_size, tta_probs
from stcl.infer.sliding import Window, slide_logits, window_grid

from _infer_fixtures import Conv3x3Net, PointwiseNet, random_image


def test_window_grid_is_mmseg_grid():
    win = Window(crop=(64, 64), stride=(48, 48))
    # rows: (96-64+47)//48+1 = 2 → starts 0, 32 (last shifted back); cols: 3 → 0, 48, 64
    assert window_grid(96, 128, win) == [(y, x) for y in (0, 32) for x in (0, 48, 64)]
    assert window_grid(64, 64, win) == [(0, 0)]
    with pytest.raises(ValueError, match="smaller than the window"):
        window_grid(63, 64, win)


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


def test_small_image_is_padded_to_the_window():
    seen = []

    def predict(x):
        seen.append(tuple(x.shape))
        return x[:, :2]

    out = slide_logits(predict, torch.full((1, 3, 10, 20), 7.0), Window((16, 16), (8, 8)), pad_value=0.0)
    assert out.shape == (1, 2, 10, 20)
    assert all(s[-2:] == (16, 16) for s in seen)
    assert torch.all(out == 7.0)  # the padding's logits were dropped


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


@pytest.mark.parametrize("batch_views", [True, False])
def test_multiscale_flip_matches_whole_image_reference(batch_views):
    model = PointwiseNet().eval()
    image = random_image(96, 128, seed=3)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    tta = TTA(scales=scales, flip=True, window=Window((64, 64), (48, 48)), batch_size=16)
    probs = tta_probs(model, image, tta, batch_views=batch_views)
    with torch.no_grad():
        ref = _reference_tta(model, image, scales, flip=True)
    assert probs.shape == (5, 96, 128)
    torch.testing.assert_close(probs.sum(0), torch.ones(96, 128))
    torch.testing.assert_close(probs, ref, rtol=1e-5, atol=1e-5)


def test_batched_views_share_batches():
    sizes = []
    model = PointwiseNet().eval()

    def predict(x):
        sizes.append(x.shape[0])
        return model(x)

    tta = TTA(scales=(0.5, 1.0), flip=True, window=Window((64, 64), (48, 48)), batch_size=4)
    tta_probs(predict, random_image(96, 128), tta, batch_views=True)
    # windows: scale 0.5 → 1 each flip, scale 1.0 → 6 each flip: 14 windows → 4, 4, 4, 2
    assert sizes == [4, 4, 4, 2]
    sizes.clear()
    tta_probs(predict, random_image(96, 128), tta, batch_views=False)
    assert sizes == [1, 1, 4, 2, 4, 2]


def test_flip_tta_is_exact_for_flip_equivariant_model():
    image = random_image(64, 64, seed=4)  # one window, no padding: the whole pipeline is flip-symmetric
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
        tta_probs(lambda x: x[:, :, :-1], random_image(64, 64), TTA((1.0,), False, Window((64, 64), (64, 64))))


def test_ensemble_weighted_mean():
    image = random_image(70, 90, seed=5)
    tta = TTA(scales=(0.75, 1.0), flip=True, window=Window((64, 64), (48, 48)))
    m1, m2 = PointwiseNet(seed=1).eval(), PointwiseNet(seed=2).eval()
    p1, p2 = tta_probs(m1, image, tta), tta_probs(m2, image, tta)
    ens = ensemble_probs([Member(m1, 3.0), Member(m2, 1.0)], image, tta)
    torch.testing.assert_close(ens, 0.75 * p1 + 0.25 * p2)
    torch.testing.assert_close(ensemble_probs([Member(m1), Member(m2)], image, tta), (p1 + p2) / 2)


def test_ensemble_rejects_mismatched_classes_and_weights():
    tta = TTA(scales=(1.0,), flip=False, window=Window((64, 64), (64, 64)))
    with pytest.raises(ValueError, match="classes"):
        ensemble_probs([Member(PointwiseNet(5)), Member(PointwiseNet(6))], random_image(64, 64), tta)
    with pytest.raises(ValueError, match="weights"):
        normalized_weights(2, [1.0])
    with pytest.raises(ValueError, match="positive"):
        normalized_weights(2, [1.0, 0.0])
