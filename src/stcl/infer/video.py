"""Frames of a user's video in, label PNGs and an overlay video out (`stcl predict`).

Inputs (`open_source`):

* a video file (mp4, mov, avi, mkv, webm, ... anything FFmpeg demuxes), decoded with PyAV; frames are
  RGB uint8 (H, W, 3) at the coded size (rotation metadata is not applied); the frame rate is the stream's
  average rate. Before any work the packets are counted (no decoding): a file FFmpeg cannot open, without a
  video stream, with zero frames, or with fewer packets than its header announces (truncated) is refused
  with one line naming it.
* a folder of frames (``*.jpg``, ``*.jpeg``, ``*.png``, sorted by name), which must all have one size;
  the frame rate is given (VSPW frames are 15 fps).

Outputs of `predict_video` in ``out``:

* ``labels/<8-digit frame index>.png``: palette PNG of class ids (train ids, 0..123 for VSPW), frame size,
  the format of `stcl infer` (`stcl.infer.io.save_label_png`);
* ``overlay.mp4``: H.264 at the input's size and frame rate (or the size the caller's ``render`` gives),
  each frame ``render(frame, label)`` (`stcl predict` passes `stcl.report.overlay.render_overlay`);
* ``predict.json``: what was run (input, models, TTA) and, once finished, ``"complete": true``.

Frames are streamed through the video driver (`stcl.infer.driver`, the one frame loop; a few frames per
group), whatever the length: a first pass writes the label PNGs the folder lacks (`PredictWriter`, with
`stcl.infer.outputs.write_prediction`), a second decodes the input again and encodes the overlay from the
labels. Every file is written
atomically; a rerun with the same input, models and options reuses the label PNGs already written (no
model run for them), re-encodes the overlay video, and finishes at once when the previous run completed.
Different input, models or options start over.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stcl.atomic import atomic_path, write_json
from stcl.infer.driver import VideoWork, Writer, run_videos
from stcl.infer.frames import blend
from stcl.infer.multiscale import TTA
from stcl.infer.outputs import write_prediction
from stcl.infer.sliding import Predictor

__all__ = [
    "FRAME_SUFFIXES",
    "VideoInfo",
    "open_source",
    "iter_frames",
    "OverlayEncoder",
    "PredictVideoResult",
    "PredictWriter",
    "predict_video",
]

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
RECORD_FORMAT = "stcl-predict/1"


@dataclass(frozen=True)
class VideoInfo:
    """A validated input: its kind ("video" or "frames"), size, frame rate and frame count."""

    path: Path
    kind: str
    height: int
    width: int
    fps: Fraction
    frames: int
    frame_files: tuple[Path, ...] = ()  # the frames of a folder, in order


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a declared dependency
        raise OSError(f"PyAV is needed to read videos ({err}); pip install av") from None
    return av


def _probe_video(path: Path) -> VideoInfo:
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream (zero frames)")
            stream = container.streams.video[0]
            announced = int(stream.frames or 0)
            packets = sum(1 for p in container.demux(stream) if p.size > 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            height, width = stream.codec_context.height, stream.codec_context.width
    except av.error.FFmpegError as err:
        raise ValueError(f"{path}: unreadable or truncated video ({err})") from None
    if packets == 0:
        raise ValueError(f"{path}: the video has zero frames")
    if announced and packets < announced:
        raise ValueError(f"{path}: truncated video: its header announces {announced} frames, the file holds {packets}")
    if not rate or height <= 0 or width <= 0:
        raise ValueError(f"{path}: video stream without a frame rate or size")
    return VideoInfo(path, "video", height, width, Fraction(rate), announced or packets)


def _probe_folder(path: Path, fps: Fraction) -> VideoInfo:
    from stcl.data.io import image_size

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{path}: zero frames (no {'/'.join(FRAME_SUFFIXES)} files)")
    size = image_size(files[0])
    for f in files[1:]:
        other = image_size(f)
        if other != size:
            raise ValueError(
                f"{f}: frame size {other[1]}x{other[0]} differs from {size[1]}x{size[0]} of {files[0].name} "
                "(a frame folder must hold frames of one size)"
            )
    return VideoInfo(path, "frames", size[0], size[1], fps, len(files), tuple(files))


def open_source(path: str | Path, fps: float | Fraction = Fraction(15)) -> VideoInfo:
    """Validate a video file or a frame folder (``fps`` is used for folders only); ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: input not found")
    if path.is_dir():
        if not fps or float(fps) <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        return _probe_folder(path, Fraction(fps).limit_denominator(1001))
    return _probe_video(path)


