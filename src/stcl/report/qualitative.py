"""Qualitative views of one val video: what the model predicts, where it is wrong, and where it flickers.

For a video with frames ``x_t``, GT train ids ``g_t`` (raw VSPW masks converted: 0/255 → 255, c → c − 1)
and predictions ``p_t``:

* **panels** of a frame: ``x_t`` | colour(``g_t``) | colour(``p_t``) | error map, where the error map is the
  frame in dim grey where ``p = g``, red where ``p ≠ g`` and slate blue where the GT is void;
* **flicker** of the window of ``n`` frames ending at ``t`` (t ≥ n − 1): pixels whose GT is equal over the
  window (void included) while the prediction is not. These are exactly the GT-consistent pixels that
  VC_n does not count (`stcl.metrics.consistency`); drawn magenta over the grey frame. Every full window
  is shown, the last one included (the official VC skips it);
* ``strip.png``: a few frames spread over the video, one row each (frame | GT | prediction | error | flicker);
* ``anim.gif``: every frame (up to ``max_gif_frames``, from the start) as that row, at the video's rate,
  and ``anim.html``, the same GIF inside a self-contained page (Snakemake's report shows HTML results in
  place but offers GIFs only as downloads);
* ``flicker.png``: the flickering fraction of GT-consistent pixels of every window over time, and the three
  windows that flicker most.

Memory: only the panel rows still needed (GIF frames, strip frames, the three most flickering windows so
far) are held, at the (downscaled) panel size, whatever the video's length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stcl.atomic import atomic_path
from stcl.report.figures import panel_rows, pyplot, save_png
from stcl.report.overlay import colorize

__all__ = ["error_map", "FlickerTracker", "VideoViews", "load_video", "write_video_views"]

WRONG = np.array([220, 20, 20], dtype=np.uint8)
VOID = np.array([90, 90, 140], dtype=np.uint8)
FLICKER = np.array([255, 0, 255], dtype=np.uint8)


def _grey(frame: np.ndarray, level: float) -> np.ndarray:
    """uint8 (H, W, 3) RGB → (H, W, 3) grey scaled by ``level``."""
    y = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(np.rint(y * level).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)


def error_map(frame: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3): dim grey frame where ``pred == gt``, red where wrong, slate blue where ``gt`` is void (255)."""
    out = _grey(frame, 0.45)
    out[(pred != gt) & (gt != 255)] = WRONG
    out[gt == 255] = VOID
    return out


class FlickerTracker:
    """Rolling run lengths of equal GT and equal prediction per pixel; `add` returns the flicker mask.

    ``add(gt_t, pred_t)`` → bool (H, W) mask of pixels GT-consistent over the window of ``n`` frames ending
    at ``t`` whose prediction is not constant over it, and the number of GT-consistent pixels; (None, 0)
    while fewer than ``n`` frames have been seen.
    """

    def __init__(self, n: int = 8) -> None:
        if n < 2:
            raise ValueError(f"n must be at least 2, got {n}")
        self.n = n
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._gt_run: np.ndarray | None = None
        self._pred_run: np.ndarray | None = None
        self.frames = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray | None, int]:
        if self._prev is None:
            self._gt_run = np.ones(gt.shape, dtype=np.int32)
            self._pred_run = np.ones(gt.shape, dtype=np.int32)
        else:
            g0, p0 = self._prev
            if g0.shape != gt.shape:
                raise ValueError(f"frame size changed from {g0.shape} to {gt.shape}")
            self._gt_run = np.where(gt == g0, self._gt_run + 1, 1)
            self._pred_run = np.where(pred == p0, self._pred_run + 1, 1)
        self._prev = (gt, pred)
        self.frames += 1
        if self.frames < self.n:
            return None, 0
        consistent = self._gt_run >= self.n
        return consistent & (self._pred_run < self.n), int(consistent.sum())


@dataclass
class VideoViews:
    """Paths written by `write_video_views` and the per-window flicker fractions (NaN: no GT-consistent pixel)."""

    strip: Path
    gif: Path
    gif_page: Path
    flicker: Path
    flicker_fraction: list[float]


def load_video(gt_root: str | Path, pred_root: str | Path, video: str) -> Iterator:
    """Yield (stem, frame uint8 (H, W, 3), GT train ids uint8 (H, W), prediction uint8 (H, W)) in time order.

    Frames are listed from the GT masks (as the evaluation does); a missing prediction is a FileNotFoundError
    naming it.
    """
    from stcl.data.io import load_label_png
    from stcl.data.vspw import frame_path, load_image, load_train_ids, mask_path
    from stcl.metrics.io import list_gt_frames, pred_path

    for stem in list_gt_frames(gt_root, video):
        gt = load_train_ids(mask_path(gt_root, video, stem))
        pred = load_label_png(pred_path(pred_root, video, stem))
        frame = load_image(frame_path(gt_root, video, stem))
        if not (frame.shape[:2] == gt.shape == pred.shape):
            raise ValueError(f"{pred_path(pred_root, video, stem)}: size {pred.shape} differs from the GT {gt.shape}")
        yield stem, frame, gt.astype(np.uint8), pred


