"""Class names of VSPW, COCO panoptic and ADE20K, and the mappings of COCO/ADE classes into VSPW.

Label spaces (the *train ids* models predict):

* VSPW: 124 classes, train id ``i`` ↔ raw mask value ``i + 1`` (names from label_num_dic_final.json, id order).
* COCO panoptic: 133 categories (80 things + 53 stuff), contiguous ``0..132`` in the order of
  coco_panoptic_categories.json (real category ids 1..200 with gaps).
* ADE20K: 150 classes, train id ``i`` ↔ annotation value ``i + 1`` (mmseg's ``reduce_zero_label``).

The COCO→VSPW and ADE→VSPW mappings are reviewable CSV tables in ``stcl/resources/`` (one row per source
class: source id, source name, target VSPW name or empty for "unmapped"). Unmapped classes become 255.
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "VSPW_CLASSES",
    "VSPW_NUM_CLASSES",
    "COCO_CLASSES",
    "COCO_CATEGORY_IDS",
    "COCO_ISTHING",
    "ADE_CLASSES",
    "LABEL_SPACES",
    "class_names",
    "resource_path",
    "read_mapping_table",
    "ade_to_vspw_lut",
    "coco_to_vspw_lut",
]

IGNORE_INDEX = 255


def resource_path(name: str) -> Path:
    """Path of a file shipped in ``stcl/resources/``."""
    return Path(str(resources.files("stcl") / "resources" / name))


def _load_json(name: str):
    with open(resource_path(name), encoding="utf-8") as f:
        return json.load(f)


def _vspw_classes() -> tuple[str, ...]:
    raw = {name: int(idx) for name, idx in _load_json("vspw_label_num_dic_final.json").items()}
    by_id = {idx: name for name, idx in raw.items()}
    if sorted(by_id) != list(range(125)):
        raise ValueError("vspw_label_num_dic_final.json: expected ids 0..124 exactly once")
    return tuple(by_id[i] for i in range(1, 125))  # id 0 is "others" (ignored)


_COCO = _load_json("coco_panoptic_categories.json")
_ADE = _load_json("ade20k_classes.json")

VSPW_CLASSES: tuple[str, ...] = _vspw_classes()
VSPW_NUM_CLASSES = len(VSPW_CLASSES)
COCO_CLASSES: tuple[str, ...] = tuple(c["name"] for c in _COCO)
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(int(c["id"]) for c in _COCO)
COCO_ISTHING: tuple[bool, ...] = tuple(bool(c["isthing"]) for c in _COCO)
ADE_CLASSES: tuple[str, ...] = tuple(c["name"] for c in sorted(_ADE, key=lambda c: c["id"]))

LABEL_SPACES: dict[str, tuple[str, ...]] = {"vspw": VSPW_CLASSES, "coco": COCO_CLASSES, "ade": ADE_CLASSES}


def class_names(label_space: str) -> tuple[str, ...]:
    """Class names of a label space ("vspw", "coco" or "ade"), indexed by train id."""
    if label_space not in LABEL_SPACES:
        raise ValueError(f"label_space must be one of {sorted(LABEL_SPACES)}, got {label_space!r}")
    return LABEL_SPACES[label_space]


def read_mapping_table(path: str | Path, id_column: str, name_column: str) -> list[tuple[int, str, str]]:
    """Rows ``(source id, source name, target VSPW name or "")`` of a mapping CSV.

    Raises ValueError naming the file and line for a malformed row or a target that is not a VSPW class.
    """
    path = Path(path)
    rows: list[tuple[int, str, str]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        expected = {id_column, name_column, "vspw_name"}
        if reader.fieldnames is None or not expected <= set(reader.fieldnames):
            raise ValueError(f"{path}: header must contain {sorted(expected)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                source_id = int(row[id_column])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: {id_column} {row[id_column]!r} is not an integer") from None
            target = (row["vspw_name"] or "").strip()
            if target and target not in VSPW_CLASSES:
                raise ValueError(f"{path}:{line}: target {target!r} is not a VSPW class name")
            rows.append((source_id, row[name_column], target))
    return rows


def _lut(source_ids: tuple[int, ...], rows: list[tuple[int, str, str]], path: Path) -> np.ndarray:
    by_id = {sid: target for sid, _, target in rows}
    missing = [sid for sid in source_ids if sid not in by_id]
    if missing:
        raise ValueError(f"{path}: no row for source ids {missing[:10]}")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    vspw_index = {name: i for i, name in enumerate(VSPW_CLASSES)}
    for train_id, sid in enumerate(source_ids):
        if by_id[sid]:
            lut[train_id] = vspw_index[by_id[sid]]
    return lut


@lru_cache(maxsize=None)
def _ade_lut() -> np.ndarray:
    path = resource_path("ade20k_to_vspw.csv")
    ids = tuple(int(c["id"]) for c in sorted(_ADE, key=lambda c: c["id"]))
    return _lut(ids, read_mapping_table(path, "ade_id", "ade_name"), path)


@lru_cache(maxsize=None)
def _coco_lut() -> np.ndarray:
    path = resource_path("coco_to_vspw.csv")
    return _lut(COCO_CATEGORY_IDS, read_mapping_table(path, "coco_id", "coco_name"), path)


def ade_to_vspw_lut() -> np.ndarray:
    """(256,) uint8: ADE train id (0..149) → VSPW train id (0..123); 255 and unmapped classes → 255."""
    return _ade_lut().copy()


def coco_to_vspw_lut() -> np.ndarray:
    """(256,) uint8: COCO contiguous id (0..132) → VSPW train id (0..123); 255 and unmapped classes → 255."""
    return _coco_lut().copy()
