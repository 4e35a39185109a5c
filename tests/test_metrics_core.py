"""Hand-computed cases for every quirk of the official VSPW metrics (mIoU, WIoU, VC_n)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stcl.metrics import evaluate_arrays, iou_per_class, mean_iou, weighted_iou, window_counts
from stcl.metrics.confusion import VOID_CODE, FrameCounter, gt_codes_from_raw, gt_codes_from_train_ids


def a(*rows):
    return np.array(rows, dtype=np.uint8)


def test_raw_to_codes_merges_others_and_void():
    raw = a([0, 1, 124, 255])
    np.testing.assert_array_equal(gt_codes_from_raw(raw), a([VOID_CODE, 0, 123, VOID_CODE]))
    np.testing.assert_array_equal(gt_codes_from_train_ids(a([255, 0, 123])), a([VOID_CODE, 0, 123]))


def test_miou_only_over_classes_present_in_gt():
    # C = 3. GT: class 0 ×2, class 1 ×2; class 2 absent from GT but predicted once.
    gt = [a([0, 0, 1, 1])]
    pred = [a([0, 2, 1, 1])]
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=3, vc_lengths=(1,))
    # IoU0 = 1/2 (TP 1, GT 2, pred 1), IoU1 = 2/2; class 2 (IoU 0/1) is left out of the mean.
    assert r.mIoU == pytest.approx((0.5 + 1.0) / 2)
    assert r.per_class_iou[0] == pytest.approx(0.5) and r.per_class_iou[1] == 1.0
    assert math.isnan(r.per_class_iou[2])
    # WIoU = freq-weighted over GT classes: 0.5·0.5 + 0.5·1
    assert r.WIoU == pytest.approx(0.75)


def test_void_pixels_do_not_enter_the_confusion():
    gt = [a([255, 255, 0, 1])]
    pred = [a([1, 1, 0, 1])]  # predictions on void pixels must not hurt class 1
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=2, vc_lengths=(1,))
    assert r.mIoU == 1.0 and r.WIoU == 1.0
    assert r.void_pixels == 2 and r.confusion.sum() == 2


def test_confusion_matches_definition():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 4]])
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(3 / (4 + 5 - 3)) and math.isnan(iou[1]) and iou[2] == pytest.approx(4 / 6)
    assert mean_iou(cm) == pytest.approx((0.5 + 4 / 6) / 2)
    assert weighted_iou(cm) == pytest.approx(4 / 10 * 0.5 + 6 / 10 * 4 / 6)


def test_invalid_gt_value_is_an_error_naming_the_source():
    counter = FrameCounter(124)
    with pytest.raises(ValueError, match=r"gt\.png: .*raw mask values \[130\]"):
        counter.add(gt_codes_from_raw(a([130, 1])), a([0, 0]), gt_source="gt.png", pred_source="p.png")
    with pytest.raises(ValueError, match=r"p\.png: prediction values \[124\]"):
        counter.add(gt_codes_from_raw(a([1, 1])), a([124, 0]), gt_source="gt.png", pred_source="p.png")


def _video(values_gt, values_pred):
    """One-pixel frames from two sequences."""
    return [a([v]) for v in values_gt], [a([v]) for v in values_pred]


def test_vc_video_of_exactly_n_frames_has_no_window():
    gt, pred = _video([1] * 8, [1] * 8)
    counted, consistent = window_counts([gt_codes_from_train_ids(g) for g in gt], pred, 8)
    assert len(counted) == 0
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=3, vc_lengths=(8,))
    assert math.isnan(r.vc[8]) and r.vc_windows[8] == 0 and r.vc_videos[8] == 0


def test_vc_video_of_n_plus_one_frames_gives_one_window_and_skips_the_last():
    # Window [0, 3) is consistent and correct; the last full window [1, 4) (prediction changes at frame 3)
    # is skipped by the official range(len - n), so VC3 = 1 even though that window would score 0.
    gt, pred = _video([1, 1, 1, 1], [1, 1, 1, 2])
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=3, vc_lengths=(3,))
    assert r.vc_windows[3] == 1 and r.vc[3] == 1.0
    # One more frame: windows [0,3) → 1, [1,4) → 0 (pred 1,1,2); the last window [2,5) is skipped.
    gt, pred = _video([1, 1, 1, 1, 1], [1, 1, 1, 2, 2])
    counted, consistent = window_counts([gt_codes_from_train_ids(g) for g in gt], pred, 3)
    np.testing.assert_array_equal(counted, [1, 0])
    np.testing.assert_array_equal(consistent, [1, 1])


def test_vc_void_counts_as_consistent_and_others_equals_void():
    # Raw GT 0 ("others") and 255 both become train id 255, so a pixel going others → void is GT-consistent.
    raw = [a([0]), a([255]), a([0]), a([0])]
    gt = [np.where(r == 0, 255, r).astype(np.uint8) for r in raw]
    pred = [a([2]), a([2]), a([2]), a([0])]
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=3, vc_lengths=(3,))
    assert r.vc_windows[3] == 1 and r.vc[3] == 1.0
    assert math.isnan(r.mIoU)  # no class pixel at all


def test_vc_window_without_consistent_pixel_is_nan_and_skipped_by_nanmean():
    # VC measures prediction *consistency* where the GT is consistent, not correctness.
    gt, pred = _video([0, 1, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0])
    counted, consistent = window_counts([gt_codes_from_train_ids(g) for g in gt], pred, 2)
    np.testing.assert_array_equal(consistent, [0, 0, 0, 1, 1])  # windows i = 0..4; [5, 7) skipped
    np.testing.assert_array_equal(counted, [0, 0, 0, 0, 1])
    r = evaluate_arrays({"v": (gt, pred)}, num_classes=2, vc_lengths=(2,))
    assert r.vc[2] == 0.5 and r.vc_windows[2] == 2


def test_vc_pooled_over_windows_not_mean_of_video_means():
    # Video A: 1 window scoring 1.0; video B: 3 windows scoring 0, 0, 0 (two pixels, one consistent).
    gt_a, pred_a = _video([1, 1, 1], [1, 1, 1])
    gt_b = [a([1, 1]), a([1, 0]), a([1, 1]), a([1, 0]), a([1, 1])]
    pred_b = [a([1, 1]), a([0, 1]), a([1, 1]), a([0, 1]), a([1, 1])]
    r = evaluate_arrays({"a": (gt_a, pred_a), "b": (gt_b, pred_b)}, num_classes=2, vc_lengths=(2,))
    assert r.vc_windows[2] == 1 + 3
    assert r.vc[2] == pytest.approx(1 / 4)  # pooled; the mean of video means would be 0.5
    assert r.per_video_vc["a"][2] == 1.0 and r.per_video_vc["b"][2] == 0.0


def test_order_of_videos_does_not_change_results():
    rng = np.random.default_rng(0)
    videos = {}
    for v in range(5):
        length = int(rng.integers(3, 12))
        gt = [rng.integers(0, 4, (6, 7)).astype(np.uint8) for _ in range(length)]
        gt = [np.where(g == 3, 255, g).astype(np.uint8) for g in gt]
        pred = [np.where(rng.random((6, 7)) < 0.2, 0, np.minimum(g, 2)).astype(np.uint8) for g in gt]
        videos[f"v{v}"] = (gt, pred)
    r1 = evaluate_arrays(videos, num_classes=3, vc_lengths=(2, 4))
    r2 = evaluate_arrays(dict(reversed(list(videos.items()))), num_classes=3, vc_lengths=(2, 4))
    assert r1.to_dict() == r2.to_dict()


def _brute_force_windows(gts, preds, n):
    """The official per-window loop, written out (reference for the rolling implementation)."""
    counted, consistent = [], []
    for i in range(len(gts) - n):
        g = np.all([gts[i] == gts[i + j] for j in range(n)], axis=0)
        p = np.all([preds[i] == preds[i + j] for j in range(n)], axis=0)
        counted.append(int((g & p).sum()))
        consistent.append(int(g.sum()))
    return counted, consistent


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_rolling_vc_equals_per_window_loop_on_long_video(n):
    # 600 frames: longer than the uint8 run-length range, so saturation must be exact.
    rng = np.random.default_rng(n)
    length = 600
    gts = [gt_codes_from_train_ids(np.where(rng.random((2, 3)) < 0.03, 1, 0).astype(np.uint8)) for _ in range(length)]
    gts = [np.where(np.arange(6).reshape(2, 3) < 3, 0, g).astype(np.uint8) for g in gts]  # 3 pixels never change
    preds = [np.where(rng.random((2, 3)) < 0.02, 1, 0).astype(np.uint8) for _ in range(length)]
    counted, consistent = window_counts(gts, preds, n)
    ref_counted, ref_consistent = _brute_force_windows(gts, preds, n)
    np.testing.assert_array_equal(counted, ref_counted)
    np.testing.assert_array_equal(consistent, ref_consistent)


@pytest.mark.parametrize("noise", [0.0, 0.01, 0.9])
def test_confusion_run_counting_equals_plain_bincount(noise):
    # Piecewise-constant maps take the run-length path, noisy ones the plain bincount: both exact.
    rng = np.random.default_rng(3)
    gt = np.repeat(rng.integers(0, 5, (8, 1)), 40, axis=1).astype(np.uint8)
    pred = gt.copy()
    flip = rng.random(gt.shape) < noise
    pred[flip] = rng.integers(0, 5, flip.sum())
    gt[0, :7] = 255
    expected = np.zeros((5, 5), dtype=np.int64)
    for g, p in zip(gt.ravel(), pred.ravel()):
        if g < 5:
            expected[g, p] += 1
    counter = FrameCounter(5)
    counter.add(gt_codes_from_train_ids(gt), pred)
    np.testing.assert_array_equal(counter.confusion, expected)
    assert counter.void_pixels == 7


def test_in_memory_errors_name_video_and_frame():
    gt = [a([0, 1]), a([0, 1])]
    with pytest.raises(ValueError, match=r"video 'v' prediction frame 1: prediction values \[3\] outside 0\.\.2"):
        evaluate_arrays({"v": (gt, [a([0, 1]), a([0, 3])])}, num_classes=3, vc_lengths=(1,))
    with pytest.raises(ValueError, match=r"video 'v': 2 GT frames but 1 predictions"):
        evaluate_arrays({"v": (gt, [a([0, 1])])}, num_classes=3, vc_lengths=(1,))
    with pytest.raises(ValueError, match=r"video 'v' GT frame 0: .*train ids \[7\]"):
        evaluate_arrays({"v": ([a([7, 1])], [a([0, 1])])}, num_classes=3, vc_lengths=(1,))
    with pytest.raises(ValueError, match=r"prediction size 3x1 != GT size 2x1"):
        evaluate_arrays({"v": ([a([0, 1])], [a([0, 1, 1])])}, num_classes=3, vc_lengths=(1,))
