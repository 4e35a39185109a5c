"""The `prepare` stage: validate the datasets, convert COCO panoptic to semantic maps, list unlabeled frames.

Outputs (each written atomically: the semantic-map folder is built under a temporary name and renamed,
the files go through a temporary name and ``os.replace``; report.json is written last; other files in OUT,
such as logs, are left alone)::

    OUT/coco_semantic/{train2017,val2017}/<stem>.png   uint8 0..132, 255 = unlabeled/crowd
    OUT/unlabeled.txt                                  "<video>/<frame stem>" per line
    OUT/report.json                                    counts per dataset/split, unlabeled pool

An unlabeled line resolves to a frame file with `unlabeled_frame_path`: for ``source: vspw`` the frame is
``<vspw_root>/data/<video>/origin/<stem>.jpg``, for ``source: folder`` it is ``<folder>/<video>/<stem>.jpg``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from stcl.atomic import atomic_dir, write_json, write_text
from stcl.data import coco_panoptic, vspw
from stcl.data.checks import check_ade, check_coco, check_vspw
from stcl.data.io import DataError, image_size, save_png
from stcl.params import DataParams

__all__ = ["unlabeled_frame_path", "list_unlabeled", "convert_coco_split", "prepare"]


def unlabeled_frame_path(data: DataParams, line: str) -> Path:
    """Frame file of one ``unlabeled.txt`` line ``<video>/<frame stem>``."""
    video, sep, stem = line.strip().partition("/")
    if not sep or not stem or "/" in stem:
        raise ValueError(f"unlabeled entry must be '<video>/<frame stem>', got {line!r}")
    if data.unlabeled.source == "vspw":
        return vspw.frame_path(data.vspw_root, video, stem)
    return Path(data.unlabeled.folder) / vspw.validate_video_name(video, data.unlabeled.folder) / f"{stem}{vspw.FRAME_EXT}"


def list_unlabeled(data: DataParams) -> tuple[list[str], list[str]]:
    """(entries "<video>/<stem>", problems) of the unlabeled pool described by ``data.unlabeled``."""
    entries: list[str] = []
    problems: list[str] = []
    if data.unlabeled.source == "vspw":
        for split in data.unlabeled.splits:
            try:
                for video in vspw.read_split(data.vspw_root, split):
                    entries += [f"{video}/{stem}" for stem in vspw.list_frames(data.vspw_root, video)]
            except (DataError, FileNotFoundError) as err:
                problems.append(str(err))
        return entries, problems
    folder = Path(data.unlabeled.folder)
    if not folder.is_dir():
        return [], [f"{folder}: unlabeled frame folder not found"]
    for vdir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for stem in vspw.list_stems(vdir, vspw.FRAME_EXT):
            try:
                image_size(vdir / f"{stem}{vspw.FRAME_EXT}")
                entries.append(f"{vdir.name}/{stem}")
            except (DataError, FileNotFoundError) as err:
                problems.append(str(err))
    if not entries and not problems:
        problems.append(f"{folder}: no <video>/<frame>.jpg files")
    return entries, problems


def _convert_one(args: tuple[str, str, dict, str]) -> None:
    root, split, ann, out = args
    png = coco_panoptic.png_dir(root, split) / ann["file_name"]
    semantic = coco_panoptic.panoptic_to_semantic(coco_panoptic.load_panoptic_png(png), ann.get("segments_info", []), png)
    save_png(Path(out) / f"{Path(ann['image']['file_name']).stem}.png", semantic)


def convert_coco_split(root: str | Path, split: str, out_dir: str | Path, workers: int = 1,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write the semantic map of every panoptic annotation of ``split`` into ``out_dir``. Returns the count."""
    anns = coco_panoptic.load_panoptic_json(coco_panoptic.json_path(root, split))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), split, ann, str(out_dir)) for ann in anns.values()]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_convert_one, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                if progress:
                    progress(1)
    else:
        for job in jobs:
            _convert_one(job)
            if progress:
                progress(1)
    return len(jobs)


def prepare(data: DataParams, out: str | Path, workers: int = 1, progress: Callable[[int], None] | None = None) -> dict:
    """Validate VSPW, COCO and ADE20K, then write the prepare outputs into ``out``.

    Raises DataError listing every problem found (nothing is written then).
    """
    reports = [
        check_vspw(data.vspw_root, workers=workers),
        check_coco(data.coco_root, workers=workers),
        check_ade(data.ade_root, workers=workers),
    ]
    problems = [p for r in reports for p in r.problems]
    entries, unlabeled_problems = list_unlabeled(data)
    problems += unlabeled_problems
    if not entries and not unlabeled_problems:
        problems.append(f"unlabeled pool ({data.unlabeled.source}, splits {list(data.unlabeled.splits)}) is empty")
    if problems:
        listing = "\n  ".join(problems[:50]) + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        raise DataError(f"dataset validation failed ({len(problems)} problem(s)):\n  {listing}")
    out = Path(out)
    semantic = {}
    with atomic_dir(out / "coco_semantic") as tmp:
        for split in coco_panoptic.SPLIT_DIRS:
            split_dir = coco_panoptic.split_dir(split)
            semantic[split_dir] = convert_coco_split(data.coco_root, split, tmp / split_dir, workers, progress)
    write_text(out / "unlabeled.txt", "".join(f"{e}\n" for e in entries))
    report = {
        "datasets": {r.kind: {"root": r.root, "counts": r.counts} for r in reports},
        "coco_semantic": semantic,
        "unlabeled": {
            "source": data.unlabeled.source,
            "splits": list(data.unlabeled.splits) if data.unlabeled.source == "vspw" else None,
            "root": str(data.vspw_root if data.unlabeled.source == "vspw" else data.unlabeled.folder),
            "frames": len(entries),
            "videos": len({e.split("/")[0] for e in entries}),
        },
    }
    write_json(out / "report.json", report)  # written last: marks completion
    return report
