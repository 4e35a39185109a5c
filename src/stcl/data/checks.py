"""Whole-dataset validation behind `stcl check-data` and `stcl prepare`: find EVERY problem, not the first.

Each checker walks a dataset root and returns a `CheckReport` with one line per problem, each starting with
the offending file, plus counts per split. The checks are those of the readers (same helpers, same
messages): missing frame or mask, image/mask size mismatch, mask value outside the label set,
unreadable or truncated image, empty or missing split, video name with a path separator or '..',
panoptic PNG segment id absent from the JSON. A file or folder that cannot be read (permission denied, I/O
error) is one more problem line naming it; the walk goes on with everything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from stcl.data import ade20k, coco_panoptic, vspw
from stcl.data.classes import VSPW_NUM_CLASSES, resource_path
from stcl.data.io import DataError, load_image

__all__ = ["KINDS", "CheckReport", "detect_kind", "check_vspw", "check_coco", "check_ade", "check_dataset"]

KINDS = ("vspw", "coco", "ade")
REQUIRED_VSPW_SPLITS = ("train", "val")  # test.txt is checked when present


@dataclass
class CheckReport:
    """Problems found in one dataset root and what was counted (per split)."""

    kind: str
    root: str
    problems: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"kind": self.kind, "root": self.root, "ok": self.ok, "problems": self.problems, "counts": self.counts}


def _problem(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: cannot read ({err.strerror})"
    return str(err) if isinstance(err, (DataError, OSError)) else f"{type(err).__name__}: {err}"


def _read_text(path: Path, problems: list[str]) -> str | None:
    """``path``'s UTF-8 text, or None with a problem line when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        problems.append(_problem(err))
    except UnicodeDecodeError as err:
        problems.append(f"{path}: not UTF-8 text ({err})")
    return None


def _map(fn: Callable, items: list, workers: int) -> Iterable:
    if workers <= 1 or len(items) <= 1:
        return map(fn, items)
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (8 * workers))))
    finally:
        pool.shutdown()