def iter_frames(info: VideoInfo) -> Iterator[np.ndarray]:
    """The frames of a validated input in order, one at a time: uint8 (H, W, 3) RGB."""
    if info.kind == "frames":
        from stcl.data.io import load_image

        yield from (load_image(f) for f in info.frame_files)
        return
    av = _av()
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")
                if image.shape[:2] != (info.height, info.width):
                    raise ValueError(f"{info.path}: frame size changes mid-stream ({image.shape[1]}x{image.shape[0]})")
                yield image
    except av.error.FFmpegError as err:
        raise ValueError(f"{info.path}: unreadable or truncated video ({err})") from None


class OverlayEncoder:
    """H.264 mp4 writer of uint8 (H, W, 3) RGB frames at a constant frame rate, written atomically.

    Frames go to a temporary file beside ``path``; `close` finishes the stream and renames it into place.
    Even sizes are stored as yuv420p (plays everywhere); an odd width or height needs yuv444p.
    Use as a context manager: an exception removes the temporary file.
    """

    def __init__(self, path: str | Path, height: int, width: int, fps: Fraction, crf: int = 18) -> None:
        av = _av()
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=fps)
            self._stream.width, self._stream.height = width, height
            even = height % 2 == 0 and width % 2 == 0
            self._stream.pix_fmt = "yuv420p" if even else "yuv444p"
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        except BaseException:
            self._abort()
            raise
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Encode one uint8 (H, W, 3) RGB frame."""
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder, close the file and rename it into place; returns the final path."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._ctx.__exit__(None, None, None)
        return self.path

    def _abort(self) -> None:
        try:
            if getattr(self, "_container", None) is not None:
                self._container.close()
        except Exception:
            pass
        err = RuntimeError("encoding aborted")
        self._ctx.__exit__(RuntimeError, err, None)  # removes the temporary file

    def __enter__(self) -> "OverlayEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


@dataclass
class PredictVideoResult:
    """What `predict_video` did: frames in total, frames computed by the models, reused from a previous run."""

    info: VideoInfo
    frames: int = 0
    computed: int = 0
    reused: int = 0
    skipped: bool = False  # a previous run with the same inputs had completed
    overlay: Path | None = None
    labels: Path | None = None


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _input_fingerprint(info: VideoInfo) -> dict[str, Any]:
    if info.kind == "video":
        return _fingerprint(info.path)
    digest = hashlib.sha256()
    for f in info.frame_files:
        digest.update(json.dumps(_fingerprint(f)).encode())
    return {"path": str(info.path.resolve()), "frames_sha256": digest.hexdigest()}


def frame_name(index: int) -> str:
    """Label PNG name of frame ``index`` (0-based): ``00000000.png``, VSPW's 8-digit naming."""
    return f"{index:08d}.png"


def _label_reusable(path: Path, info: VideoInfo) -> np.ndarray | None:
    from stcl.data.io import load_label_png

    if not path.is_file():
        return None
    try:
        label = load_label_png(path)
    except ValueError:
        return None
    return label if label.shape == (info.height, info.width) else None


