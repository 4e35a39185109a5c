"""Pseudo labels: threshold semantics, raw-id round trip, sharding, resume after a kill, gather checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _data_fixtures import write_vspw_root
from _infer_fixtures import PointwiseNet
from hypothesis import given
from hypothesis import strategies as st

from stcl.data import vspw
from stcl.data.classes import VSPW_CLASSES
from stcl.infer import pseudo_labels as pl
from stcl.infer.driver import DriverSummary
from stcl.infer.shards import parse_shard, shard_videos
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA
from stcl.infer.sliding import Window

VIDEOS = {"vid_a": (3, 24, 32), "vid_b": (2, 30, 20), "vid_c": (2, 16, 16), "vid_d": (1, 20, 28), "vid_e": (2, 24, 24)}
TTA_SMALL = TTA(scales=(0.75, 1.0), flip=True, window=Window((16, 16), (12, 12)), batch_size=8)


def test_threshold_is_strict():
    probs = torch.zeros(3, 1, 4, dtype=torch.float64)
    probs[0, 0] = torch.tensor([0.5, 0.3, 0.75, 0.5001], dtype=torch.float64)
    probs[1, 0] = torch.tensor([0.25, 0.4, 0.2, 0.4999], dtype=torch.float64)
    probs[2, 0] = 1 - probs[0, 0] - probs[1, 0]
    # max == threshold → dropped (strict >); column 1's max is class 1 at 0.4 <= 0.5 → dropped
    assert pl.keep_confident(probs, 0.5).tolist() == [[255, 255, 0, 0]]
    assert pl.keep_confident(probs, 0.0).tolist() == [[0, 1, 0, 0]]
    assert pl.keep_confident(probs, 0.75).tolist() == [[255, 255, 255, 255]]
    with pytest.raises(ValueError, match="threshold"):
        pl.keep_confident(probs, 1.5)


def test_raw_ids_round_trip_through_vspw_reader(tmp_path: Path):
    rng = np.random.default_rng(0)
    train_ids = rng.integers(0, 124, (13, 17)).astype(np.uint8)
    train_ids[rng.random((13, 17)) < 0.3] = 255
    train_ids[0, :3] = [0, 123, 255]
    raw = pl.to_raw_ids(train_ids)
    assert raw[0, :3].tolist() == [1, 124, 255]
    save_label_png(tmp_path / "m.png", raw)
    assert np.array_equal(vspw.load_raw_mask(tmp_path / "m.png"), raw)
    assert np.array_equal(vspw.load_train_ids(tmp_path / "m.png"), train_ids)
    with pytest.raises(ValueError, match="outside"):
        pl.to_raw_ids(np.array([[124]], dtype=np.uint8))


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "a/b", "0/0", "-1/2"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


@given(st.lists(st.text("abcxyz_0123", min_size=1, max_size=6), unique=True, max_size=30), st.integers(1, 7))
def test_shards_partition_the_videos(videos, count):
    shards = [shard_videos(videos, i, count) for i in range(count)]
    flat = [v for s in shards for v in s]
    assert sorted(flat) == sorted(videos) and len(flat) == len(set(flat))
    assert shards == [shard_videos(list(reversed(videos)), i, count) for i in range(count)]  # order-free


def _frames(root: Path) -> dict[str, list[str]]:
    return {v: vspw.list_frames(root, v) for v in VIDEOS}


class CountingTeacher:
    """PointwiseNet wrapper that records how many windows it was asked for."""

    def __init__(self) -> None:
        self.model = PointwiseNet(num_classes=124, seed=3, gain=1.0).eval()
        self.windows = 0

    def __call__(self, x):
        self.windows += x.shape[0]
        return self.model(x)


def _run(root: Path, out: Path, index: int, count: int, teacher=None, tta=TTA_SMALL, **rule) -> DriverSummary:
    teacher = teacher or CountingTeacher()
    rule = {"threshold": 0.5, **rule}
    return pl.run_shard(
        pl.Teacher({"t": teacher}, (1.0,)),
        tta,
        _frames(root),
        index,
        count,
        frame_path=lambda v, s: vspw.frame_path(root, v, s),
        out_root=out / "VSPW_pseudo",
        record=out / "shards" / f"{index}-of-{count}.json",
        progress=False,
        **rule,
    )


def _gather(root: Path, out: Path, count: int) -> dict:
    return pl.gather(
        _frames(root),
        [out / "shards" / f"{i}-of-{count}.json" for i in range(count)],
        out_root=out / "VSPW_pseudo",
        stats_path=out / "stats.json",
        class_names=VSPW_CLASSES,
    )


def _masks(out: Path) -> dict[str, np.ndarray]:
    data = out / "VSPW_pseudo" / "data"
    return {str(p.relative_to(data)): vspw.load_raw_mask(p) for p in sorted(data.glob("*/mask/*.png"))}


@pytest.fixture(scope="module")
def unsharded(module_tmp):
    root = write_vspw_root(module_tmp("src"), VIDEOS)
    out = module_tmp("one")
    result = _run(root, out, 0, 1)
    stats = _gather(root, out, 1)
    return root, out, result, stats


def test_unsharded_run_writes_a_vspw_dataset(unsharded):
    root, out, result, stats = unsharded
    ds = out / "VSPW_pseudo"
    assert result.computed == sorted(VIDEOS) and result.skipped == []
    assert vspw.read_split(ds, "train") == sorted(VIDEOS)
    for video, (n, h, w) in VIDEOS.items():
        stems = vspw.list_frames(ds, video)
        assert stems == vspw.list_frames(root, video)
        for s in stems:
            frame = vspw.frame_path(ds, video, s)
            assert not frame.is_symlink() and frame.read_bytes() == vspw.frame_path(root, video, s).read_bytes()
            assert vspw.load_train_ids(vspw.mask_path(ds, video, s)).shape == (h, w)
    assert json.loads((ds / "label_num_dic_final.json").read_text())["wall"] == "1"
    masks = _masks(out)
    kept = sum(int((m != 255).sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    assert 0 < kept < total  # the toy teacher is confident on some pixels only: the threshold matters
    assert stats["kept_pixels"] == kept and stats["pixels"] == total
    assert stats["kept_fraction"] == pytest.approx(kept / total)
    per_class = np.bincount(np.concatenate([m.ravel() for m in masks.values()]), minlength=256)[1:125]
    assert [stats["per_class"][n]["kept_pixels"] for n in VSPW_CLASSES] == per_class.tolist()
    # The teacher's argmax per class, recomputed frame by frame: the denominator of the per-class kept fraction.
    from stcl.infer.frames import image_tensor
    from stcl.infer.multiscale import tta_probs

    teacher = CountingTeacher()
    argmax = np.zeros(124, dtype=np.int64)
    for video in VIDEOS:
        for stem in vspw.list_frames(root, video):
            image = image_tensor(vspw.load_image(vspw.frame_path(root, video, stem)))
            probs = tta_probs(teacher, image[None], TTA_SMALL)[0]
            argmax += np.bincount(probs.argmax(0).numpy().ravel(), minlength=124)
    assert [stats["per_class"][n]["argmax_pixels"] for n in VSPW_CLASSES] == argmax.tolist()
    assert (per_class <= argmax).all() and (per_class < argmax).any()
    for c, name in enumerate(VSPW_CLASSES):
        assert stats["per_class"][name]["kept_fraction"] == (pytest.approx(per_class[c] / argmax[c]) if argmax[c] else 0.0)
    assert json.loads((out / "stats.json").read_text()) == stats


def test_shard_union_equals_unsharded_run(unsharded, tmp_path: Path):
    root, one, _, stats_one = unsharded
    results = [_run(root, tmp_path, i, 2) for i in range(2)]
    assert sorted(results[0].computed + results[1].computed) == sorted(VIDEOS)
    assert not set(results[0].computed) & set(results[1].computed)
    hidden = tmp_path / "1-of-2.json"
    (tmp_path / "shards" / "1-of-2.json").rename(hidden)
    with pytest.raises(FileNotFoundError, match=r"1 of 2 shard records missing .*: .*1-of-2.json"):
        _gather(root, tmp_path, 2)
    hidden.rename(tmp_path / "shards" / "1-of-2.json")
    stats = _gather(root, tmp_path, 2)
    a, b = _masks(one), _masks(tmp_path)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in stats.items() if k != "shards"} == {k: v for k, v in stats_one.items() if k != "shards"}


def test_killed_shard_resumes(unsharded, tmp_path: Path):
    root, one, _, _ = unsharded
    first = _run(root, tmp_path, 0, 1)
    data = tmp_path / "VSPW_pseudo" / "data"
    record = tmp_path / "shards" / "0-of-1.json"
    # simulate a kill while writing vid_c: its folder never got renamed, a temp folder is left; no record
    (data / "vid_c").rename(data / ".vid_c.k1ll3d.tmp")
    (data / ".vid_c.k1ll3d.tmp" / "mask" / "00000001.png").unlink()
    # and an older partial vid_e (e.g. a frame deleted by hand): incomplete, must be redone
    (data / "vid_e" / "mask" / "00000000.png").unlink()
    record.unlink()
    with pytest.raises(FileNotFoundError, match="shard records missing"):
        _gather(root, tmp_path, 1)
    teacher = CountingTeacher()
    again = _run(root, tmp_path, 0, 1, teacher)
    assert again.computed == ["vid_c", "vid_e"]
    assert again.skipped == ["vid_a", "vid_b", "vid_d"]
    assert not list(data.glob(".*"))  # the stale temporary folder is gone
    same = {k: v for k, v in again.record.items() if k not in ("computed", "skipped")}
    assert same == {k: v for k, v in first.record.items() if k not in ("computed", "skipped")} and record.is_file()
    assert json.loads(record.read_text()) == again.record
    a, b = _masks(one), _masks(tmp_path)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert teacher.windows == _windows(("vid_c", "vid_e"))  # the teacher ran on the redone videos only


def _windows(videos) -> int:
    """Windows the TTA runs for the frames of ``videos``."""
    from stcl.infer.multiscale import scaled_size
    from stcl.infer.sliding import window_grid

    total = 0
    for v in videos:
        n, h, w = VIDEOS[v]
        for s, _ in TTA_SMALL.views:
            total += n * len(window_grid(*scaled_size(h, w, s), TTA_SMALL.window))
    return total


def test_gather_reports_uncovered_and_duplicated_videos(unsharded, tmp_path: Path):
    root, one, _, _ = unsharded
    _run(root, tmp_path, 0, 2)
    _run(root, tmp_path, 1, 2)
    rec_path = tmp_path / "shards" / "1-of-2.json"
    rec = json.loads(rec_path.read_text())
    dropped = rec["videos"].pop()
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=rf"1 videos in no shard: {dropped}"):
        _gather(root, tmp_path, 2)
    rec["videos"] += [dropped, shard_videos(list(VIDEOS), 0, 2)[0]]
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="1 videos in several shards"):
        _gather(root, tmp_path, 2)
    assert not (tmp_path / "stats.json").exists()


def test_class_balanced_thresholds_keep_the_top_portion_of_each_class_and_all_the_fixed_rule_keeps():
    """Zou et al. 2018's per-class quantile, per frame: an under-confident class is no longer dropped whole."""
    from stcl.infer.thresholds import class_quantiles, keep_class_balanced

    # 1×6 pixels: class 0 confident (0.9, 0.8), class 1 under-confident (0.45, 0.4, 0.35, 0.3); 5 classes, the
    # rest of each pixel's probability split over the 4 others (at most 0.1375, so the argmax is as given)
    conf = torch.tensor([[0.9, 0.8, 0.45, 0.4, 0.35, 0.3]])
    label = torch.tensor([[0, 0, 1, 1, 1, 1]])
    probs = ((1 - conf) / 4).expand(5, 1, 6).clone()
    probs.scatter_(0, label[None], conf[None])
    assert torch.equal(probs.argmax(0), label) and torch.allclose(probs.sum(0), torch.ones(1, 6))
    q = class_quantiles(conf, label, 5, 0.5)
    assert q[0].item() == pytest.approx(0.9) and q[1].item() == pytest.approx(0.4) and q[2].item() == float("inf")
    assert keep_class_balanced(probs, 0.5, 0.5).tolist() == [[0, 0, 1, 1, 255, 255]]
    assert pl.keep_confident(probs, 0.5).tolist() == [[0, 0, 255, 255, 255, 255]]  # the paper's rule drops class 1
    assert keep_class_balanced(probs, 0.5, 1.0).tolist() == [[0, 0, 1, 1, 1, 1]]
    assert keep_class_balanced(probs, 0.5, 0.01).tolist() == [[0, 0, 1, 255, 255, 255]]  # at least one per class
    with pytest.raises(ValueError, match="portion"):
        keep_class_balanced(probs, 0.5, 0.0)