def detect_kind(root: str | Path) -> str:
    """"vspw", "coco" or "ade" from the layout of ``root``; ValueError naming it if none matches."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root not found")
    if (root / "data").is_dir() and any((root / f"{s}.txt").is_file() for s in vspw.SPLITS):
        return "vspw"
    if any(coco_panoptic.json_path(root, s).is_file() for s in coco_panoptic.SPLIT_DIRS):
        return "coco"
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return "ade"
    raise ValueError(
        f"{root}: cannot tell the dataset type (expected VSPW split files + data/, COCO annotations/panoptic_*.json, "
        "or ADE images/ + annotations/); pass --kind"
    )


# ---------------------------------------------------------------- VSPW


def _check_vspw_frame(args: tuple[str, str, str, bool, bool]) -> list[str]:
    root, video, stem, has_frame, has_mask = args
    problems = []
    f_path, m_path = vspw.frame_path(root, video, stem), vspw.mask_path(root, video, stem)
    img = mask = None
    if has_frame:
        try:
            img = load_image(f_path)
        except (DataError, OSError) as err:
            problems.append(_problem(err))
    else:
        problems.append(f"{f_path}: frame missing (its mask {m_path.name} exists)")
    if has_mask:
        try:
            mask = vspw.load_raw_mask(m_path)
        except (DataError, OSError) as err:
            problems.append(_problem(err))
    if img is not None and mask is not None and img.shape[:2] != mask.shape:
        problems.append(f"{m_path}: mask size {mask.shape} differs from frame size {img.shape[:2]}")
    return problems


def _check_vspw_video(args: tuple[str, str, bool]) -> tuple[list[str], int, int]:
    """Problems, frames and masks of one video. ``labelled``: every frame must have a mask.

    A folder of the video that cannot be listed (permission denied) is one problem; its files are not counted.
    """
    try:
        return _check_vspw_video_files(args)
    except OSError as err:
        return [_problem(err)], 0, 0


def _check_vspw_video_files(args: tuple[str, str, bool]) -> tuple[list[str], int, int]:
    root, video, labelled = args
    problems: list[str] = []
    vdir = Path(root) / "data" / video
    origin, mask_dir = vdir / "origin", vdir / "mask"
    if not origin.is_dir():
        return [f"{origin}: frame folder missing"], 0, 0
    frames = set(vspw.list_stems(origin, vspw.FRAME_EXT))
    masks = set(vspw.list_stems(mask_dir, vspw.MASK_EXT)) if mask_dir.is_dir() else set()
    if not frames:
        problems.append(f"{origin}: no {vspw.FRAME_EXT} frames")
    if labelled and not mask_dir.is_dir():
        problems.append(f"{mask_dir}: mask folder missing")
    items = []
    for stem in sorted(frames | masks):
        has_frame, has_mask = stem in frames, stem in masks
        if labelled and mask_dir.is_dir() and not has_mask:
            problems.append(f"{vspw.mask_path(root, video, stem)}: mask missing (frame {stem}{vspw.FRAME_EXT} exists)")
        items.append((root, video, stem, has_frame, has_mask))
    for item in items:
        problems += _check_vspw_frame(item)
    return problems, len(frames), len(masks)


def check_vspw(root: str | Path, workers: int = 1, label_splits: tuple[str, ...] = REQUIRED_VSPW_SPLITS) -> CheckReport:
    """Validate a VSPW-layout root. Videos of ``label_splits`` must have a mask for every frame."""
    root = Path(root)
    report = CheckReport("vspw", str(root))
    dic = root / "label_num_dic_final.json"
    if not dic.is_file():
        report.problems.append(f"{dic}: class list missing")
    else:
        expected = json.loads(resource_path("vspw_label_num_dic_final.json").read_text(encoding="utf-8"))
        text = _read_text(dic, report.problems)
        try:
            found = json.loads(text) if text is not None else None
        except ValueError as err:
            report.problems.append(f"{dic}: not valid JSON ({err})")
        else:
            if text is not None and (
                not isinstance(found, dict) or {k: str(v) for k, v in found.items()} != expected
            ):
                report.problems.append(f"{dic}: class list differs from VSPW's ({VSPW_NUM_CLASSES} classes + others)")
    jobs, where = [], []
    for split in vspw.SPLITS:
        path = root / f"{split}.txt"
        if not path.is_file():
            if split in REQUIRED_VSPW_SPLITS:
                report.problems.append(f"{path}: split file missing")
            continue
        text = _read_text(path, report.problems)
        if text is None:
            continue
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            report.problems.append(f"{path}: split is empty")
        seen = set()
        valid = []
        for name in names:
            try:
                vspw.validate_video_name(name, path)
            except DataError as err:
                report.problems.append(str(err))
                continue
            if name in seen:
                report.problems.append(f"{path}: video {name!r} listed twice")
                continue
            seen.add(name)
            valid.append(name)
        report.counts[split] = {"videos": len(valid), "frames": 0, "masks": 0}
        for name in valid:
            jobs.append((str(root), name, split in label_splits))
            where.append(split)
    for split, (problems, n_frames, n_masks) in zip(where, _map(_check_vspw_video, jobs, workers)):
        report.problems += problems
        report.counts[split]["frames"] += n_frames
        report.counts[split]["masks"] += n_masks
    return report


# ---------------------------------------------------------------- COCO panoptic


def _check_coco_image(args: tuple[str, str, dict]) -> list[str]:
    root, split, ann = args
    problems = []
    img_path = coco_panoptic.image_dir(root, split) / ann["image"]["file_name"]
    png = coco_panoptic.png_dir(root, split) / ann["file_name"]
    img = pan = None
    try:
        img = load_image(img_path)
    except (DataError, OSError) as err:
        problems.append(_problem(err))
    try:
        pan = coco_panoptic.load_panoptic_png(png)
        coco_panoptic.panoptic_to_semantic(pan, ann.get("segments_info", []), png)
    except (DataError, OSError) as err:
        problems.append(_problem(err))
    expected = (ann["image"].get("height"), ann["image"].get("width"))
    for path, arr in ((img_path, img), (png, pan)):
        if arr is not None and None not in expected and arr.shape[:2] != expected:
            problems.append(f"{path}: size {arr.shape[:2]} differs from the JSON's (height, width) {expected}")
    return problems


def check_coco(root: str | Path, workers: int = 1) -> CheckReport:
    """Validate a COCO panoptic root (train and val)."""
    root = Path(root)
    report = CheckReport("coco", str(root))
    for split in coco_panoptic.SPLIT_DIRS:
        try:
            anns = coco_panoptic.load_panoptic_json(coco_panoptic.json_path(root, split))
        except (DataError, OSError) as err:
            report.problems.append(_problem(err))
            continue
        if not anns:
            report.problems.append(f"{coco_panoptic.json_path(root, split)}: split is empty")
        jobs = [(str(root), split, ann) for ann in anns.values()]
        for problems in _map(_check_coco_image, jobs, workers):
            report.problems += problems
        report.counts[split] = {"images": len(anns)}
    return report


# ---------------------------------------------------------------- ADE20K


def _check_ade_image(args: tuple[str, str]) -> list[str]:
    img_path, ann_path = (Path(a) for a in args)
    problems = []
    img = ann = None
    try:
        img = load_image(img_path)
    except (DataError, OSError) as err:
        problems.append(_problem(err))
    try:
        ann = ade20k.load_train_ids(ann_path)
    except (DataError, OSError) as err:
        problems.append(_problem(err))
    if img is not None and ann is not None and img.shape[:2] != ann.shape:
        problems.append(f"{ann_path}: annotation size {ann.shape} differs from image size {img.shape[:2]}")
    return problems


def check_ade(root: str | Path, workers: int = 1) -> CheckReport:
    """Validate an ADEChallengeData2016 root (training and validation)."""
    root = Path(root)
    report = CheckReport("ade", str(root))
    for split in ade20k.SPLIT_DIRS:
        images = root / "images" / ade20k.split_dir(split)
        annotations = root / "annotations" / ade20k.split_dir(split)
        try:
            if not images.is_dir():
                report.problems.append(f"{images}: directory not found")
                continue
            img_stems = {p.stem for p in images.iterdir() if p.suffix == ".jpg" and not p.name.startswith(".")}
            ann_stems = (
                {p.stem for p in annotations.iterdir() if p.suffix == ".png" and not p.name.startswith(".")}
                if annotations.is_dir()
                else set()
            )
        except OSError as err:  # a folder that cannot be listed
            report.problems.append(_problem(err))
            continue
        if not img_stems:
            report.problems.append(f"{images}: split is empty (no .jpg images)")
        for stem in sorted(img_stems - ann_stems):
            report.problems.append(f"{annotations / (stem + '.png')}: annotation missing (image {stem}.jpg exists)")
        for stem in sorted(ann_stems - img_stems):
            report.problems.append(f"{images / (stem + '.jpg')}: image missing (annotation {stem}.png exists)")
        jobs = [(str(images / f"{s}.jpg"), str(annotations / f"{s}.png")) for s in sorted(img_stems & ann_stems)]
        for problems in _map(_check_ade_image, jobs, workers):
            report.problems += problems
        report.counts[split] = {"images": len(img_stems)}
    return report


def check_dataset(root: str | Path, kind: str | None = None, workers: int = 1) -> CheckReport:
    """Validate ``root`` as ``kind`` (detected from the layout when None)."""
    kind = kind or detect_kind(root)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: dataset root not found")
    return {"vspw": check_vspw, "coco": check_coco, "ade": check_ade}[kind](root, workers=workers)
