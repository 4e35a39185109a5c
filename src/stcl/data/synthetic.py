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

The miniature's world (data/README.md, "The embedded miniature": each property, the mechanism it is for,
and why), the default, is made by keys of `synth:`; with them off (``NuisanceParams.off()``, no pairs, no
coverage rule) the scenes are those above alone, byte for byte as written before the keys existed:

* ``nuisance``: per-frame brightness, contrast and colour jitter, blur of some frames, per-frame JPEG
  quality, and a brief occlusion by a flat distractor labelled "others" (ignored by training and metrics);
* ``confusable_pairs``: (upper, lower) classes of nearly one appearance (the lower one's texture is shifted
  by half a period and 7% darker, so a boundary between them stays visible), the upper one only above the
  horizon and the lower one only below it, in all three datasets;
* ``train_covers_classes``: every class in use occurs in some labelled train video (few train videos).

Determinism: every video/image draws from ``SeedSequence((seed, dataset, split, index))`` (its nuisance from
``SeedSequence((seed, dataset, split, index, 1))``) and appearance depends only on the class and the pairs, so
two runs with the same params write byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from stcl.params import NuisanceParams, SynthParams
from stcl.synth_classes import SYNTH_CLASSES

__all__ = [
    "SYNTH_CLASSES",
    "ClassStyle",
    "class_styles",
    "scene_styles",
    "render_texture",
    "VideoScene",
    "SceneRules",
    "scene_rules",
    "sample_scene",
    "FrameNuisance",
    "draw_nuisance",
    "render_frame",
    "vspw_palette",
    "write_vspw",
    "write_coco",
    "write_ade",
    "write_all",
]

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
    offset: tuple[float, float] = (0.0, 0.0)  # texture shift (px): a confusable twin's, half a period


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


def _chosen(num_classes: int) -> list[tuple[str, str]]:
    if not 2 <= num_classes <= len(VSPW_CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(VSPW_CLASSES)}, got {num_classes}")
    chosen = list(SYNTH_CLASSES[:num_classes])
    used = {n for n, _ in chosen}
    chosen += [(n, "thing") for n in VSPW_CLASSES if n not in used][: num_classes - len(chosen)]
    return chosen


def class_styles(num_classes: int) -> list[ClassStyle]:
    """The first ``num_classes`` synthetic classes (SYNTH_CLASSES, then other VSPW classes as things)."""
    return [_style(name, kind, i) for i, (name, kind) in enumerate(_chosen(num_classes))]


# A lower twin's colours are its upper twin's times this: a step of at most 18 grey levels where the two meet
# (so the horizon between them stays visible), below the spread that per-frame brightness jitter and the
# per-video offset give one class (so a patch alone does not tell them apart).
TWIN_SHADE = 0.93


def scene_styles(params: SynthParams) -> list[ClassStyle]:
    """The classes in use, each lower class of ``params.confusable_pairs`` wearing its upper twin's appearance
    (pattern, period, angle, noise; colours times `TWIN_SHADE`) shifted by half a period: nearly the same local
    statistics, a visible seam."""
    styles = class_styles(params.num_classes)
    index = {s.name: i for i, s in enumerate(styles)}
    for upper, lower in params.confusable_pairs:
        twin, own = styles[index[upper]], styles[index[lower]]
        styles[index[lower]] = replace(twin, name=own.name, kind=own.kind, vspw_id=own.vspw_id,
                                       colors=twin.colors * TWIN_SHADE, offset=(twin.period / 2, twin.period / 2))
    return styles


