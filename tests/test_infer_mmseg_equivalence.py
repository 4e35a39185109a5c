"""Our sliding window and TTA against mmsegmentation 1.2.2's own ``EncoderDecoder.slide_inference``.

The model is mmseg's R50-V1c UperNet (its config in the wheel, seeded random weights), converted and loaded
strictly into ours, as in tests/test_models_mmseg_equivalence.py. mmseg runs on normalised input (its data
preprocessor's job), ours on 0..255 (`Segmentor.predict` normalises); the window grid commutes with that.

* `slide_logits` = ``slide_inference`` (crop 64, stride 48) for an image larger than the crop, smaller in
  one direction, smaller in both.
* `tta_probs` = mmseg 0.x ``aug_test`` over views built from 1.2.2's ``slide_inference``: resize, flip,
  slide, resize the logits back, softmax, flip back, sum, divide. Resizing the frame as we do (float
  bilinear) it agrees to 1e-5; resizing the uint8 frame with mmcv (cv2, as mmseg's pipeline does) the
  probabilities differ by the rounding of the resized frame to uint8: that tolerance is stated and tested.
* Guard: the padding of small views we used before (pad to the crop, drop the padding's logits) differs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _mmseg_fixtures import build_mmseg
from stcl.infer.multiscale import TTA, scaled_size, tta_probs
from stcl.infer.sliding import Window, slide_logits
from stcl.models import build_segmentor, convert_mmseg_checkpoint
from stcl.models.loading import strict_load
from stcl.params import ModelParams

R50 = "upernet/upernet_r50_4xb4-80k_ade20k-512x512.py"
CROP, STRIDE = (64, 64), (48, 48)
TOL = 1e-4
CLASSES = 7
LOGIT_GAIN = 20.0
# mmcv resizes the uint8 frame with cv2 (11-bit fixed-point weights, rounded to uint8): the resized views
# differ from our float resize by at most one grey level, which moves the averaged probabilities of this
# model by at most MMCV_RESIZE_TOL (measured: see the test's printout).
MMCV_RESIZE_TOL = 1e-4


@pytest.fixture(scope="module")
def pair():
    from mmengine.config import ConfigDict

    mm = build_mmseg(R50, num_classes=CLASSES)
    mm.test_cfg = ConfigDict(mode="slide", crop_size=CROP, stride=STRIDE)
    with torch.no_grad():  # logits of a trained model's range (±10s), so that softmax is not flat
        mm.decode_head.conv_seg.weight.mul_(LOGIT_GAIN)
        mm.decode_head.conv_seg.bias.mul_(LOGIT_GAIN)
    ours = build_segmentor(ModelParams(backbone="resnet50", channels=512, aux_channels=256), CLASSES).eval()
    strict_load(ours, convert_mmseg_checkpoint(mm.state_dict(), window=None, source=R50), R50)
    return mm, ours


def _normalise(ours, x: torch.Tensor) -> torch.Tensor:
    return (x - ours.pixel_mean) / ours.pixel_std


def _mmseg_slide(mm, ours, x: torch.Tensor) -> torch.Tensor:
    """mmseg 1.2.2's slide_inference on 0..255 frames x (N, 3, H, W) → logits (N, C, H, W)."""
    with torch.no_grad():
        return mm.slide_inference(_normalise(ours, x), [dict(img_shape=tuple(x.shape[-2:]))])


