"""Training datasets: VSPW clips (query + reference frames) and single images (COCO, ADE20K).

Every item is a dict::

    img    uint8 tensor (T, 3, H, W), 0..255 RGB, not normalised
    label  uint8 tensor (T, H, W), train ids of the item's label space, 255 = ignore
    video  str   (VSPW: the video; images: the dataset name)
    frame  str   (the query frame's / image's file stem)

with T = 1 + len(offsets) for clips (index 0 = query) and T = 1 for images.

Items stay uint8 until they reach the device: a 768² clip of 4 frames crosses from a DataLoader worker
to the main process as 9.4 MB instead of 47 MB (float32 images + int64 labels). The train loop converts
on the device (images → float32, labels → int64) and the model normalises (mean/std); the values are the
same integers as before, so training is bit-identical to the float32 path.

Clip sampling: every labelled frame of the split is a query; its reference frames are the frames at
sorted position t + k for k in ``offsets``. Near the ends of a video a position outside [0, n) is mapped
by the boundary policy: ``clamp`` → nearest end frame (so a reference may repeat the query),
``reflect`` → mirrored without repeating the end (−1 → 1, n → n − 2). Augmentation draws come from
``np.random.default_rng((seed, epoch, index))``: the same seed, epoch and index give the same clip in
any worker process; call `set_epoch` each epoch for fresh draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from stcl.data import ade20k, coco_panoptic, vspw
from stcl.data.classes import ade_to_vspw_lut, coco_to_vspw_lut
from stcl.data.io import DataError, load_image
from stcl.data.transforms import ClipTransform
from stcl.params import Params

__all__ = [
    "DataPaths",
    "reference_positions",
    "VSPWClipDataset",
    "ImageSegDataset",
    "build_dataset",
]

Boundary = Literal["clamp", "reflect"]


def reference_positions(t: int, n: int, offsets: Sequence[int], boundary: Boundary) -> list[int]:
    """Positions of the reference frames of query ``t`` in a video of ``n`` frames."""
    if not 0 <= t < n:
        raise ValueError(f"query position {t} outside a video of {n} frames")
    out = []
    for k in offsets:
        p = t + k
        if boundary == "clamp":
            p = min(max(p, 0), n - 1)
        elif boundary == "reflect":
            period = 2 * (n - 1)
            p = 0 if period == 0 else abs(p) % period
            p = period - p if p >= n else p
        else:
            raise ValueError(f"boundary must be 'clamp' or 'reflect', got {boundary!r}")
        out.append(p)
    return out


def _clip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]))


def _to_item(images: list[np.ndarray], labels: list[np.ndarray], video: str, frame: str) -> dict:
    img = torch.from_numpy(np.stack(images).astype(np.uint8, copy=False)).permute(0, 3, 1, 2).contiguous()
    label = torch.from_numpy(np.stack(labels).astype(np.uint8, copy=False))
    return {"img": img, "label": label, "video": video, "frame": frame}


class VSPWClipDataset(Dataset):
    """Clips of a VSPW-layout root: every labelled frame of ``split`` as a query plus its reference frames.

    Args:
        root: dataset root (VSPW layout).
        split: split file name ("train", "val", ...).
        offsets: reference offsets k (query t → frames t + k); may be empty.
        boundary: "clamp" or "reflect" for reference positions outside the video.
        transform: clip augmentation, or None to return frames at full size.
        seed: base seed of the augmentation draws.

    Raises:
        FileNotFoundError / DataError naming the file: missing split file, frame folder or mask (every
        frame of a labelled video needs a mask), empty split, split without any mask.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        offsets: Sequence[int] = (),
        boundary: Boundary = "clamp",
        transform: ClipTransform | None = None,
        seed: int = 0,
    ) -> None:
        if 0 in offsets:
            raise ValueError("offsets must not contain 0 (the query frame itself)")
        if boundary not in ("clamp", "reflect"):
            raise ValueError(f"boundary must be 'clamp' or 'reflect', got {boundary!r}")
        self.root = Path(root)
        self.split = split
        self.offsets = tuple(int(k) for k in offsets)
        self.boundary = boundary
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.videos: dict[str, list[str]] = {}
        self.queries: list[tuple[str, int]] = []  # (video, position in its sorted frame list)
        for video in vspw.read_split(self.root, split):
            frames = vspw.list_frames(self.root, video)
            masks = set(vspw.list_masks(self.root, video))
            if not masks:
                continue  # an unlabelled video (e.g. test) provides no queries
            for stem in frames:
                if stem not in masks:
                    raise FileNotFoundError(f"{vspw.mask_path(self.root, video, stem)}: mask of a labelled video not found")
            self.videos[video] = frames
            self.queries.extend((video, t) for t in range(len(frames)))
        if not self.queries:
            raise DataError(f"{self.root / (split + '.txt')}: no labelled frames in split {split!r}")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (deterministic with the seed)."""
        self.epoch = int(epoch)

    @property
    def frames_per_item(self) -> int:
        """T of every item: the query and its references (datasets of one T share batches, `stcl.train.mix`)."""
        return 1 + len(self.offsets)

    def __len__(self) -> int:
        return len(self.queries)

    def clip_frames(self, index: int) -> tuple[str, list[str]]:
        """(video, frame stems of the clip, query first)."""
        video, t = self.queries[index]
        frames = self.videos[video]
        positions = [t, *reference_positions(t, len(frames), self.offsets, self.boundary)]
        return video, [frames[p] for p in positions]

    def __getitem__(self, index: int) -> dict:
        video, stems = self.clip_frames(index)
        images, labels = [], []
        for stem in stems:
            img_path = vspw.frame_path(self.root, video, stem)
            m_path = vspw.mask_path(self.root, video, stem)
            img = load_image(img_path)
            label = vspw.load_train_ids(m_path)
            if img.shape[:2] != label.shape:
                raise DataError(f"{m_path}: mask size {label.shape} differs from frame {img_path} size {img.shape[:2]}")
            images.append(img)
            labels.append(label)
        if self.transform is not None:
            images, labels = self.transform(images, labels, _clip_rng(self.seed, self.epoch, index))
        return _to_item(images, labels, video, stems[0])


class ImageSegDataset(Dataset):
    """Single images with label maps (T = 1), optionally mapped into another label space.

    Args:
        samples: (image path, label path) pairs.
        load_label: reads a label file as validated train ids, uint8 (H, W) (e.g. `ade20k.load_train_ids`).
        lut: optional (256,) uint8 table applied to the train ids (e.g. `classes.ade_to_vspw_lut()`).
        transform: augmentation (a one-frame clip), or None.
        seed: base seed of the augmentation draws.
        name: reported as the item's "video".
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        load_label: Callable[[Path], np.ndarray],
        lut: np.ndarray | None = None,
        transform: ClipTransform | None = None,
        seed: int = 0,
        name: str = "images",
    ) -> None:
        if not samples:
            raise ValueError("samples must not be empty")
        if lut is not None and (lut.shape != (256,) or lut.dtype != np.uint8):
            raise ValueError(f"lut must be uint8 of shape (256,), got {lut.dtype} {lut.shape}")
        self.samples = list(samples)
        self.load_label = load_label
        self.lut = lut
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.name = name

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    frames_per_item = 1  # T of every item (datasets of one T share batches, `stcl.train.mix`)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        img_path, label_path = self.samples[index]
        img = load_image(img_path)
        label = self.load_label(label_path)
        if img.shape[:2] != label.shape:
            raise DataError(f"{label_path}: label size {label.shape} differs from image {img_path} size {img.shape[:2]}")
        if self.lut is not None:
            label = self.lut[label]
        images, labels = [img], [label]
        if self.transform is not None:
            images, labels = self.transform(images, labels, _clip_rng(self.seed, self.epoch, index))
        return _to_item(images, labels, self.name, Path(img_path).stem)


