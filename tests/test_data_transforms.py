"""Clip transforms: image and label stay aligned, one draw per clip, mmseg crop/pad semantics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stcl.data.transforms import (
    ClipTransform,
    PhotometricDraw,
    adjust_saturation_hue,
    hsv_to_rgb,
    rescale_size,
    rgb_to_hsv,
)
from stcl.params import AugmentParams


def coordinate_clip(h: int, w: int, block: int, n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Frames whose R/G channels encode the source x/y coordinate, B the frame index; block labels.

    Returns images (T x uint8 (h, w, 3)), labels (T x uint8 (h, w)) and the source label map.
    """
    ys, xs = np.mgrid[0:h, 0:w]
    label = ((ys // block) * 5 + (xs // block) * 3) % 11
    label[(ys // block + xs // block) % 7 == 6] = 255  # some ignore pixels
    label = label.astype(np.uint8)
    images = [np.stack([xs, ys, np.full_like(xs, 40 * t)], -1).astype(np.uint8) for t in range(n_frames)]
    return images, [label.copy() for _ in range(n_frames)], label


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(16, 90),
    w=st.integers(16, 120),
    block=st.integers(6, 12),
    ratio=st.tuples(st.floats(0.5, 2.0), st.floats(0.0, 1.0)),
    crop=st.tuples(st.integers(8, 96), st.integers(8, 96)),
    flip_prob=st.sampled_from([0.0, 0.5, 1.0]),
    cat_max_ratio=st.sampled_from([0.5, 0.75, 1.0]),
    seed=st.integers(0, 2**31),
)
def test_label_follows_image(h, w, block, ratio, crop, flip_prob, cat_max_ratio, seed):
    lo = ratio[0]
    hi = lo + ratio[1] * (2.0 - lo)
    aug = AugmentParams(scale=(w, h), ratio_range=(lo, hi), crop_size=crop, cat_max_ratio=cat_max_ratio,
                        flip_prob=flip_prob, photometric=False)
    images, labels, src = coordinate_clip(h, w, block, n_frames=3)
    out_imgs, out_labels = ClipTransform(aug)(images, labels, np.random.default_rng(seed))
    assert len(out_imgs) == 3 and len(out_labels) == 3
    for img, lab in zip(out_imgs, out_labels):
        assert img.shape == (*crop, 3) and img.dtype == np.uint8
        assert lab.shape == crop and lab.dtype == np.uint8
    # one draw for the clip: every frame got the same geometry (B channel = frame index, 0 in padding)
    pad = out_imgs[1][..., 2] == 0
    for t in range(1, 3):
        np.testing.assert_array_equal(out_imgs[t][..., :2], out_imgs[0][..., :2])
        np.testing.assert_array_equal(out_labels[t], out_labels[0])
        np.testing.assert_array_equal(out_imgs[t][..., 2][~pad], 40 * t)
    assert np.all(out_labels[0][pad] == 255) and np.all(out_imgs[0][pad] == 0)
    img, lab = out_imgs[0], out_labels[0]
    # where the image carries source coordinates (x̂, ŷ), the label must be the source label there
    xs_hat, ys_hat = np.rint(img[..., 0]).astype(int), np.rint(img[..., 1]).astype(int)
    checked = 0
    for i, j in zip(*np.nonzero(~pad)):
        y, x = ys_hat[i, j], xs_hat[i, j]
        win = src[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        if np.all(win == win.flat[0]):  # away from block edges (bilinear + antialias tolerance: 2 px)
            assert lab[i, j] == src[y, x], (i, j, y, x)
            checked += 1
    covered = [np.ptp(a[~pad]) + 1 for a in (xs_hat, ys_hat)]
    if min(covered) >= 2 * block:  # the crop holds a whole block, so some pixels were checked
        assert checked > 0


def test_flip_changes_direction_consistently():
    images, labels, _ = coordinate_clip(20, 30, 4, 1)
    aug = AugmentParams(scale=(30, 20), ratio_range=(1.0, 1.0), crop_size=(20, 30), flip_prob=1.0, photometric=False)
    img, lab = ClipTransform(aug)(images, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(img[0][..., 0], images[0][:, ::-1, 0])
    np.testing.assert_array_equal(lab[0], labels[0][:, ::-1])


def test_padding_when_crop_exceeds_image():
    images, labels, _ = coordinate_clip(10, 12, 3, 2)
    aug = AugmentParams(scale=(12, 10), ratio_range=(1.0, 1.0), crop_size=(16, 20), flip_prob=0.0, photometric=False)
    imgs, labs = ClipTransform(aug)(images, labels, np.random.default_rng(0))
    assert np.all(labs[0][10:] == 255) and np.all(labs[0][:, 12:] == 255)
    assert np.all(imgs[1][10:] == 0) and np.all(imgs[1][:, 12:] == 0)
    np.testing.assert_array_equal(labs[0][:10, :12], labels[0])


def test_cat_max_ratio_prefers_mixed_crops():
    label = np.zeros((64, 64), np.uint8)
    label[:, 56:] = 1  # class 1 only in a thin strip at the right
    img = np.zeros((64, 64, 3), np.uint8)
    aug = AugmentParams(scale=(64, 64), ratio_range=(1.0, 1.0), crop_size=(16, 16), cat_max_ratio=0.75,
                        flip_prob=0.0, photometric=False)
    tf = ClipTransform(aug)
    mixed = [len(np.unique(tf([img], [label], np.random.default_rng(s))[1][0])) > 1 for s in range(40)]
    no_check = ClipTransform(aug.model_copy(update={"cat_max_ratio": 1.0}))
    mixed_free = [len(np.unique(no_check([img], [label], np.random.default_rng(s))[1][0])) > 1 for s in range(40)]
    assert sum(mixed) > sum(mixed_free) + 10


def test_rescale_size_matches_mmcv():
    assert rescale_size(480, 854, (854 * 2, 480 * 2)) == (960, 1708)
    assert rescale_size(96, 128, (64, 48)) == (48, 64)
    assert rescale_size(100, 100, (128, 96)) == (96, 96)  # short edge limits


def test_photometric_stays_in_range_and_varies():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    changed = 0
    for s in range(20):
        out = PhotometricDraw.sample(np.random.default_rng(s)).apply(img)
        assert out.dtype == np.uint8 and out.shape == img.shape
        changed += not np.array_equal(out, img)
    assert changed > 10


def test_hsv_round_trip():
    rgb = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5)


def test_bad_inputs_rejected():
    tf = ClipTransform(AugmentParams())
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="equal length"):
        tf([img], [], np.random.default_rng(0))
    with pytest.raises(ValueError, match="differ from frame 0"):
        tf([img, np.zeros((9, 8, 3), np.uint8)], [np.zeros((8, 8), np.uint8)] * 2, np.random.default_rng(0))


@pytest.mark.parametrize("saturation, hue", [(1.4, None), (0.6, None), (1.5, -18), (None, 10), (0.5, 17)])
def test_saturation_hue_match_hsv_round_trip(saturation, hue):
    """The fast path equals scaling S / rotating H in HSV (OpenCV's 0..180 hue scale), within rounding."""
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    hsv = rgb_to_hsv(img.astype(np.float32) / 255)
    if saturation is not None:
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 1)
    if hue is not None:
        hsv[..., 0] = (hsv[..., 0] + hue / 180) % 1
    expected = np.clip(hsv_to_rgb(hsv) * 255 + 0.5, 0, 255).astype(np.uint8)
    out = adjust_saturation_hue(img, saturation, hue)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.abs(out.astype(int) - img).max() > 5  # it did change the image