def test_a_rerun_with_another_rule_rewrites_the_labels_its_record_claims(unsharded, tmp_path: Path):
    """A rerun of a shard with another class-balanced portion (or threshold) used to skip the complete videos,
    keeping the old labels, while its record claimed the new rule."""
    root, one, _, stats_one = unsharded
    _run(root, tmp_path, 0, 1)
    fresh = tmp_path / "fresh"
    _run(root, fresh, 0, 1, class_balanced_portion=0.5)
    again = _run(root, tmp_path, 0, 1, class_balanced_portion=0.5)
    assert again.computed == sorted(VIDEOS) and again.skipped == []
    assert again.record["class_balanced_portion"] == 0.5
    a, b = _masks(fresh), _masks(tmp_path)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], _masks(one)[k]) for k in a)  # the rule changes the labels
    stats = _gather(root, tmp_path, 1)
    assert stats["class_balanced_portion"] == 0.5 and stats["kept_pixels"] > stats_one["kept_pixels"]
    # the same rule again: nothing to redo
    assert _run(root, tmp_path, 0, 1, class_balanced_portion=0.5).skipped == sorted(VIDEOS)
    assert _run(root, tmp_path, 0, 1, threshold=0.6, class_balanced_portion=0.5).computed == sorted(VIDEOS)
    no_flip = TTA(scales=TTA_SMALL.scales, flip=False, window=TTA_SMALL.window, batch_size=8)
    assert _run(root, tmp_path, 0, 1, tta=no_flip, threshold=0.6, class_balanced_portion=0.5).computed == sorted(VIDEOS)


