"""Video consistency VC_n exactly as the official VSPW ``VC_perclip.py``, computed in one rolling pass.

Official definition, for a video of ``L`` frames with converted GT ``g_t`` and prediction ``p_t``:

* only videos with MORE than ``n`` frames take part;
* windows start at ``i = 0 … L−n−1`` (``range(L − n)``: the last full window ``[L−n, L)`` is skipped);
* in window ``[i, i+n)`` a pixel is *GT-consistent* if ``g`` is equal over the ``n`` frames (void pixels
  included: void equals void), and *counted* if ``p`` is also equal over the ``n`` frames;
* window score = counted / GT-consistent (NaN when no pixel is GT-consistent);
* VC_n = nanmean over all windows of all videos pooled (not a mean of per-video means).

The official script compares every window's frames again (n − 1 comparisons per window). Here each pixel
keeps the length of its current run of equal GT values, and of equal (GT, prediction) pairs, both ending
at the newest frame ``t``; the window ``[t−n+1, t]`` is GT-consistent at a pixel iff its GT run is ≥ n, and
counted iff its pair run is ≥ n. One frame costs two comparisons and a few in-place uint8 operations for
every ``n`` at once; memory is one frame of run lengths, whatever the video length. A window is recorded
when the *next* frame arrives, which drops exactly the last full window, as the official script does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["MAX_VC_LENGTH", "ConsistencyCounter", "window_counts", "pooled_vc"]

MAX_VC_LENGTH = 254  # run lengths are uint8, saturated at the longest n


def _check_lengths(lengths: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(n) for n in lengths)
    if not out or any(not 1 <= n <= MAX_VC_LENGTH for n in out) or len(set(out)) != len(out):
        raise ValueError(f"vc_lengths must be distinct integers in 1..{MAX_VC_LENGTH}, got {list(lengths)}")
    return out


class ConsistencyCounter:
    """Rolling VC_n window counts of one video, fed frame by frame.

    Args:
        lengths: the window lengths n (e.g. (8, 16)).

    `add(codes, pred)` takes uint8 (H, W) GT codes (void collapsed to one value, see
    `stcl.metrics.confusion.gt_codes_from_raw`) and uint8 (H, W) predictions. `windows(n)` returns the
    int64 arrays ``(counted, consistent)`` of shape (max(0, L − n),) once all L frames have been added.
    """

    def __init__(self, lengths: Sequence[int]) -> None:
        self.lengths = _check_lengths(lengths)
        self._cap = np.uint8(max(self.lengths))
        # runs grow by at most 1 per frame: saturating every (255 - cap) frames keeps them <= 255
        self._cap_every = 255 - int(self._cap)
        self.frames = 0
        self._prev_gt: np.ndarray | None = None
        self._prev_pred: np.ndarray | None = None
        self._gt_run: np.ndarray | None = None
        self._pair_run: np.ndarray | None = None
        self._pending: dict[int, tuple[int, int]] = {}
        self._counted: dict[int, list[int]] = {n: [] for n in self.lengths}
        self._consistent: dict[int, list[int]] = {n: [] for n in self.lengths}

    def add(self, codes: np.ndarray, pred: np.ndarray, copy: bool = True) -> None:
        """Add the next frame. ``copy=False`` keeps references to ``codes``/``pred`` until the next call
        instead of copying them (the caller promises not to modify them meanwhile)."""
        if codes.shape != pred.shape:
            raise ValueError(f"GT shape {codes.shape} != prediction shape {pred.shape}")
        if self._prev_gt is None:
            self._gt_run = np.ones(codes.shape, dtype=np.uint8)
            self._pair_run = np.ones(codes.shape, dtype=np.uint8)
            # work buffers, reused every frame (fresh frame-sized temporaries cost page faults)
            self._same_gt = np.empty(codes.shape, dtype=bool)
            self._same_pair = np.empty(codes.shape, dtype=bool)
            self._at_least = np.empty(codes.shape, dtype=bool)
        else:
            if codes.shape != self._prev_gt.shape:
                raise ValueError(f"frame size {codes.shape} differs from the video's first frame {self._prev_gt.shape}")
            same_gt = np.equal(codes, self._prev_gt, out=self._same_gt)
            same_pair = np.equal(pred, self._prev_pred, out=self._same_pair)
            same_pair &= same_gt
            # run ← run · same + 1 (1 where the value changed); saturated at the longest n now and then
            saturate = self.frames % self._cap_every == 0
            for run, same in ((self._gt_run, same_gt), (self._pair_run, same_pair)):
                run *= same.view(np.uint8)
                run += 1
                if saturate:
                    np.minimum(run, self._cap, out=run)
        if copy:
            if self._prev_gt is None:
                self._prev_gt, self._prev_pred = codes.copy(), pred.copy()
            else:
                np.copyto(self._prev_gt, codes)
                np.copyto(self._prev_pred, pred)
        else:
            self._prev_gt, self._prev_pred = codes, pred
        # The windows ending at the previous frame are not the video's last: record them now.
        for n, (counted, consistent) in self._pending.items():
            self._counted[n].append(counted)
            self._consistent[n].append(consistent)
        self.frames += 1
        self._pending = {
            n: (self._count_at_least(self._pair_run, n), self._count_at_least(self._gt_run, n))
            for n in self.lengths
            if self.frames >= n
        }

    def _count_at_least(self, run: np.ndarray, n: int) -> int:
        return int(np.count_nonzero(np.greater_equal(run, n, out=self._at_least)))

    def windows(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(counted, consistent) per window of length ``n``, int64 (W,) each, windows i = 0 … L−n−1."""
        if n not in self._counted:
            raise ValueError(f"n={n} is not one of this counter's lengths {self.lengths}")
        return np.asarray(self._counted[n], dtype=np.int64), np.asarray(self._consistent[n], dtype=np.int64)


def window_counts(gt_codes: Iterable[np.ndarray], preds: Iterable[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """VC_n window counts of one in-memory video: ``(counted, consistent)``, int64 (max(0, L − n),) each."""
    counter = ConsistencyCounter((n,))
    for codes, pred in zip(gt_codes, preds, strict=True):
        counter.add(codes, pred)
    return counter.windows(n)


def pooled_vc(windows: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[float, int]:
    """Pooled nanmean of ``counted / consistent`` over all windows of all videos.

    Returns (VC, number of windows with a GT-consistent pixel); VC is NaN when there is none. The sum is
    `math.fsum`, so the result does not depend on the order of the videos.
    """
    ratios: list[float] = []
    for counted, consistent in windows:
        valid = consistent > 0
        ratios.extend((counted[valid] / consistent[valid]).tolist())
    if not ratios:
        return float("nan"), 0
    return math.fsum(ratios) / len(ratios), len(ratios)