def _resize(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


PANEL_TITLES = ("frame", "ground truth", "prediction", "error (red)", "flicker, 8-frame window (magenta)")


def write_video_views(
    gt_root: str | Path,
    pred_root: str | Path,
    video: str,
    out_dir: str | Path,
    *,
    n: int = 8,
    strip_rows: int = 4,
    panel_height: int = 160,
    max_gif_frames: int = 90,
    fps: float = 15.0,
) -> VideoViews:
    """Write ``<out_dir>/<video>.strip.png``, ``<video>.anim.gif`` and ``<video>.flicker.png``.

    Args:
        gt_root: VSPW-layout root (frames and GT masks).
        pred_root: predictions ``<pred_root>/<video>/<frame>.png`` (train ids).
        video: the video name.
        out_dir: where the three files go (atomically).
        n: flicker window (8: what VC8 counts).
        strip_rows: frames in the strip, spread evenly over the video.
        panel_height: height of each panel in the GIF and strip (nearest-neighbour scaling).
        max_gif_frames: the GIF shows the first frames only, up to this many.
        fps: GIF frame rate (VSPW: 15).
    """
    plt = pyplot()

    from stcl.metrics.io import list_gt_frames

    out_dir = Path(out_dir)
    count = len(list_gt_frames(gt_root, video))
    picks = sorted(set(np.linspace(0, count - 1, min(strip_rows, count)).round().astype(int).tolist()))
    tracker = FlickerTracker(n)
    kept: dict[int, np.ndarray] = {}  # (h, 5w, 3) rows still needed: GIF frames, strip picks, current top-3 flicker
    scores: list[float] = []
    top: list[tuple[float, int]] = []  # (flicker fraction, t) of the three most flickering windows so far
    stems: list[str] = []
    for t, (stem, frame, gt, pred) in enumerate(load_video(gt_root, pred_root, video)):
        flicker, consistent = tracker.add(gt, pred)
        flick = _grey(frame, 0.6)
        if flicker is not None:
            flick[flicker] = FLICKER
            frac = float(flicker.sum()) / consistent if consistent else float("nan")
            scores.append(frac)
            if consistent:
                top = sorted([*top, (frac, t)], key=lambda st: (-st[0], st[1]))[:3]
        panels = [frame, colorize(gt), colorize(pred), error_map(frame, gt, pred), flick]
        kept[t] = np.concatenate([_resize(p, panel_height) for p in panels], axis=1)
        stems.append(stem)
        needed = set(picks) | {i for _, i in top} | set(range(max_gif_frames))
        for i in [i for i in kept if i not in needed]:
            del kept[i]  # memory stays bounded whatever the video length
    if not stems:
        raise ValueError(f"{gt_root}: video {video} has no frames")
    views = VideoViews(
        strip=out_dir / f"{video}.strip.png",
        gif=out_dir / f"{video}.anim.gif",
        gif_page=out_dir / f"{video}.anim.html",
        flicker=out_dir / f"{video}.flicker.png",
        flicker_fraction=scores,
    )
    panel_rows([kept[i] for i in picks], PANEL_TITLES, [f"frame {stems[i]}" for i in picks], views.strip)
    _write_gif([kept[i] for i in range(min(len(stems), max_gif_frames))], views.gif, fps)
    _write_gif_page(views.gif, views.gif_page, video)
    _write_flicker(kept, scores, [t for _, t in top], stems, n, views.flicker, video, plt)
    return views


def _write_gif(rows: Sequence[np.ndarray], path: Path, fps: float) -> None:
    images = [Image.fromarray(r).convert("P", palette=Image.ADAPTIVE, colors=255) for r in rows]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def _write_gif_page(gif: Path, path: Path, video: str) -> None:
    import base64
    import html

    from stcl.atomic import write_text

    data = base64.b64encode(gif.read_bytes()).decode("ascii")
    title = html.escape(f"{video}: frame | ground truth | prediction | error | flicker")
    write_text(path, f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head><body>'
                     f'<p>{title}</p><img src="data:image/gif;base64,{data}" alt="{title}"></body></html>\n')


def _write_flicker(rows, scores, top, stems, n: int, path: Path, video: str, plt) -> None:
    fig = plt.figure(figsize=(12, 2.6 + 2.2 * max(len(top), 1)))
    ax = fig.add_subplot(max(len(top), 1) + 1, 1, 1)
    ax.plot(range(n - 1, n - 1 + len(scores)), scores, color="tab:purple", marker="." if len(scores) < 40 else None)
    ax.set(title=f"{video}: flickering share of GT-consistent pixels per {n}-frame window (1 - window VC{n})",
           xlabel="last frame of the window", ylim=(0, max([s for s in scores if s == s] + [0.05]) * 1.1))
    w = next(iter(rows.values())).shape[1]
    for k, t in enumerate(top):
        a = fig.add_subplot(max(len(top), 1) + 1, 1, k + 2)
        a.imshow(np.concatenate([rows[t][:, : w // 5], rows[t][:, 4 * w // 5 :]], axis=1), interpolation="nearest")
        a.set_axis_off()
        a.set_title(f"window ending at frame {stems[t]}: {100 * scores[t - n + 1]:.1f}% flicker", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=80)