def render_texture(style: ClassStyle, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Texture of ``style`` at texture coordinates u (x), v (y), float (H, W) → float (H, W, 3)."""
    p = style.period
    if style.offset != (0.0, 0.0):
        u, v = u + style.offset[0], v + style.offset[1]
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
    band: tuple[float, float] | None = None  # (top, bottom) px its centre bounces within; None: the whole frame


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


@dataclass(frozen=True)
class SceneRules:
    """Where classes may occur (the confusable pairs) and which a scene must contain (label-scarce train)."""

    upper: frozenset[int] = frozenset()  # style indices that occur only above the horizon
    lower: frozenset[int] = frozenset()  # ... only below it
    required: tuple[int, ...] = ()  # style indices the scene must contain


def scene_rules(params: SynthParams, styles: list[ClassStyle], required: tuple[int, ...] = ()) -> SceneRules | None:
    """The rules of ``params.confusable_pairs`` (+ ``required``); None where there are none (today's scenes)."""
    if not params.confusable_pairs and not required:
        return None
    index = {s.name: i for i, s in enumerate(styles)}
    return SceneRules(
        upper=frozenset(index[u] for u, _ in params.confusable_pairs),
        lower=frozenset(index[lo] for _, lo in params.confusable_pairs),
        required=required,
    )


def sample_scene(
    rng: np.random.Generator,
    styles: list[ClassStyle],
    allowed: list[int],
    height: int,
    width: int,
    n_frames: int,
    rules: SceneRules | None = None,
) -> VideoScene:
    """Draw a random scene over the classes ``allowed`` (indices into ``styles``).

    With ``rules`` (the miniature's world) the horizon is drawn first, an upper class is placed (stuff: as the
    top layer; a thing: its centre bouncing above the horizon) only above the horizon and a lower class only
    below it, and the required classes are put in. Without, the draws are those of today's scenes."""
    stuff = [i for i in allowed if styles[i].kind == "stuff"] or list(allowed)
    things = [i for i in allowed if styles[i].kind == "thing"]
    horizon = None
    if rules is None:
        top, bl, br = (int(c) for c in rng.choice(stuff, size=3, replace=len(stuff) < 3))
    else:
        horizon = _draw_horizon(rng)
        top, bl, br = _world_stuff(rng, stuff, rules)
    objects = []
    n_obj = int(rng.integers(1, 4)) if things else 0
    forced = [c for c in (rules.required if rules else ()) if c in things]
    n_obj = max(n_obj, len(forced))
    for j in range(n_obj):
        still = j == 0  # Figure 1: an object that stays while the ground under it changes
        speed = 0.15 if still else rng.uniform(0.6, 2.5)
        direction = rng.uniform(0, 2 * np.pi)
        cls = int(rng.choice(things))
        shape = str(rng.choice(["ellipse", "box", "diamond"]))
        x0 = float(rng.uniform(0.2, 0.8) * width)
        y0 = float(rng.uniform(0.55, 0.8) * height if still else rng.uniform(0.2, 0.8) * height)
        band = None
        if rules is not None:
            cls = forced[j] if j < len(forced) else cls
            horizon_y = horizon[0] * height
            if cls in rules.upper:
                band = (0.0, horizon_y)
                y0 = float(horizon_y * (rng.uniform(0.1, 0.9) if still else rng.uniform(0.0, 1.0)))
            elif cls in rules.lower:
                band = (horizon_y, height - 1.0)
                y0 = y0 if still else float(rng.uniform(horizon_y, height - 1.0))
        objects.append(
            ObjectTrack(
                cls=cls,
                shape=shape,
                x0=x0,
                y0=y0,
                vx=float(speed * np.cos(direction) * width / 128),
                vy=float(speed * np.sin(direction) * height / 96 * 0.6),
                radius=float(rng.uniform(0.1, 0.2) * height),
                aspect=float(rng.uniform(0.6, 1.8)),
                growth=float(rng.uniform(-0.35, 0.6)),
                tex_offset=(float(rng.uniform(0, 64)), float(rng.uniform(0, 64))),
                band=band,
            )
        )
    others = None
    if rng.random() < 0.3:
        ph, pw = int(rng.integers(4, height // 6)), int(rng.integers(4, width // 6))
        y, x = int(rng.integers(0, height - ph)), int(rng.integers(0, width - pw))
        others = (y, x, y + ph, x + pw)
    if horizon is None:
        horizon = _draw_horizon(rng)
    return VideoScene(
        top=top,
        bottom_left=bl,
        bottom_right=br,
        horizon=horizon,
        sweep=(float(rng.uniform(-0.1, 0.3)), float(rng.uniform(0.6, 1.2) / max(n_frames, 1))),
        pan=float(rng.uniform(-1.0, 1.0)),
        objects=tuple(objects),
        others=others,
        brightness=float(rng.uniform(-12, 12)),
    )


def _draw_horizon(rng: np.random.Generator) -> tuple[float, float, float, float]:
    return (float(rng.uniform(0.3, 0.55)), float(rng.uniform(1, 6)), float(rng.uniform(0.02, 0.08)), float(rng.uniform(0, 6.3)))


def _world_stuff(rng: np.random.Generator, stuff: list[int], rules: SceneRules) -> tuple[int, int, int]:
    """(top, bottom left, bottom right): an upper class never below the horizon, a lower one never above; the
    required stuff classes put in (top first where allowed)."""
    top_ok = [c for c in stuff if c not in rules.lower] or stuff
    bottom_ok = [c for c in stuff if c not in rules.upper] or stuff
    top = int(rng.choice(top_ok))
    rest = [c for c in bottom_ok if c != top] or bottom_ok
    bl, br = (int(c) for c in rng.choice(rest, size=2, replace=len(rest) < 2))
    slots = {"top": top, "bl": bl, "br": br}
    free = ["top", "bl", "br"]
    for c in (c for c in rules.required if c in stuff):
        where = [k for k in free if (c not in rules.lower if k == "top" else c not in rules.upper)]
        if where:
            slots[where[0]] = c
            free.remove(where[0])
    return slots["top"], slots["bl"], slots["br"]


def _bounce(p: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return lo
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


@dataclass(frozen=True)
class FrameNuisance:
    """What one frame's camera and encoder do to it (the miniature's per-frame nuisance)."""

    brightness: float = 0.0  # grey levels added (on top of the scene's brightness)
    contrast: float = 1.0  # factor around mid grey
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per RGB channel: a colour cast
    blur_sigma: float = 0.0  # Gaussian blur (px); 0: sharp
    jpeg_quality: int | None = None  # None: synth.jpeg_quality
    occluder: tuple[int, int, int, int] | None = None  # (y0, x0, y1, x1) flat distractor, labelled "others"
    occluder_color: tuple[float, float, float] = (128.0, 128.0, 128.0)


def draw_nuisance(
    rng: np.random.Generator, p: NuisanceParams, n_frames: int, height: int, width: int, horizon_y: float
) -> list[FrameNuisance]:
    """Each frame's nuisance. Every quantity is drawn whatever ``p`` says (a fixed number of draws), so
    switching one nuisance on or off leaves the draws of the others as they were. The occlusion lasts
    ``p.occlusion_frames`` consecutive frames (never the whole video, unless it is one image) and its box
    straddles the horizon, so it hides the context the confusable pairs are told apart by."""
    z = rng.standard_normal((n_frames, 5))
    blur_u, sigma_u, quality_u = rng.random(n_frames), rng.random(n_frames), rng.random(n_frames)
    occ_u, length_u, start_u, w_u, h_u, x_u, y_u = rng.random(7)
    color = rng.uniform(0.0, 255.0, size=3)
    occluded: range = range(0)
    box = None
    if occ_u < p.occlusion_prob:
        lo, hi = p.occlusion_frames
        length = min(lo + int(length_u * (hi - lo + 1)), max(n_frames - 1, 1))
        start = int(start_u * (n_frames - length + 1))
        occluded = range(start, start + length)
        (wlo, whi), (hlo, hhi) = p.occlusion_size, p.occlusion_size
        w = max(1, int(round(width * (wlo + w_u * (whi - wlo)))))
        h = max(1, int(round(height * (hlo + h_u * (hhi - hlo)))))
        x0 = int(x_u * (width - w + 1))
        y0 = int(np.clip(round(horizon_y + (y_u - 0.5) * h * 0.5 - h / 2), 0, height - h))
        box = (y0, x0, y0 + h, x0 + w)
    out = []
    for t in range(n_frames):
        quality = None
        if p.jpeg_quality is not None:
            qlo, qhi = p.jpeg_quality
            quality = qlo + int(quality_u[t] * (qhi - qlo + 1))
        slo, shi = p.blur_sigma
        out.append(
            FrameNuisance(
                brightness=float(p.brightness_sd * z[t, 0]),
                contrast=float(np.clip(1.0 + p.contrast_sd * z[t, 1], 0.5, 1.5)),
                gain=tuple(float(g) for g in np.clip(1.0 + p.color_sd * z[t, 2:5], 0.7, 1.3)),
                blur_sigma=float(slo + sigma_u[t] * (shi - slo)) if blur_u[t] < p.blur_prob else 0.0,
                jpeg_quality=quality,
                occluder=box if t in occluded else None,
                occluder_color=tuple(float(c) for c in color),
            )
        )
    return out


def _gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of float (H, W, 3), edges repeated."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    h, w = rgb.shape[:2]
    pad = np.pad(rgb, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = sum(k[i] * pad[i : i + h] for i in range(2 * r + 1))
    pad = np.pad(out, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(k[i] * pad[:, i : i + w] for i in range(2 * r + 1)).astype(np.float32)


def render_frame(
    scene: VideoScene,
    t: int,
    n_frames: int,
    styles: list[ClassStyle],
    height: int,
    width: int,
    rng: np.random.Generator,
    nuisance: FrameNuisance | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render frame ``t`` of ``scene`` (with ``nuisance``: occluder, then contrast, colour and brightness, then
    blur, then the sensor noise; without, today's frames).

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
        cy = _bounce(ob.y0 + ob.vy * t, *(ob.band or (0.0, height - 1.0)))
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
    if nuisance is not None:
        if nuisance.occluder is not None:
            # a textureless distractor over the scene: "others" (raw 0, ignored), as VSPW labels what is none
            # of its classes; labelling it with what it hides would ask a frame for what it does not show
            y0, x0, y1, x1 = nuisance.occluder
            rgb[y0:y1, x0:x1] = np.asarray(nuisance.occluder_color, dtype=np.float32)
            cls[y0:y1, x0:x1] = -1
            inst[y0:y1, x0:x1] = -1
        gain = nuisance.contrast * np.asarray(nuisance.gain, dtype=np.float32)
        rgb = (rgb - 128.0) * gain + (128.0 + nuisance.brightness)
        if nuisance.blur_sigma > 0:
            rgb = _gaussian_blur(rgb, nuisance.blur_sigma)
        rgb = rgb.astype(np.float32)
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


def _frame_nuisances(
    params: SynthParams, dataset: str, split: str, index: int, n_frames: int, scene: VideoScene
) -> list[FrameNuisance | None]:
    """The nuisance of each frame of one video/image, from its own stream; all None when the nuisance is off (the world before the miniature)."""
    if params.nuisance == NuisanceParams.off():
        return [None] * n_frames
    rng = np.random.default_rng(
        np.random.SeedSequence([params.seed & 0xFFFFFFFF, _DATASET_CODE[dataset], _SPLIT_CODE[split], index, 1])
    )
    return draw_nuisance(rng, params.nuisance, n_frames, params.height, params.width, scene.horizon[0] * params.height)


def _quality(params: SynthParams, nuisance: FrameNuisance | None) -> int:
    return nuisance.jpeg_quality if nuisance is not None and nuisance.jpeg_quality is not None else params.jpeg_quality


def _covered(params: SynthParams, split: str, index: int, allowed: list[int]) -> tuple[int, ...]:
    """With ``train_covers_classes``: the classes train video ``index`` must contain (class k in video k mod n)."""
    if not params.train_covers_classes or split != "train":
        return ()
    return tuple(c for k, c in enumerate(allowed) if k % params.videos.train == index)


def _first_source(lut: np.ndarray, n_source: int) -> dict[int, int]:
    """VSPW train id → first source train id mapping to it."""
    out: dict[int, int] = {}
    for s in range(n_source):
        if lut[s] != 255 and int(lut[s]) not in out:
            out[int(lut[s])] = s
    return out


def write_vspw(root: Path, params: SynthParams, progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write the VSPW layout into ``root`` (an empty directory). Returns videos per split."""
    styles = scene_styles(params)
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
            rules = scene_rules(params, styles, _covered(params, split, i, allowed))
            scene = sample_scene(rng, styles, allowed, params.height, params.width, n, rules)
            nuisances = _frame_nuisances(params, "vspw", split, i, n, scene)
            for t in range(n):
                rgb, cls, _ = render_frame(scene, t, n, styles, params.height, params.width, rng, nuisances[t])
                raw = np.where(cls >= 0, np.array([s.vspw_id + 1 for s in styles], dtype=np.uint8)[cls], 0).astype(np.uint8)
                stem = f"{t:08d}"
                save_jpeg(vspw.frame_path(root, video, stem), rgb, _quality(params, nuisances[t]))
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
    styles = scene_styles(params)
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
            scene = sample_scene(rng, styles, allowed, params.height, params.width, 1, scene_rules(params, styles))
            nuisance = _frame_nuisances(params, "coco", split, i, 1, scene)[0]
            rgb, cls, inst = render_frame(scene, 0, 1, styles, params.height, params.width, rng, nuisance)
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
            save_jpeg(coco_panoptic.image_dir(root, split) / f"{stem}.jpg", rgb, _quality(params, nuisance))
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
    styles = scene_styles(params)
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
            scene = sample_scene(rng, styles, allowed, params.height, params.width, 1, scene_rules(params, styles))
            nuisance = _frame_nuisances(params, "ade", split, i, 1, scene)[0]
            rgb, cls, _ = render_frame(scene, 0, 1, styles, params.height, params.width, rng, nuisance)
            ann = np.where(cls >= 0, ade_value[np.maximum(cls, 0)], 0).astype(np.uint8)
            stem = f"{prefix}_{i + 1:08d}"
            save_jpeg(img_dir / f"{stem}.jpg", rgb, _quality(params, nuisance))
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
