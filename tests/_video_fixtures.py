"""Fixtures of the video and report tests: the embedded VSPW frames and a short mp4 encoded from them with PyAV
(model files: `_weights_fixtures.model_file`)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from stcl.params import SynthParams


def synth_vspw(root: Path, *, height: int = 48, width: int = 64, frames: int = 20, val: int = 2, classes: int = 5) -> Path:
    """The embedded VSPW_480p layout (`stcl.data.synthetic.write_vspw`), small; returns the VSPW root."""
    from stcl.data.synthetic import write_vspw

    params = SynthParams(height=height, width=width, frames_per_video=frames,
                         videos={"train": 1, "val": val, "test": 1}, num_classes=classes)
    root.mkdir(parents=True, exist_ok=True)
    write_vspw(root, params)
    return root


def encode_mp4(frames: list[np.ndarray], path: Path, fps: Fraction) -> Path:
    """Encode uint8 (H, W, 3) RGB frames as H.264 mp4 with PyAV directly (independent of stcl's encoder)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_video(path: Path) -> tuple[list[np.ndarray], Fraction, int]:
    """All frames of a video as uint8 (H, W, 3) RGB, the stream's average rate, and its announced frame count."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, Fraction(stream.average_rate), int(stream.frames)