def _frames(h: int, w: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    """(n, 3, h, w) smooth 0..255 frames (random noise upsampled, so resizing behaves as on photos)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, max(h // 6, 2), max(w // 6, 2)), generator=g) * 255
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).round()


CASES = {"larger": (100, 150), "smaller in one direction": (40, 90), "smaller in both": (30, 50)}


@pytest.mark.parametrize("case", CASES)
def test_slide_logits_equals_mmseg_slide_inference(pair, case):
    mm, ours = pair
    x = _frames(*CASES[case], n=2)
    ref = _mmseg_slide(mm, ours, x)
    got = slide_logits(ours.predict, x, Window(CROP, STRIDE), batch_size=3)
    diff = (got - ref).abs().max().item()
    print(f"slide_logits vs mmseg slide_inference, {case} {CASES[case]}: max|Δ logits| {diff:.2e}")
    assert got.shape == ref.shape
    assert diff <= TOL


def _padded_slide_logits(predict, x: torch.Tensor, window: Window) -> torch.Tensor:
    """The sliding window stcl used before (kept here only as the guard's reference): a view smaller than
    the crop is padded bottom/right with 0 up to the crop, slid at full crops, the padding's logits dropped."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, max(window.crop[1] - w, 0), 0, max(window.crop[0] - h, 0)), value=0.0)
    return slide_logits(predict, padded, window)[..., :h, :w]


@pytest.mark.parametrize("case", ["smaller in one direction", "smaller in both"])
def test_guard_the_old_padding_differs_from_mmseg(pair, case):
    mm, ours = pair
    x = _frames(*CASES[case])
    ref = _mmseg_slide(mm, ours, x)
    with torch.no_grad():
        old = _padded_slide_logits(ours.predict, x, Window(CROP, STRIDE))
    diff = (old - ref).abs().max().item()
    print(f"old padded window vs mmseg, {case}: max|Δ logits| {diff:.2e} (largest |logit| {ref.abs().max():.2f})")
    assert diff > 1e-2


def _mmseg_aug_test(mm, ours, frame_u8: np.ndarray, tta: TTA, resize) -> torch.Tensor:
    """mmseg 0.x aug_test order over views of 1.2.2's slide_inference. ``resize(frame, (h, w))`` → (1,3,h,w)."""
    h, w = frame_u8.shape[:2]
    total = None
    for scale, flip in tta.views:
        x = resize(frame_u8, scaled_size(h, w, scale))
        x = x.flip(-1) if flip else x
        logits = _mmseg_slide(mm, ours, x)
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)  # resize(..., ori_shape)
        probs = logits.softmax(dim=1)
        probs = probs.flip(-1) if flip else probs
        total = probs if total is None else total + probs
    return (total / len(tta.views))[0]


def _float_resize(frame_u8: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    x = torch.from_numpy(frame_u8).permute(2, 0, 1)[None].float()
    return x if size == tuple(x.shape[-2:]) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _mmcv_resize(frame_u8: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    import mmcv

    out = mmcv.imresize(frame_u8, (size[1], size[0]), interpolation="bilinear")  # cv2 on uint8, (w, h)
    return torch.from_numpy(out).permute(2, 0, 1)[None].float()


def test_tta_equals_mmseg_multiscale_flip(pair):
    """One 60×100 frame, the paper's six scales with flip at crop 64: views from 30×50 (smaller than the
    crop in both directions) to 105×175 (several windows)."""
    mm, ours = pair
    frame = _frames(60, 100, seed=3)[0]
    frame_u8 = frame.permute(1, 2, 0).to(torch.uint8).numpy()
    tta = TTA(scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True, window=Window(CROP, STRIDE), batch_size=4)
    got = tta_probs(ours.predict, frame[None], tta)[0]
    same_resize = _mmseg_aug_test(mm, ours, frame_u8, tta, _float_resize)
    mmcv_resize = _mmseg_aug_test(mm, ours, frame_u8, tta, _mmcv_resize)
    grey = max(
        (_mmcv_resize(frame_u8, scaled_size(60, 100, s)) - _float_resize(frame_u8, scaled_size(60, 100, s))).abs().max()
        for s in tta.scales
    ).item()
    d_same = (got - same_resize).abs().max().item()
    d_mmcv = (got - mmcv_resize).abs().max().item()
    agree = (got.argmax(0) == mmcv_resize.argmax(0)).float().mean().item()
    print(f"TTA vs mmseg aug_test: max|Δ probs| {d_same:.2e} (same resize), {d_mmcv:.2e} (mmcv uint8 resize: "
          f"views differ by <= {grey:.2f} grey levels; argmax agreement {agree:.4f})")
    assert grey <= 1.0
    assert d_same <= 1e-5
    assert d_mmcv <= MMCV_RESIZE_TOL
    assert grey > 0  # the mmcv comparison really resized differently
