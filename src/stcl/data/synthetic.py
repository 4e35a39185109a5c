"""The embedded datasets of `stcl synth`: small, deterministic scenes written in the REAL on-disk formats.

Every class has a fixed local appearance (two colours and a texture: stripes, checks, dots or blocky
noise at a class-specific period) that is the same in all three datasets, so a tiny model learns the
classes in a few hundred iterations and COCO/ADE20K images help VSPW through the mapping tables. The
default classes exist in all three label spaces (sky, grass, person, car, road, wall, bus, bicycle, ...).

A video is a scene of stuff layers (a wavy horizon between a top class and a bottom class; the bottom is
split by a boundary that sweeps across the frame, so the ground under an object changes class) and
textured objects that move, bounce, grow or shrink and occlude each other. One object stays almost still
while its surroundings change (the paper's Figure 1). COCO/ADE images are single frames of such scenes.

VSPW test videos get masks too (a real test release has none): the pipeline never reads them (the unlabeled
pool lists frames only), but they let a developer score pseudo labels by hand.

Determinism: every video/image draws from ``SeedSequence((seed, dataset, split, index))`` and appearance
depends only on the class, so two runs with the same params write byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stcl.atomic import atomic_dir
from stcl.data import ade20k, coco_panoptic, vspw
from stcl.data.classes import (
    ADE_CLASSES,
    COCO_CATEGORY_IDS,
    COCO_CLASSES,
    COCO_ISTHING,
    VSPW_CLASSES,
    ade_to_vspw_lut,
    coco_to_vspw_lut,
    resource_path,
)
from stcl.data.io import save_jpeg, save_png
from stcl.params import SynthParams

__all__ = [
    "SYNTH_CLASSES",
    "ClassStyle",
    "class_styles",
    "render_texture",
    "VideoScene",
    "sample_scene",
    "render_frame",
    "vspw_palette",
    "write_vspw",
    "write_coco",
    "write_ade",
    "write_all",
]

# (VSPW name, kind). The first eight exist in VSPW, COCO panoptic and ADE20K (through the mapping tables).
SYNTH_CLASSES: tuple[tuple[str, str], ...] = (
    ("sky", "stuff"),
    ("grass", "stuff"),
    ("person", "thing"),
    ("car", "thing"),
    ("road", "stuff"),
    ("wall", "stuff"),
    ("bus", "thing"),
    ("bicycle", "thing"),
    ("tree", "stuff"),
    ("building", "stuff"),
    ("dog", "thing"),
    ("horse", "thing"),
    ("water", "stuff"),
    ("mountain", "stuff"),
    ("cat", "thing"),
    ("motorcycle", "thing"),
    ("floor", "stuff"),
    ("ceiling", "stuff"),
    ("chair_or_seat", "thing"),
    ("bed", "thing"),
    ("sea", "stuff"),
    ("sand", "stuff"),
    ("airplane", "thing"),
    ("truck", "thing"),
)
PATTERNS = ("stripes", "checks", "dots", "noise")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_DATASET_CODE = {"vspw": 0, "coco": 1, "ade": 2}


@dataclass(frozen=True)
class ClassStyle:
    """Fixed appearance of one class (depends on its name only)."""

    name: str  # VSPW class name
    kind: str  # "stuff" or "thing"
    vspw_id: int  # train id 0..123
    colors: np.ndarray = field(repr=False)  # float (2, 3) RGB 0..255
    pattern: str = "stripes"
    period: float = 6.0  # texture period in pixels
    angle: float = 0.0  # stripe orientation (radians)
    noise: np.ndarray = field(default=None, repr=False)  # float (32, 32) in [0, 1] for the noise pattern


def _style(name: str, kind: str, index: int) -> ClassStyle:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    hue = (index * 0.61803398875) % 1.0  # golden-ratio hue spacing: neighbouring classes differ most
    base = _hsv(hue, 0.55 + 0.35 * rng.random(), 0.55 + 0.4 * rng.random())
    second = _hsv((hue + 0.08 * rng.standard_normal()) % 1.0, 0.3 * rng.random(), 0.15 + 0.7 * rng.random())
    return ClassStyle(
        name=name,
        kind=kind,
        vspw_id=VSPW_CLASSES.index(name),
        colors=np.stack([base, second]) * 255.0,
        pattern=PATTERNS[index % len(PATTERNS)],
        period=3.0 + (index * 5 % 9) + rng.random(),
        angle=float(rng.uniform(0, np.pi)),
        noise=rng.random((32, 32)),
    )


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def class_styles(num_classes: int) -> list[ClassStyle]:
    """The first ``num_classes`` synthetic classes (SYNTH_CLASSES, then other VSPW classes as things)."""
    if not 2 <= num_classes <= len(VSPW_CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(VSPW_CLASSES)}, got {num_classes}")
    chosen = list(SYNTH_CLASSES[:num_classes])
    used = {n for n, _ in chosen}
    chosen += [(n, "thing") for n in VSPW_CLASSES if n not in used][: num_classes - len(chosen)]
    return [_style(name, kind, i) for i, (name, kind) in enumerate(chosen)]


def render_texture(style: ClassStyle, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Texture of ``style`` at texture coordinates u (x), v (y), float (H, W) → float (H, W, 3)."""
    p = style.period
    if style.pattern == "stripes":
        m = ((u * np.cos(style.angle) + v * np.sin(style.angle)) / p) % 1.0 < 0.5
    elif style.pattern == "checks":
        m = (np.floor(u / p) + np.floor(v / p)) % 2 == 0
    elif style.pattern == "dots":
        du, dv = u % p - p / 2, v % p - p / 2
        m = du * du + dv * dv < (p / 2.8) ** 2
    else:
        m = style.noise[np.floor(v / p).astype(np.int64) % 32, np.floor(u / p).astype(np.int64) % 32] > 0.5
    m = m.astype(np.float32)[..., None]
    return style.colors[0] * (1.0 - m) + style.colors[1] * m