def predict_video(
    models: Mapping[str, Predictor],
    weights: Sequence[float],
    tta: TTA,
    info: VideoInfo,
    out: str | Path,
    *,
    render: Callable[[np.ndarray, np.ndarray], np.ndarray],
    overlay_size: tuple[int, int],
    options: dict[str, Any],
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> PredictVideoResult:
    """Predict every frame of ``info`` with the ensemble; write label PNGs, the overlay video and a record.

    Args:
        models: name → predictor of each member (`stcl.infer.ensemble.load_models`).
        weights: one per model, summing to 1.
        tta: scales, flips, sliding window (`stcl.infer.multiscale.tta_from_params`).
        info: the validated input (`open_source`).
        out: output folder (``labels/``, ``overlay.mp4``, ``predict.json``).
        render: ``(uint8 (H, W, 3) frame, uint8 (H, W) label) → uint8 (h, w, 3)`` overlay frame.
        overlay_size: (h, w) of the rendered frames.
        options: what else defines the result (model files, weights, TTA, amp, overlay look): a rerun
            reuses earlier label PNGs only when these and the input are unchanged.
        device: where the members run.
        progress: show a tqdm bar over frames.
    """
    from stcl.data.io import load_label_png

    out = Path(out)
    writer = PredictWriter(models, weights, info, out, options)
    result = PredictVideoResult(info=info, labels=writer.labels_dir, overlay=writer.overlay_path)
    summary = run_videos(writer, [writer.video], tta, device=device, workers=0, progress=progress, desc="predict")
    if summary.skipped:
        result.skipped, result.frames = True, int(writer.previous.get("frames", 0))
        return result
    result.computed = writer.computed
    with OverlayEncoder(writer.overlay_path, *overlay_size, info.fps) as encoder:
        for index, image in enumerate(iter_frames(info)):
            encoder.write(render(image, load_label_png(writer.labels_dir / frame_name(index))))
        if encoder.frames == 0:
            raise ValueError(f"{info.path}: the video has zero decodable frames")
    result.frames = encoder.frames
    result.reused = result.frames - result.computed
    for extra in sorted(writer.labels_dir.glob("*.png"))[result.frames :]:
        extra.unlink()  # a longer earlier input of the same name cannot leave frames behind
    write_json(writer.record_path, {**writer.record, "complete": True, "frames": result.frames, "fps": str(info.fps),
                                    "height": info.height, "width": info.width})
    return result


class PredictWriter(Writer):
    """`stcl predict`'s writer of the video driver (`stcl.infer.driver`): one video, its label PNGs written
    in place (a rerun reuses each PNG already there), skipped whole when a run with the same input and
    options completed. The overlay and the final record follow in `predict_video`."""

    stage = "predict"

    def __init__(
        self, models: Mapping[str, Predictor], weights: Sequence[float], info: VideoInfo, out: Path,
        options: dict[str, Any],
    ) -> None:
        self.models, self.weights, self.info, self.out = models, weights, info, out
        self.video = info.path.name
        self.labels_dir = out / "labels"
        self.record_path = out / "predict.json"
        self.overlay_path = out / "overlay.mp4"
        self.record: dict[str, Any] = {"format": RECORD_FORMAT, "input": _input_fingerprint(info), "options": options}
        self.previous = _read_record(self.record_path) or {}
        self.same = bool(self.previous) and {k: self.previous.get(k) for k in self.record} == self.record
        self.computed = 0

    def parents(self, videos: Sequence[str]) -> list[tuple[Path, set[str] | None]]:
        return [(self.out, None), (self.labels_dir, None)]

    def plan(self, video: str) -> VideoWork | None:
        if self.same and self.previous.get("complete") and self.overlay_path.is_file():
            return None
        if not self.same:
            for old in self.labels_dir.glob("*.png"):  # labels of other inputs/models: not ours to reuse
                old.unlink()
        write_json(self.record_path, {**self.record, "complete": False})
        todo = (
            (index, image)
            for index, image in enumerate(iter_frames(self.info))
            if _label_reusable(self.labels_dir / frame_name(index), self.info) is None
        )
        return VideoWork(self.models, [self.labels_dir], self.info.frames, stream=todo, atomic=False)

    def write_frame(self, work: VideoWork, folders: Sequence[Path], key: Any, probs: Mapping[str, Tensor]) -> None:
        write_prediction(folders[0], Path(frame_name(key)).stem, blend(probs, list(self.models), self.weights))
        self.computed += 1


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == RECORD_FORMAT else None