def test_gather_refuses_labels_cut_with_another_rule_than_the_records(unsharded, tmp_path: Path):
    root, _, _, _ = unsharded
    _run(root, tmp_path, 0, 1)
    counts = tmp_path / "VSPW_pseudo" / "data" / "vid_b" / "teacher_counts.json"
    data = json.loads(counts.read_text())
    assert data["labelled_with"] == {
        "threshold": 0.5,
        "class_balanced_portion": None,
        "tta": {"scales": [0.75, 1.0], "flip": True, "crop": [16, 16], "stride": [12, 12], "amp": "off"},
        "teacher_weights": [1.0],
    }
    data["labelled_with"]["threshold"] = 0.3
    counts.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"1 videos under .* not labelled with the records' rule \(.*\): vid_b \(rerun"):
        _gather(root, tmp_path, 1)
    assert not (tmp_path / "stats.json").exists()
    assert _run(root, tmp_path, 0, 1).computed == ["vid_b"]  # the rerun redoes it
    _gather(root, tmp_path, 1)


def test_gather_refuses_shards_run_with_different_rules(unsharded, tmp_path: Path):
    root, _, _, _ = unsharded
    _run(root, tmp_path, 0, 2)
    _run(root, tmp_path, 1, 2, tta=TTA(scales=(1.0,), flip=True, window=TTA_SMALL.window, batch_size=8))
    with pytest.raises(ValueError, match=r"shards used different labelling rules \(tta differ\)"):
        _gather(root, tmp_path, 2)
    _run(root, tmp_path, 1, 2)  # the rerun with the first shard's rule
    _gather(root, tmp_path, 2)
