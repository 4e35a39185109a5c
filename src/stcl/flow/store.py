"""Reading a `stcl flow` folder (layout in `stcl.flow.cache`) without torch: what `stcl evaluate` needs.

Every reader here validates what it reads and fails in one line naming the file (and key): a folder made by
another version, a damaged or replaced ``<video>.npz`` (its SHA-256 is recorded in ``flows.json``), a source
map reading outside its frame. `check_flows_inputs` compares what a folder was computed from (split, videos,
frames, RAFT file) with what an evaluation reads, so flows of other frames are never scored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "FLOWS_FORMAT",
    "INDEX",
    "OUTSIDE",
    "encode_offsets",
    "decode_offsets",
    "file_sha256",
    "frames_sha256",
    "select_videos",
    "read_flows_index",
    "read_video_sources",
    "check_flows_inputs",
]

FLOWS_FORMAT = "stcl-flows/2"
INDEX = "flows.json"
OUTSIDE = np.iinfo(np.int32).min  # offset of a pixel whose warp reads outside the frame
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RERUN = "run `stcl flow` again"


def encode_offsets(source: np.ndarray) -> np.ndarray:
    """Source maps int32 (..., H, W) (1 + flat index read, 0 outside) → offsets p' − p, `OUTSIDE` outside.

    Offsets are what is stored: a smooth flow gives runs of equal offsets, which compress ~40× better than
    the indices themselves (0.01 MB instead of 0.56 MB for a 854×480 pan with zoom).
    """
    h, w = source.shape[-2:]
    own = np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w)
    return np.where(source > 0, source - own, OUTSIDE).astype(np.int32)


def decode_offsets(offsets: np.ndarray, source: str | Path = "offsets") -> np.ndarray:
    """Inverse of `encode_offsets`: offsets int32 (..., H, W) → source maps int32 (..., H, W).

    ValueError naming ``source`` when an offset points outside the frame (it would wrap around in numpy
    indexing and score another pixel's label).
    """
    h, w = offsets.shape[-2:]
    own = np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w)
    inside = offsets != OUTSIDE
    target = offsets.astype(np.int64) + own
    bad = inside & ((target < 1) | (target > h * w))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{source}: {int(bad.sum())} offsets point outside the {w}x{h} frame (first at index {first}: "
            f"{int(offsets[first])}); {_RERUN}"
        )
    return np.where(inside, target, 0).astype(np.int32)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frames_sha256(paths: Iterable[Path]) -> str:
    """SHA-256 over the names and the bytes of a video's frame files, in order (what `stcl flow` read)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def select_videos(names: list[str], limit: int | str) -> list[str]:
    """The first ``limit`` videos of the split file (TC_cal.py: ``list_[:100]``), or all of them for ``"all"``."""
    if limit == "all":
        return list(names)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"video limit must be a positive number or 'all', got {limit!r}")
    return list(names[:limit])


