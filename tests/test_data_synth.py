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
from stcl.params import SynthParams

SMALL = {
    "seed": 3,
    "height": 40,
    "width": 48,
    "frames_per_video": 20,
    "videos": {"train": 3, "val": 2, "test": 1},
    "coco_images": {"train": 4, "val": 2},
    "ade_images": {"train": 4, "val": 2},
    "num_classes": 8,
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth_out(module_tmp):
    out = module_tmp("synth")
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump({"synth": SMALL}))
    assert main(["synth", "--out", str(out / "a"), "--params", str(params_file)]) == 0
    assert main(["synth", "--out", str(out / "b"), "--params", str(params_file)]) == 0
    return out


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
