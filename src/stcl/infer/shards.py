"""Sharded inference jobs: which videos a shard takes, when a video folder is complete, the shard record
every sharded job writes last, and the one gather that checks the records.

Shard ``i`` of ``n`` takes ``sorted(videos)[i::n]`` (round-robin, which balances long and short runs of
similarly named videos). A shard ends by writing its record atomically, at the path its command was given::

    {"format": "stcl-shard/1", "stage": "infer" | "pseudo_label", "shard": [i, n], "videos": [...],
     "computed": [...], "skipped": [...], "frames": <frames of its videos>, ...stage-specific keys}

`gather_records` reads the ``n`` records of a stage and checks that they are shards 0..n-1 of n of that
stage and cover the videos exactly once, naming the record, shard or videos otherwise; the stage's gather
(`stcl.infer.outputs.gather_outputs`, `stcl.infer.pseudo_labels.gather`) then checks its folders and sums.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stcl.atomic import write_json

__all__ = [
    "RECORD_FORMAT",
    "listing",
    "parse_shard",
    "shard_videos",
    "folder_complete",
    "write_record",
    "gather_records",
]

RECORD_FORMAT = "stcl-shard/1"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n; ValueError naming ``--shard`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) == 0 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_videos(videos: Sequence[str], index: int, count: int) -> list[str]:
    """The videos of shard ``index`` of ``count``: ``sorted(videos)[index::count]``."""
    if count <= 0 or not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index} of {count}")
    return sorted(videos)[index::count]


def folder_complete(folder: Path, names: Iterable[str]) -> bool:
    """True if ``folder`` exists and holds every relative path of ``names`` (``mask/x.png`` etc.)."""
    if not folder.is_dir():
        return False
    present: dict[Path, set[str]] = {}
    for name in names:
        parent = (folder / name).parent
        if parent not in present:
            present[parent] = {p.name for p in parent.iterdir()} if parent.is_dir() else set()
        if Path(name).name not in present[parent]:
            return False
    return True


def write_record(
    path: str | Path,
    stage: str,
    index: int,
    count: int,
    videos: Sequence[str],
    computed: Sequence[str],
    skipped: Sequence[str],
    frames: int,
    **extra: Any,
) -> dict[str, Any]:
    """Write a shard's record (atomically) and return it; ``extra`` holds the stage's own keys."""
    record = {
        "format": RECORD_FORMAT,
        "stage": stage,
        "shard": [index, count],
        "videos": sorted(videos),
        "computed": list(computed),
        "skipped": list(skipped),
        "frames": frames,
        **extra,
    }
    write_json(path, record)
    return record


def listing(items: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` names, comma-separated, with how many more there are (for one-line errors)."""
    shown = ", ".join(items[:limit])
    return f"{shown} (+{len(items) - limit} more)" if len(items) > limit else shown


def gather_records(paths: Sequence[str | Path], stage: str, videos: Sequence[str]) -> list[dict[str, Any]]:
    """Read the records of shards 0..n-1 (``n = len(paths)``) of ``stage`` and check they cover ``videos``.

    Raises:
        FileNotFoundError naming the missing records; ValueError naming a record that is unreadable, of
        another format or stage, the shards that are missing or repeated, or the videos in no shard,
        in several, or not in ``videos``.
    """
    if not paths:
        raise ValueError("records: at least one shard record is needed")
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} shard records missing (run their shards): {listing(missing)}")
    records = []
    for path in paths:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: unreadable shard record ({err})") from None
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT or rec.get("stage") != stage:
            raise ValueError(f"{path}: not a {RECORD_FORMAT} record of {stage}")
        records.append(rec)
    count = len(records)
    shards = sorted(tuple(rec["shard"]) for rec in records)
    if shards != [(i, count) for i in range(count)]:
        raise ValueError(f"{paths[0].parent}: expected shard records 0..{count - 1} of {count}, got {shards}")
    owner: dict[str, int] = {}
    twice = []
    for rec in records:
        for v in rec["videos"]:
            (twice.append(v) if v in owner else owner.__setitem__(v, rec["shard"][0]))
    absent = sorted(set(videos) - set(owner))
    unknown = sorted(set(owner) - set(videos))
    problems = []
    if absent:
        problems.append(f"{len(absent)} videos in no shard: {listing(absent)}")
    if twice:
        problems.append(f"{len(twice)} videos in several shards: {listing(sorted(twice))}")
    if unknown:
        problems.append(f"{len(unknown)} videos not in the list: {listing(unknown)}")
    if problems:
        raise ValueError(f"{paths[0].parent}: {stage} shards do not cover the videos: " + "; ".join(problems))
    return records
