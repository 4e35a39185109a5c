"""Tiny datasets written file by file in the real VSPW, COCO panoptic and ADE20K formats (no synth code)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

H, W = 12, 16
DATA = Path(__file__).parent / "data"


def reference_maker(name: str) -> ModuleType:
    """The script ``tests/data/<name>.py`` that generated a reference fixture, loaded as a module (its seeded
    recipes rebuild the inputs the fixture was made from)."""
    spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_content(video_idx: int, t: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """A frame and its raw VSPW mask: left half class 1 ("wall"), right half class 29 ("sky"), a moving
    3x3 box of class 61 ("person"), one "others" (0) pixel and one void (255) pixel.

    Returns uint8 (h, w, 3) RGB and uint8 (h, w) raw mask.
    """
    mask = np.ones((h, w), dtype=np.uint8)
    mask[:, w // 2 :] = 29
    x = (t + video_idx) % (w - 3)
    mask[4:7, x : x + 3] = 61
    mask[0, 0] = 0
    mask[h - 1, w - 1] = 255
    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[1], colors[29], colors[61], colors[0], colors[255] = (200, 40, 40), (40, 40, 200), (40, 200, 40), (0, 0, 0), (255, 255, 255)
    return colors[mask], mask


def write_vspw(root: Path, splits: dict[str, list[str]] | None = None, n_frames: int = 5,
               unlabelled_splits: tuple[str, ...] = ("test",)) -> Path:
    """VSPW layout: split files, label_num_dic_final.json, data/<video>/{origin,mask}/<8-digit>.{jpg,png}."""
    from stcl.data.classes import resource_path

    splits = splits or {"train": ["vid_a", "vid_b"], "val": ["vid_c"], "test": ["vid_d"]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_num_dic_final.json").write_bytes(resource_path("vspw_label_num_dic_final.json").read_bytes())
    palette = [0, 0, 0] * 256
    for split, videos in splits.items():
        (root / f"{split}.txt").write_text("\n".join(videos))  # no trailing newline, like the official lists
        for v_idx, video in enumerate(videos):
            (root / "data" / video / "origin").mkdir(parents=True, exist_ok=True)
            if split not in unlabelled_splits:
                (root / "data" / video / "mask").mkdir(parents=True, exist_ok=True)
            for t in range(n_frames):
                rgb, mask = frame_content(v_idx, t)
                stem = f"{t * 3:08d}"
                Image.fromarray(rgb).save(root / "data" / video / "origin" / f"{stem}.jpg", quality=98)
                if split not in unlabelled_splits:
                    img = Image.fromarray(mask, mode="L").convert("P")
                    img.putpalette(palette)
                    img.save(root / "data" / video / "mask" / f"{stem}.png")
    return root


def write_vspw_root(root: Path, videos: dict[str, tuple[int, int, int]], split: str = "test", seed: int = 0) -> Path:
    """A minimal VSPW-layout root of random frames, no masks: ``<split>.txt`` and
    ``data/<video>/origin/<8-digit>.jpg``.

    Args:
        videos: {name: (frames, height, width)}.
    """
    rng = np.random.default_rng(seed)
    for video, (n, h, w) in videos.items():
        origin = root / "data" / video / "origin"
        origin.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(origin / f"{i:08d}.jpg", quality=95)
    (root / f"{split}.txt").write_text("\n".join(videos))  # no trailing newline, as the official files
    return root


COCO_PERSON, COCO_CAR, COCO_SKY = 1, 3, 187  # real category ids (contiguous 0, 2, 119)


def write_coco(root: Path) -> Path:
    """COCO panoptic layout with one image per split: a sky stuff segment, a person, a crowd car, unlabeled pixels."""
    categories = json.loads((Path(__file__).parents[1] / "src/stcl/resources/coco_panoptic_categories.json").read_text())
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
        ids = np.full((H, W), 5 + 256 * 7, dtype=np.int64)  # sky segment id 1797
        ids[2:6, 2:6] = 70000  # person (id uses the B channel)
        ids[8:11, 10:14] = 42  # crowd car
        ids[0, :] = 0  # unlabeled
        rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "annotations" / f"panoptic_{split}" / "000000000001.png")
        Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(root / split / "000000000001.jpg")
        segments = [
            {"id": 1797, "category_id": COCO_SKY, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]},
            {"id": 70000, "category_id": COCO_PERSON, "iscrowd": 0, "area": 16, "bbox": [2, 2, 4, 4]},
            {"id": 42, "category_id": COCO_CAR, "iscrowd": 1, "area": 12, "bbox": [10, 8, 4, 3]},
        ]
        doc = {
            "images": [{"id": 1, "file_name": "000000000001.jpg", "height": H, "width": W}],
            "annotations": [{"image_id": 1, "file_name": "000000000001.png", "segments_info": segments}],
            "categories": categories,
        }
        (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(doc))
    return root


def expected_coco_semantic() -> np.ndarray:
    """The semantic map of `write_coco`'s image: uint8 (H, W)."""
    out = np.full((H, W), 119, dtype=np.uint8)  # sky-other-merged
    out[2:6, 2:6] = 0  # person
    out[8:11, 10:14] = 255  # crowd
    out[0, :] = 255  # unlabeled
    return out


def write_ade(root: Path, n_images: int = 2) -> Path:
    """ADEChallengeData2016 layout: values 0 (other), 1 (wall), 3 (sky), 13 (person)."""
    for split, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            ann = np.ones((H, W), dtype=np.uint8)
            ann[: H // 2] = 3
            ann[5:8, 5:8] = 13
            ann[0, 0] = 0
            stem = f"{prefix}_{i + 1:08d}"
            Image.fromarray(np.full((H, W, 3), 60 + i, np.uint8)).save(root / "images" / split / f"{stem}.jpg")
            Image.fromarray(ann, mode="L").save(root / "annotations" / split / f"{stem}.png")
    return root