def _is_count(value: object, least: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def read_flows_index(folder: str | Path) -> dict:
    """``flows.json`` of a `compute_flows` folder, every field checked; one-line errors naming the file and key."""
    from stcl.data.vspw import validate_video_name

    path = Path(folder) / INDEX
    if Path(folder).exists() and not Path(folder).is_dir():
        raise NotADirectoryError(f"{folder}: is a file; --flows takes the folder `stcl flow --out` wrote")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: flows index not found (run `stcl flow` first)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(index, dict) or not str(index.get("format", "")).startswith("stcl-flows/"):
        raise ValueError(f"{path}: not a {FLOWS_FORMAT} index")
    if index["format"] != FLOWS_FORMAT:
        raise ValueError(f"{path}: format {index['format']!r}, this stcl reads {FLOWS_FORMAT}; {_RERUN}")

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{path}: {key}: expected {want}, got {json.dumps(index.get(key))[:80]}; {_RERUN}")

    if not isinstance(index.get("split"), str) or not index["split"]:
        raise bad("split", "the split name")
    if not (index.get("video_limit") == "all" or _is_count(index.get("video_limit"), 1)):
        raise bad("video_limit", "a positive number or 'all'")
    videos = index.get("videos")
    if not isinstance(videos, list) or not videos or not all(isinstance(v, str) for v in videos):
        raise bad("videos", "a non-empty list of video names")
    if len(set(videos)) != len(videos):
        raise bad("videos", "each video once")
    for v in videos:
        validate_video_name(v, f"{path}: videos")
    if not isinstance(index.get("weights_sha256"), str) or not _SHA256.fullmatch(index["weights_sha256"]):
        raise bad("weights_sha256", "the SHA-256 of the RAFT file")
    per_video = index.get("per_video")
    if not isinstance(per_video, dict) or sorted(per_video) != sorted(videos):
        raise ValueError(f"{path}: per_video: expected one entry for each of the {len(videos)} videos; {_RERUN}")
    for v in videos:
        entry = per_video[v]
        ok = (
            isinstance(entry, dict)
            and _is_count(entry.get("frames"), 1)
            and isinstance(entry.get("size"), list)
            and len(entry["size"]) == 2
            and all(_is_count(s, 1) for s in entry["size"])
            and entry["size"][0] * entry["size"][1] < 2**24
            and all(isinstance(entry.get(k), str) and _SHA256.fullmatch(entry[k]) for k in ("frames_sha256", "sha256"))
        )
        if not ok:
            raise ValueError(
                f"{path}: per_video.{v}: expected frames (count), size [H, W], frames_sha256 and sha256; {_RERUN}"
            )
    if index.get("pairs") != sum(per_video[v]["frames"] - 1 for v in videos):
        raise bad("pairs", "the number of frame pairs of per_video")
    return index


def read_video_sources(folder: str | Path, video: str, index: dict | None = None) -> tuple[list[str], np.ndarray]:
    """(frame stems (L,), source maps int32 (L−1, H, W)) of one video of a `compute_flows` folder.

    The file must be the one ``flows.json`` recorded (its SHA-256), hold the recorded video, frame count and
    size, and read only inside its frame; else one line naming it.
    """
    import zipfile
    import zlib

    index = read_flows_index(folder) if index is None else index
    if video not in index["per_video"]:
        raise ValueError(f"{Path(folder) / INDEX}: holds no flows of video {video}")
    entry = index["per_video"][video]
    path = Path(folder) / f"{video}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: flows of video {video} not found ({_RERUN})")
    if file_sha256(path) != entry["sha256"]:
        raise ValueError(f"{path}: differs from the file flows.json recorded (damaged or replaced); {_RERUN}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("video", "frames", "offset") if k in data.files}
    except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: unreadable flows ({type(err).__name__}: {str(err)[:80]}); {_RERUN}") from None
    n, (h, w) = entry["frames"], entry["size"]
    missing = [k for k in ("video", "frames", "offset") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: no array {', '.join(missing)}; {_RERUN}")
    if arrays["video"].shape != () or str(arrays["video"]) != video:
        raise ValueError(f"{path}: holds the flows of video {arrays['video']!s:.40}, not {video}; {_RERUN}")
    frames = arrays["frames"]
    if frames.dtype.kind != "U" or frames.shape != (n,):
        raise ValueError(f"{path}: frames: expected {n} frame names, got {frames.dtype} {frames.shape}; {_RERUN}")
    offset = arrays["offset"]
    if offset.dtype != np.int32 or offset.shape != (n - 1, h, w):
        raise ValueError(f"{path}: offset: expected int32 {(n - 1, h, w)}, got {offset.dtype} {offset.shape}; {_RERUN}")
    return [str(s) for s in frames], decode_offsets(offset, path)


def check_flows_inputs(
    folder: str | Path,
    index: dict,
    vspw_root: str | Path,
    split: str,
    raft_weights: str | Path | None = None,
    videos: Sequence[str] | None = None,
) -> None:
    """Refuse, in one line naming ``flows.json``, flows computed from anything else than what is evaluated.

    Compared: the split, its first ``video_limit`` videos in ``vspw_root`` (or ``videos``), each video's frame
    names and bytes (``frames_sha256``) and, when given, the RAFT weights file.
    """
    from stcl.data.vspw import frame_path, list_frames, read_split

    path = Path(folder) / INDEX
    if index["split"] != split:
        raise ValueError(
            f"{path}: flows of split {index['split']!r}, evaluating split {split!r} (run `stcl flow "
            f"--split {split}`)"
        )
    want = list(videos) if videos is not None else select_videos(read_split(vspw_root, split), index["video_limit"])
    if index["videos"] != want:
        other = [v for v in index["videos"] if v not in want] or [v for v in want if v not in index["videos"]]
        raise ValueError(
            f"{path}: flows of {len(index['videos'])} videos, the first {index['video_limit']} of {split} in "
            f"{vspw_root} are {len(want)} (first difference: {other[0] if other else 'their order'}); {_RERUN}"
        )
    for v in want:
        stems = list_frames(vspw_root, v)
        digest = frames_sha256(frame_path(vspw_root, v, s) for s in stems)
        if len(stems) != index["per_video"][v]["frames"] or digest != index["per_video"][v]["frames_sha256"]:
            raise ValueError(
                f"{path}: flows of video {v} were computed from other frames than the {len(stems)} of "
                f"{frame_path(vspw_root, v, stems[0]).parent}; {_RERUN}"
            )
    if raft_weights is not None and Path(raft_weights).is_file():
        if file_sha256(raft_weights) != index["weights_sha256"]:
            raise ValueError(f"{path}: flows computed with another RAFT file than {raft_weights}; {_RERUN}")
