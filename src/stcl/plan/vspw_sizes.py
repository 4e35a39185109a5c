"""The sizes of VSPW the plan falls back on before the data is in place, and the frame counts it plans with.

`split_frames` counts a split's frames from the data when present, else from the synthetic data's params or
the VSPW figures below; `frame_size` is the (H, W) the plan projects a frame at.
"""

from __future__ import annotations

from pathlib import Path

from stcl.params import Params

__all__ = ["VSPW_FRAMES", "VSPW_FRAME_SIZE", "VSPW_VAL_VIDEOS", "split_frames", "frame_size"]

# VSPW_480p frames per split (VSPW paper and site, rounded to the hundred for val); the real counts are read
# from the split files whenever the data is in place.
VSPW_FRAMES = {"train": 198_244, "val": 24_500, "test": 28_887}
VSPW_FRAME_SIZE = (480, 854)  # (H, W) of a 16:9 480P frame
VSPW_VAL_VIDEOS = 343


def split_frames(params: Params, split: str) -> int:
    """Frames of a VSPW split: counted from the data when present, else the synth or VSPW figures."""
    from stcl.data import vspw

    root = Path(params.data.vspw_root)
    if (root / f"{split}.txt").is_file():
        return sum(len(vspw.list_frames(root, v)) for v in vspw.read_split(root, split))
    if params.data.synthetic:
        return getattr(params.synth.videos, split) * params.synth.frames_per_video
    return VSPW_FRAMES[split]


def frame_size(params: Params) -> tuple[int, int]:
    """(H, W) of a frame: the synthetic data's, else a 480P VSPW frame's."""
    return (params.synth.height, params.synth.width) if params.data.synthetic else VSPW_FRAME_SIZE
