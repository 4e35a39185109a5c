"""COCO panoptic (2017) reader and the panoptic → semantic conversion of `stcl prepare`.

Layout as the official download unpacks (what mmdet and detectron2 expect)::

    ROOT/{train2017,val2017}/<id>.jpg
    ROOT/annotations/panoptic_{train,val}2017.json
    ROOT/annotations/panoptic_{train,val}2017/<id>.png     RGB: segment id = R + 256·G + 256²·B

Semantic maps use the 133 categories in contiguous order 0..132 (`stcl.data.classes.COCO_CLASSES`);
unlabeled pixels (segment id 0) and crowd segments become 255.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stcl.data.classes import COCO_CATEGORY_IDS, COCO_CLASSES, IGNORE_INDEX
from stcl.data.io import DataError, load_image, load_label_png

__all__ = [
    "SPLIT_DIRS",
    "split_dir",
    "json_path",
    "png_dir",
    "image_dir",
    "rgb_to_id",
    "id_to_rgb",
    "load_panoptic_json",
    "panoptic_to_semantic",
    "load_semantic",
    "semantic_samples",
]

SPLIT_DIRS = {"train": "train2017", "val": "val2017"}
NUM_CLASSES = len(COCO_CLASSES)
CATEGORY_TO_CONTIGUOUS = {cid: i for i, cid in enumerate(COCO_CATEGORY_IDS)}


def split_dir(split: str) -> str:
    if split not in SPLIT_DIRS:
        raise ValueError(f"COCO split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
    return SPLIT_DIRS[split]


def json_path(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"panoptic_{split_dir(split)}.json"


def png_dir(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"panoptic_{split_dir(split)}"


def image_dir(root: str | Path, split: str) -> Path:
    return Path(root) / split_dir(split)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → int64 (H, W) segment ids, R + 256·G + 256²·B."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """int (H, W) segment ids → uint8 (H, W, 3)."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def load_panoptic_json(path: str | Path) -> dict:
    """Load and validate a panoptic JSON; returns ``{file_name: annotation}`` with annotation["image"] added.

    Raises DataError naming the file for malformed content (unknown category id, duplicate segment id,
    annotation of an unknown image).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: panoptic JSON not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {img["id"]: img for img in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a COCO panoptic JSON ({err!r})") from None
    out = {}
    for ann in annotations:
        file_name = ann.get("file_name")
        if ann.get("image_id") not in images or not file_name:
            raise DataError(f"{path}: annotation {file_name!r} refers to unknown image id {ann.get('image_id')!r}")
        ids = set()
        for seg in ann.get("segments_info", []):
            if seg["category_id"] not in CATEGORY_TO_CONTIGUOUS:
                raise DataError(f"{path}: {file_name}: unknown category_id {seg['category_id']}")
            if seg["id"] in ids or seg["id"] == 0:
                raise DataError(f"{path}: {file_name}: segment id {seg['id']} is 0 or repeated")
            ids.add(seg["id"])
        out[file_name] = {**ann, "image": images[ann["image_id"]]}
    return out


def panoptic_to_semantic(rgb: np.ndarray, segments_info: list[dict], png: str | Path) -> np.ndarray:
    """Panoptic PNG pixels → semantic label map.

    Args:
        rgb: uint8 (H, W, 3) panoptic PNG.
        segments_info: the annotation's segments (id, category_id, iscrowd).
        png: the PNG's path, named in errors.

    Returns:
        uint8 (H, W): contiguous category 0..132; unlabeled (id 0) and crowd → 255.

    Raises:
        DataError naming ``png`` if it holds a segment id absent from ``segments_info``.
    """
    ids = rgb_to_id(rgb)
    uniq, inverse = np.unique(ids, return_inverse=True)
    by_id = {int(s["id"]): s for s in segments_info}
    missing = [int(u) for u in uniq if u != 0 and int(u) not in by_id]
    if missing:
        raise DataError(f"{png}: segment ids {missing[:10]} are absent from the JSON segments_info")
    values = np.full(len(uniq), IGNORE_INDEX, dtype=np.uint8)
    for i, u in enumerate(uniq):
        seg = by_id.get(int(u))
        if seg is not None and not seg.get("iscrowd", 0):
            values[i] = CATEGORY_TO_CONTIGUOUS[seg["category_id"]]
    return values[inverse.reshape(ids.shape)]


def load_panoptic_png(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB panoptic PNG."""
    return load_image(path)


def load_semantic(path: str | Path) -> np.ndarray:
    """A semantic map written by `stcl prepare`: uint8 (H, W) in {0..132, 255}; DataError naming the file."""
    label = load_label_png(path)
    bad = (label >= NUM_CLASSES) & (label != IGNORE_INDEX)
    if bad.any():
        raise DataError(f"{path}: semantic values {np.unique(label[bad]).tolist()[:10]} outside 0..{NUM_CLASSES - 1}, 255")
    return label


def semantic_samples(root: str | Path, semantic_dir: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, semantic map) pairs: every PNG under ``semantic_dir/<split>2017`` with ROOT/<split>2017/<stem>.jpg."""
    folder = Path(semantic_dir) / split_dir(split)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: COCO semantic maps not found (run `stcl prepare` first)")
    pairs = []
    for label in sorted(p for p in folder.iterdir() if p.suffix == ".png" and not p.name.startswith(".")):
        img = image_dir(root, split) / f"{label.stem}.jpg"
        if not img.is_file():
            raise FileNotFoundError(f"{img}: image of {label} not found")
        pairs.append((img, label))
    if not pairs:
        raise DataError(f"{folder}: no semantic maps")
    return pairs
