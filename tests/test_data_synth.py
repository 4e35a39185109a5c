"""`stcl synth`: deterministic, real formats that check-data accepts, content a small model can learn."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from stcl.cli import main
from stcl.data import synthetic, vspw
from stcl.data.checks import check_dataset
from stcl.data.classes import VSPW_CLASSES, ade_to_vspw_lut, coco_to_vspw_lut
from stcl.params import NuisanceParams, SynthParams

SMALL = {
    "seed": 3,
    "height": 40,
    "width": 48,
    "frames_per_video": 20,
    "videos": {"train": 3, "val": 2, "test": 1},
    "coco_images": {"train": 4, "val": 2},
    "ade_images": {"train": 4, "val": 2},
    "num_classes": 8,
    # the world before the miniature (its tree digest below is from then)
    "nuisance": NuisanceParams.off().model_dump(),
    "confusable_pairs": [],
    "train_covers_classes": False,
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _synth_twice(out: Path, synth: dict) -> Path:
    """`stcl synth` of the same params into ``out/a`` and ``out/b`` (for the determinism checks)."""
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump({"synth": synth}))
    for copy in ("a", "b"):
        assert main(["synth", "--out", str(out / copy), "--params", str(params_file)]) == 0
    return out


@pytest.fixture(scope="module")
def synth_out(module_tmp):
    return _synth_twice(module_tmp("synth"), SMALL)


def test_two_runs_are_byte_identical(synth_out):
    a, b = _tree_digest(synth_out / "a"), _tree_digest(synth_out / "b")
    assert a == b and len(a) > 100
    assert not [p for p in (synth_out / "a").iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_seed_changes_content(tmp_path):
    p = SynthParams(**{**SMALL, "videos": {"train": 1, "val": 0, "test": 0}})
    root_a, root_b = tmp_path / "a", tmp_path / "b"
    root_a.mkdir(), root_b.mkdir()
    synthetic.write_vspw(root_a, p)
    synthetic.write_vspw(root_b, p.model_copy(update={"seed": 4}))
    assert _tree_digest(root_a) != _tree_digest(root_b)


@pytest.mark.parametrize("name", ["VSPW_480p", "coco", "ADEChallengeData2016"])
def test_check_data_clean(synth_out, name):
    report = check_dataset(synth_out / "a" / name)
    assert report.ok, report.problems[:5]


def test_vspw_layout_and_content(synth_out):
    root = synth_out / "a" / "VSPW_480p"
    assert (root / "label_num_dic_final.json").is_file()
    names = synthetic.class_styles(8)
    allowed_raw = {s.vspw_id + 1 for s in names} | {0}
    moved = changed_ground = 0
    for video in vspw.read_split(root, "train"):
        frames = vspw.list_frames(root, video)
        assert len(frames) == 20 and frames[0] == "00000000"
        masks = [vspw.load_raw_mask(vspw.mask_path(root, video, f)) for f in frames]
        assert masks[0].shape == (40, 48)
        assert set(np.unique(np.stack(masks)).tolist()) <= allowed_raw
        moved += not np.array_equal(masks[0], masks[-1])
        bottom_row = np.stack([m[-1] for m in masks])  # the ground under the scene changes over time
        changed_ground += len(np.unique(bottom_row)) > 1
    assert moved == 3 and changed_ground >= 1


def test_default_classes_exist_in_all_label_spaces():
    ade, coco = set(ade_to_vspw_lut().tolist()), set(coco_to_vspw_lut().tolist())
    for style in synthetic.class_styles(8):
        assert style.vspw_id in ade and style.vspw_id in coco, style.name
    assert [s.name for s in synthetic.class_styles(8)] == [n for n, _ in synthetic.SYNTH_CLASSES[:8]]
    many = synthetic.class_styles(40)
    assert len({s.name for s in many}) == 40 and all(s.name in VSPW_CLASSES for s in many)


def test_classes_are_recognisable_from_local_appearance(synth_out):
    """A nearest-centroid rule on 5x5 mean colour + local contrast, fit on train, labels val pixels well."""
    root = synth_out / "a" / "VSPW_480p"

    def features(split):
        xs, ys = [], []
        for video in vspw.read_split(root, split):
            for f in vspw.list_frames(root, video)[::4]:
                img = vspw.load_image(vspw.frame_path(root, video, f)).astype(np.float32)
                lab = vspw.load_train_ids(vspw.mask_path(root, video, f))
                pad = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge")
                win = np.stack([pad[dy : dy + 40, dx : dx + 48] for dy in range(5) for dx in range(5)])
                feat = np.concatenate([win.mean(0), win.std(0)], -1)
                keep = lab != 255
                xs.append(feat[keep])
                ys.append(lab[keep])
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = features("train")
    x_val, y_val = features("val")
    classes = np.unique(y_train)
    centroids = np.stack([x_train[y_train == c].mean(0) for c in classes])
    pred = classes[np.argmin(((x_val[:, None] - centroids[None]) ** 2).sum(-1), 1)]
    assert (pred == y_val).mean() > 0.7


def test_failed_write_keeps_previous_dataset(tmp_path, monkeypatch):
    p = SynthParams(**{**SMALL, "videos": {"train": 1, "val": 1, "test": 0}, "coco_images": {"train": 1, "val": 1},
                       "ade_images": {"train": 1, "val": 1}})
    synthetic.write_all(tmp_path, p)
    before = _tree_digest(tmp_path)

    def boom(root, params, progress=None):
        (root / "partial.txt").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "write_coco", boom)
    with pytest.raises(RuntimeError):
        synthetic.write_all(tmp_path, p.model_copy(update={"seed": 9}))
    assert not (tmp_path / "coco" / "partial.txt").exists()
    assert _tree_digest(tmp_path / "coco") == {k[5:]: v for k, v in before.items() if k.startswith("coco/")}
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]


def test_light_commands_do_not_import_torch():
    """synth, check-data and prepare start fast: no torch import (contract)."""
    import subprocess
    import sys

    code = (
        "import sys, stcl.commands.synth, stcl.commands.check_data, stcl.commands.prepare, "
        "stcl.data.synthetic, stcl.data.checks, stcl.data.prepare; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- with the miniature's keys off, the world before it, byte for byte ------------------------------------------
# Digests of the trees that `stcl synth` wrote before the miniature's keys existed (main at ceddcb9, Pillow 13.0.0):
# the keys off (NuisanceParams.off(), no pairs, no coverage rule) must leave every file as it was.
SMALL_TREE_DIGEST = "3807c32a0a5f53c20d88e3df8ab5ee8f501374219d83e001af677a11864edc88"  # SMALL, 270 files
OLD_DEFAULT_TREE_DIGEST = "beb7c6d6eae05d44b03ce4a9fe4583035c1ad665d68e65b394a050c6acfaf099"  # OLD_DEFAULT, 1,350 files
# the defaults before the miniature (SynthParams() at ceddcb9)
OLD_DEFAULT = {"height": 96, "width": 128, "frames_per_video": 24, "videos": {"train": 12, "val": 6, "test": 6},
               "nuisance": NuisanceParams.off().model_dump(), "confusable_pairs": [], "train_covers_classes": False}


def _one_digest(root: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return len(files), h.hexdigest()


def test_small_defaults_write_the_data_written_before_the_world_keys(synth_out):
    assert _one_digest(synth_out / "a") == (270, SMALL_TREE_DIGEST)


def test_the_old_defaults_write_the_data_written_before_the_world_keys(tmp_path):
    synthetic.write_all(tmp_path, SynthParams(**OLD_DEFAULT))
    assert _one_digest(tmp_path) == (1350, OLD_DEFAULT_TREE_DIGEST)


def test_the_defaults_are_the_miniature():
    p = SynthParams()
    assert p.nuisance != NuisanceParams.off() and p.nuisance.jpeg_quality == (35, 95)
    assert p.confusable_pairs == (("sky", "road"), ("bus", "car")) and p.train_covers_classes
    assert (p.videos.train, p.videos.val, p.videos.test) == (4, 24, 8)
    assert SynthParams(num_classes=5).confusable_pairs == (("sky", "road"),)  # the default pairs in use


# --- the miniature's world (data/README.md, "The embedded miniature") -------------------------------------------
WORLD = {
    **SMALL,
    "videos": {"train": 2, "val": 2, "test": 3},
    "coco_images": {"train": 3, "val": 1},
    "ade_images": {"train": 3, "val": 1},
    "nuisance": {"brightness_sd": 18.0, "contrast_sd": 0.15, "color_sd": 0.06, "blur_prob": 0.25,
                 "jpeg_quality": [35, 95], "occlusion_prob": 1.0, "occlusion_frames": [2, 4]},
    "confusable_pairs": [["sky", "road"], ["bus", "car"]],
    "train_covers_classes": True,
}


@pytest.fixture(scope="module")
def world_out(module_tmp):
    return _synth_twice(module_tmp("world"), WORLD)


def _masks(root: Path, split: str) -> dict[str, np.ndarray]:
    return {v: np.stack([vspw.load_train_ids(vspw.mask_path(root, v, f)) for f in vspw.list_frames(root, v)])
            for v in vspw.read_split(root, split)}


def test_world_is_deterministic_and_its_splits_are_as_configured(world_out):
    a, b = _tree_digest(world_out / "a"), _tree_digest(world_out / "b")
    assert a == b
    root = world_out / "a" / "VSPW_480p"
    for split, n in WORLD["videos"].items():
        masks = _masks(root, split)
        assert len(masks) == n and all(m.shape == (20, 40, 48) for m in masks.values()), split
    for name in ("VSPW_480p", "coco", "ADEChallengeData2016"):
        assert check_dataset(world_out / "a" / name).ok, name


def test_world_seed_changes_its_data(tmp_path):
    p = SynthParams(**{**WORLD, "videos": {"train": 1, "val": 0, "test": 0}})
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    synthetic.write_vspw(tmp_path / "a", p)
    synthetic.write_vspw(tmp_path / "b", p.model_copy(update={"seed": 4}))
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "b")


def test_brightness_is_drawn_per_frame_and_leaves_the_scene_as_it_was(tmp_path):
    """Same seed with and without per-frame brightness: the masks are the same, and the images differ by an
    offset that is about uniform within a frame but changes from frame to frame of one video."""
    plain = SynthParams(**{**SMALL, "videos": {"train": 1, "val": 0, "test": 0}})
    jitter = plain.model_copy(update={"nuisance": NuisanceParams.off().model_copy(update={"brightness_sd": 18.0})})
    for name, p in (("plain", plain), ("jitter", jitter)):
        (tmp_path / name).mkdir()
        synthetic.write_vspw(tmp_path / name, p)
    video = vspw.read_split(tmp_path / "plain", "train")[0]
    frames = vspw.list_frames(tmp_path / "plain", video)
    offsets = []
    for f in frames:
        pa, jt = (vspw.load_image(vspw.frame_path(tmp_path / n, video, f)).astype(np.float32) for n in ("plain", "jitter"))
        assert np.array_equal(vspw.load_raw_mask(vspw.mask_path(tmp_path / "plain", video, f)),
                              vspw.load_raw_mask(vspw.mask_path(tmp_path / "jitter", video, f)))
        inside = (pa > 40) & (pa < 215) & (jt > 40) & (jt < 215)  # away from clipping
        offsets.append(float(np.median((jt - pa)[inside])))
    assert np.std(offsets) > 8.0, offsets  # sd 18 per frame (a per-video offset would give ~0)
    assert len({round(o) for o in offsets}) > 10


def test_confusable_pairs_share_their_appearance():
    styles = synthetic.scene_styles(SynthParams(**WORLD))
    by_name = {s.name: s for s in styles}
    ys, xs = np.mgrid[0:96, 0:96].astype(np.float32)
    for upper, lower in WORLD["confusable_pairs"]:
        up, lo = by_name[upper], by_name[lower]
        assert (up.pattern, up.period, up.angle) == (lo.pattern, lo.period, lo.angle) and lo.vspw_id != up.vspw_id
        a, b = synthetic.render_texture(up, xs, ys), synthetic.render_texture(lo, xs, ys)
        assert not np.array_equal(a, b)  # shifted by half a period: a seam where they meet
        # nearly the same colour statistics: a step below the per-frame brightness sd (18) of the proposed world
        a, b = a.reshape(-1, 3), b.reshape(-1, 3)
        assert 0 < np.abs(a.mean(0) - b.mean(0)).max() < 18.0
        # the same pattern statistics: the lower twin is the upper one shaded, shifted
        shade = synthetic.TWIN_SHADE
        assert np.abs(a.mean(0) * shade - b.mean(0)).max() < 2.0 and np.abs(a.std(0) * shade - b.std(0)).max() < 2.0
    plain = {s.name: s for s in synthetic.class_styles(8)}
    assert not np.allclose(plain["sky"].colors, plain["road"].colors)  # without the pairs they differ


def test_confusable_pairs_are_told_apart_by_their_place(world_out):
    """The upper twin never below the horizon, the lower never above (all splits); both occur in train."""
    root = world_out / "a" / "VSPW_480p"
    ids = {n: VSPW_CLASSES.index(n) for pair in WORLD["confusable_pairs"] for n in pair}
    rows: dict[str, list[float]] = {n: [] for n in ids}
    for split in ("train", "val", "test"):
        for m in _masks(root, split).values():
            assert not (m[:, -1] == ids["sky"]).any() and not (m[:, 0] == ids["road"]).any()
            for n, c in ids.items():
                rows[n] += np.nonzero(m == c)[1].tolist()
    train = np.concatenate([m.ravel() for m in _masks(root, "train").values()])
    assert {s.vspw_id for s in synthetic.class_styles(8)} <= set(train.tolist())  # train_covers_classes
    assert np.mean(rows["sky"]) < np.mean(rows["road"]) and np.mean(rows["bus"]) < np.mean(rows["car"])


def test_occlusions_last_a_few_frames_and_are_ignored(world_out):
    """occlusion_prob 1: in each video the "others" area grows in 2..4 consecutive frames, never in all."""
    root = world_out / "a" / "VSPW_480p"
    for video, m in _masks(root, "val").items():
        ignored = (m == 255).reshape(len(m), -1).sum(1)
        occluded = np.nonzero(ignored > ignored.min())[0]
        assert 2 <= len(occluded) <= 4 and np.all(np.diff(occluded) == 1), (video, ignored)


def test_nuisance_draws_per_frame():
    rng = np.random.default_rng(0)
    p = NuisanceParams(blur_prob=0.5, jpeg_quality=(35, 95), occlusion_prob=1.0, occlusion_frames=(2, 4))
    frames = synthetic.draw_nuisance(rng, p, 20, 40, 48, horizon_y=16.0)
    qualities = {f.jpeg_quality for f in frames}
    assert len(qualities) > 3 and min(qualities) >= 35 and max(qualities) <= 95
    assert 0 < sum(f.blur_sigma > 0 for f in frames) < 20
    boxes = [f.occluder for f in frames if f.occluder is not None]
    assert 2 <= len(boxes) <= 4 and len(set(boxes)) == 1
    y0, _, y1, _ = boxes[0]
    assert y0 <= 16 <= y1  # it straddles the horizon: it hides the context the pairs are told apart by
    off = synthetic.draw_nuisance(np.random.default_rng(0), NuisanceParams.off(), 20, 40, 48, 16.0)
    assert all(f == synthetic.FrameNuisance(occluder_color=f.occluder_color) for f in off)


@pytest.mark.parametrize(
    "synth, needle",
    [
        ({"confusable_pairs": [["sky", "dog"]]}, "'dog' is not one of the named classes in use"),
        ({"confusable_pairs": [["sky", "car"]]}, "pair stuff with stuff"),
        ({"confusable_pairs": [["sky", "road"], ["road", "grass"]]}, "'road' is in more than one pair"),
        ({"nuisance": {"jpeg_quality": [90, 30]}}, "synth.nuisance: jpeg_quality must be [low, high]"),
    ],
)
def test_bad_world_keys_are_named(synth, needle):
    from stcl.params import ParamsError, parse_params

    with pytest.raises(ParamsError) as err:
        parse_params({"synth": synth}, "p.yaml")
    assert needle in str(err.value)


def test_the_proposed_block_of_data_readme_is_valid_and_switches_every_property_on():
    import re

    from stcl.params import parse_params

    text = (Path(__file__).parents[1] / "data" / "README.md").read_text()
    block = re.search(r"The proposed `synth:` block:\n\n```yaml\n(.*?)```", text, re.S)
    assert block, "data/README.md: the proposed synth: block is missing"
    synth = parse_params(yaml.safe_load(block.group(1)), "data/README.md").synth
    n = synth.nuisance
    assert min(n.brightness_sd, n.contrast_sd, n.color_sd, n.blur_prob, n.occlusion_prob) > 0 and n.jpeg_quality
    assert synth.confusable_pairs and synth.train_covers_classes
    assert synth.videos.val >= 24 and synth.videos.test >= 3 * synth.videos.train