@dataclass(frozen=True)
class ObjectTrack:
    cls: int  # index into the styles
    shape: str  # "ellipse", "box" or "diamond"
    x0: float
    y0: float
    vx: float
    vy: float
    radius: float  # half height at t = 0
    aspect: float  # width / height
    growth: float  # relative size change over the video
    tex_offset: tuple[float, float]


@dataclass(frozen=True)
class VideoScene:
    top: int  # stuff class above the horizon
    bottom_left: int  # stuff class below the horizon, left of the sweep boundary
    bottom_right: int
    horizon: tuple[float, float, float, float]  # (y as fraction of H, amplitude px, frequency, phase)
    sweep: tuple[float, float]  # boundary x at t = 0 (fraction of W), speed (fraction of W per frame)
    pan: float  # stuff texture shift in px per frame
    objects: tuple[ObjectTrack, ...]
    others: tuple[int, int, int, int] | None  # (y0, x0, y1, x1) patch labelled "others" (raw 0)
    brightness: float


def sample_scene(
    rng: np.random.Generator, styles: list[ClassStyle], allowed: list[int], height: int, width: int, n_frames: int
) -> VideoScene:
    """Draw a random scene over the classes ``allowed`` (indices into ``styles``)."""
    stuff = [i for i in allowed if styles[i].kind == "stuff"] or list(allowed)
    things = [i for i in allowed if styles[i].kind == "thing"]
    top, bl, br = (int(c) for c in rng.choice(stuff, size=3, replace=len(stuff) < 3))
    objects = []
    n_obj = int(rng.integers(1, 4)) if things else 0
    for j in range(n_obj):
        still = j == 0  # Figure 1: an object that stays while the ground under it changes
        speed = 0.15 if still else rng.uniform(0.6, 2.5)
        direction = rng.uniform(0, 2 * np.pi)
        objects.append(
            ObjectTrack(
                cls=int(rng.choice(things)),
                shape=str(rng.choice(["ellipse", "box", "diamond"])),
                x0=float(rng.uniform(0.2, 0.8) * width),
                y0=float(rng.uniform(0.55, 0.8) * height if still else rng.uniform(0.2, 0.8) * height),
                vx=float(speed * np.cos(direction) * width / 128),
                vy=float(speed * np.sin(direction) * height / 96 * 0.6),
                radius=float(rng.uniform(0.1, 0.2) * height),
                aspect=float(rng.uniform(0.6, 1.8)),
                growth=float(rng.uniform(-0.35, 0.6)),
                tex_offset=(float(rng.uniform(0, 64)), float(rng.uniform(0, 64))),
            )
        )
    others = None
    if rng.random() < 0.3:
        ph, pw = int(rng.integers(4, height // 6)), int(rng.integers(4, width // 6))
        y, x = int(rng.integers(0, height - ph)), int(rng.integers(0, width - pw))
        others = (y, x, y + ph, x + pw)
    return VideoScene(
        top=top,
        bottom_left=bl,
        bottom_right=br,
        horizon=(float(rng.uniform(0.3, 0.55)), float(rng.uniform(1, 6)), float(rng.uniform(0.02, 0.08)), float(rng.uniform(0, 6.3))),
        sweep=(float(rng.uniform(-0.1, 0.3)), float(rng.uniform(0.6, 1.2) / max(n_frames, 1))),
        pan=float(rng.uniform(-1.0, 1.0)),
        objects=tuple(objects),
        others=others,
        brightness=float(rng.uniform(-12, 12)),
    )


def _bounce(p: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return lo
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


def render_frame(
    scene: VideoScene, t: int, n_frames: int, styles: list[ClassStyle], height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render frame ``t`` of ``scene``.

    Returns:
        rgb: uint8 (H, W, 3).
        cls: int16 (H, W) style index per pixel, -1 for "others".
        inst: int16 (H, W) 0 for stuff, j + 1 for object j, -1 for "others".
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    y_frac, amp, freq, phase = scene.horizon
    horizon = y_frac * height + amp * np.sin(freq * xs + phase + 0.15 * t)
    sweep_x = (scene.sweep[0] + scene.sweep[1] * t) * width
    cls = np.where(ys < horizon, scene.top, np.where(xs < sweep_x, scene.bottom_left, scene.bottom_right)).astype(np.int16)
    inst = np.zeros((height, width), dtype=np.int16)
    rgb = np.zeros((height, width, 3), dtype=np.float32)
    u, v = xs + scene.pan * t, ys
    for c in np.unique(cls):
        m = cls == c
        rgb[m] = render_texture(styles[c], u[m], v[m])
    for j, ob in enumerate(scene.objects):
        scale = 1.0 + ob.growth * t / max(n_frames - 1, 1)
        ry = ob.radius * scale
        rx = ry * ob.aspect
        cx = _bounce(ob.x0 + ob.vx * t, 0.0, width - 1.0)
        cy = _bounce(ob.y0 + ob.vy * t, 0.0, height - 1.0)
        dx, dy = (xs - cx) / rx, (ys - cy) / ry
        if ob.shape == "ellipse":
            m = dx * dx + dy * dy <= 1.0
        elif ob.shape == "box":
            m = (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
        else:
            m = np.abs(dx) + np.abs(dy) <= 1.0
        if not m.any():
            continue
        # texture attached to the object: it moves and scales with it
        tu = (xs[m] - cx) / scale + ob.tex_offset[0]
        tv = (ys[m] - cy) / scale + ob.tex_offset[1]
        rgb[m] = render_texture(styles[ob.cls], tu, tv)
        cls[m] = ob.cls
        inst[m] = j + 1
    if scene.others is not None:
        y0, x0, y1, x1 = scene.others
        rgb[y0:y1, x0:x1] = 128.0
        cls[y0:y1, x0:x1] = -1
        inst[y0:y1, x0:x1] = -1
    rgb += scene.brightness + rng.normal(0.0, 4.0, size=rgb.shape).astype(np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), cls, inst


def vspw_palette() -> list[int]:
    """A fixed 256-colour palette for VSPW-style "P" masks (index 0 black, 255 white)."""
    rng = np.random.default_rng(124)
    pal = rng.integers(0, 256, size=(256, 3))
    pal[0] = 0
    pal[255] = 255
    return pal.astype(int).ravel().tolist()


def _rng(seed: int, dataset: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, _DATASET_CODE[dataset], _SPLIT_CODE[split], index]))


def _first_source(lut: np.ndarray, n_source: int) -> dict[int, int]:
    """VSPW train id → first source train id mapping to it."""
    out: dict[int, int] = {}
    for s in range(n_source):
        if lut[s] != 255 and int(lut[s]) not in out:
            out[int(lut[s])] = s
    return out


def write_vspw(root: Path, params: SynthParams, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the VSPW layout into ``root`` (an empty directory). Returns videos per split."""
    styles = class_styles(params.num_classes)
    allowed = list(range(len(styles)))
    palette = vspw_palette()
    shutil.copyfile(resource_path("vspw_label_num_dic_final.json"), root / "label_num_dic_final.json")
    counts = {}
    for split in vspw.SPLITS:
        n_videos = getattr(params.videos, split)
        names = []
        for i in range(n_videos):
            video = f"{1000 * (1 + _SPLIT_CODE[split]) + i}_synth_{split}"
            names.append(video)
            rng = _rng(params.seed, "vspw", split, i)
            n = params.frames_per_video
            scene = sample_scene(rng, styles, allowed, params.height, params.width, n)
            for t in range(n):
                rgb, cls, _ = render_frame(scene, t, n, styles, params.height, params.width, rng)
                raw = np.where(cls >= 0, np.array([s.vspw_id + 1 for s in styles], dtype=np.uint8)[cls], 0).astype(np.uint8)
                stem = f"{t:08d}"
                save_jpeg(vspw.frame_path(root, video, stem), rgb, params.jpeg_quality)
                save_png(vspw.mask_path(root, video, stem), raw, palette=palette)
            if progress:
                progress(1)
        (root / f"{split}.txt").write_text("".join(f"{v}\n" for v in names))
        counts[split] = n_videos
    return counts


def _random_segment_ids(rng: np.random.Generator, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        c = int(rng.integers(1, 256**3))
        if c not in ids:
            ids.append(c)
    return ids


def write_coco(root: Path, params: SynthParams, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the COCO panoptic layout into ``root``. Returns images per split."""
    styles = class_styles(params.num_classes)
    source = _first_source(coco_to_vspw_lut(), len(COCO_CLASSES))
    allowed = [i for i, s in enumerate(styles) if s.vspw_id in source]
    categories = [
        {"supercategory": "thing" if isthing else "stuff", "isthing": int(isthing), "id": cid, "name": name}
        for cid, name, isthing in zip(COCO_CATEGORY_IDS, COCO_CLASSES, COCO_ISTHING)
    ]
    counts = {}
    image_id = 0
    for split in ("train", "val"):
        n_images = getattr(params.coco_images, split)
        images, annotations = [], []
        for i in range(n_images):
            image_id += 1
            stem = f"{image_id:012d}"
            rng = _rng(params.seed, "coco", split, i)
            scene = sample_scene(rng, styles, allowed, params.height, params.width, 1)
            rgb, cls, inst = render_frame(scene, 0, 1, styles, params.height, params.width, rng)
            pan = np.zeros(cls.shape, dtype=np.int64)
            segments = []
            keys = sorted({(int(c), int(k)) for c, k in zip(cls.ravel(), inst.ravel()) if c >= 0})
            # stuff: one segment per category; things: one segment per object
            groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for c, k in keys:
                contiguous = source[styles[c].vspw_id]
                groups.setdefault((contiguous, k if COCO_ISTHING[contiguous] else 0), []).append((c, k))
            seg_ids = _random_segment_ids(rng, len(groups))
            for seg_id, ((contiguous, k), members) in zip(seg_ids, sorted(groups.items())):
                m = np.zeros(cls.shape, dtype=bool)
                for c, kk in members:
                    m |= (cls == c) & (inst == kk)
                pan[m] = seg_id
                ys, xs = np.nonzero(m)
                x0, y0 = int(xs.min()), int(ys.min())
                segments.append(
                    {
                        "id": seg_id,
                        "category_id": COCO_CATEGORY_IDS[contiguous],
                        "iscrowd": int(COCO_ISTHING[contiguous] and rng.random() < 0.05),
                        "area": int(m.sum()),
                        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    }
                )
            save_jpeg(coco_panoptic.image_dir(root, split) / f"{stem}.jpg", rgb, params.jpeg_quality)
            save_png(coco_panoptic.png_dir(root, split) / f"{stem}.png", coco_panoptic.id_to_rgb(pan))
            h, w = cls.shape
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": h, "width": w})
            annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
            if progress:
                progress(1)
        coco_panoptic.image_dir(root, split).mkdir(parents=True, exist_ok=True)
        coco_panoptic.png_dir(root, split).mkdir(parents=True, exist_ok=True)
        doc = {"info": {"description": "stcl synthetic COCO panoptic"}, "licenses": [], "images": images,
               "annotations": annotations, "categories": categories}
        coco_panoptic.json_path(root, split).write_text(json.dumps(doc))
        counts[split] = n_images
    return counts


def write_ade(root: Path, params: SynthParams, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the ADEChallengeData2016 layout into ``root``. Returns images per split."""
    styles = class_styles(params.num_classes)
    source = _first_source(ade_to_vspw_lut(), len(ADE_CLASSES))
    allowed = [i for i, s in enumerate(styles) if s.vspw_id in source]
    ade_value = np.array([source.get(s.vspw_id, -1) + 1 for s in styles], dtype=np.int64)
    counts = {}
    for split, prefix in (("train", "ADE_train"), ("val", "ADE_val")):
        n_images = getattr(params.ade_images, split)
        img_dir = root / "images" / ade20k.split_dir(split)
        ann_dir = root / "annotations" / ade20k.split_dir(split)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            rng = _rng(params.seed, "ade", split, i)
            scene = sample_scene(rng, styles, allowed, params.height, params.width, 1)
            rgb, cls, _ = render_frame(scene, 0, 1, styles, params.height, params.width, rng)
            ann = np.where(cls >= 0, ade_value[np.maximum(cls, 0)], 0).astype(np.uint8)
            stem = f"{prefix}_{i + 1:08d}"
            save_jpeg(img_dir / f"{stem}.jpg", rgb, params.jpeg_quality)
            save_png(ann_dir / f"{stem}.png", ann)
            if progress:
                progress(1)
        counts[split] = n_images
    return counts


def write_all(out: str | Path, params: SynthParams, progress: Callable[[int], None] | None = None) -> dict[str, dict[str, int]]:
    """Write ``out/VSPW_480p``, ``out/coco`` and ``out/ADEChallengeData2016``, each atomically.

    Each dataset is built in a temporary directory beside its final path and renamed into place, so an
    interrupted run leaves either the previous dataset or the new one, never a half-written one.
    """
    out = Path(out)
    report = {}
    for name, writer in (("VSPW_480p", write_vspw), ("coco", write_coco), ("ADEChallengeData2016", write_ade)):
        with atomic_dir(out / name) as tmp:
            report[name] = writer(tmp, params, progress)
    return report