@dataclass(frozen=True)
class DataPaths:
    """Where the training datasets are: every path a training stage reads besides its init weights.

    ``vspw``/``coco``/``ade`` are dataset roots (VSPW_480p, COCO panoptic, ADE20K layouts), ``coco_semantic``
    the semantic label maps `stcl prepare` writes, ``pseudo`` a VSPW-layout root of pseudo labels
    (`stcl pseudo_label --gather`). A stage needs only the paths of the datasets it mixes.
    """

    vspw: Path | None = None
    coco: Path | None = None
    coco_semantic: Path | None = None
    ade: Path | None = None
    pseudo: Path | None = None

    def require(self, field_name: str, dataset: str) -> Path:
        """The path ``field_name``; ValueError naming it (as its command-line flag) when not given."""
        value = getattr(self, field_name)
        if value is None:
            flag = "--" + field_name.replace("_", "-")
            raise ValueError(f"dataset {dataset!r} needs {flag} (DataPaths.{field_name}), which was not given")
        return Path(value)


def build_dataset(
    name: str,
    params: Params,
    paths: DataPaths,
    split: str = "train",
    label_space: str = "vspw",
    seed: int = 0,
    *,
    transform: ClipTransform | None | Literal["default"] = "default",
) -> Dataset:
    """The training dataset ``name`` ("vspw", "coco", "ade", "pseudo") in ``label_space`` ("vspw" or "coco").

    Files come from ``paths`` only; ``params`` gives the clip offsets and augmentation. VSPW and pseudo are
    clips with ``params.clips`` offsets; COCO reads the images under ``paths.coco`` and the semantic maps
    under ``paths.coco_semantic``; ADE and COCO map into VSPW through the mapping tables when
    ``label_space == "vspw"``. ``transform`` defaults to ``ClipTransform(params.augment)``; None disables it.
    """
    if label_space not in ("vspw", "coco"):
        raise ValueError(f"label_space must be 'vspw' or 'coco', got {label_space!r}")
    tf = ClipTransform(params.augment) if transform == "default" else transform
    if name in ("vspw", "pseudo"):
        if label_space != "vspw":
            raise ValueError(f"dataset {name!r} has VSPW labels only; label_space {label_space!r} is not available")
        root = paths.require(name, name)
        return VSPWClipDataset(
            root,
            split if name == "vspw" else "train",
            offsets=params.clips.reference_offsets,
            boundary=params.clips.boundary,
            transform=tf,
            seed=seed,
        )
    if name == "coco":
        samples = coco_panoptic.semantic_samples(
            paths.require("coco", name), paths.require("coco_semantic", name), split
        )
        lut = coco_to_vspw_lut() if label_space == "vspw" else None
        return ImageSegDataset(samples, coco_panoptic.load_semantic, lut, tf, seed, name="coco")
    if name == "ade":
        if label_space != "vspw":
            raise ValueError("dataset 'ade' maps into the 'vspw' label space only")
        samples = ade20k.list_samples(paths.require("ade", name), split)
        return ImageSegDataset(samples, ade20k.load_train_ids, ade_to_vspw_lut(), tf, seed, name="ade")
    raise ValueError(f"dataset name must be one of vspw, coco, ade, pseudo; got {name!r}")
