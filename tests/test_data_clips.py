"""Clip sampling (offsets, boundary policy, determinism by seed + epoch) and the dataset builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data_fixtures import write_ade, write_coco, write_vspw
from PIL import Image

from stcl.data import vspw
from stcl.data.classes import VSPW_CLASSES
from stcl.data.clips import DataPaths, ImageSegDataset, VSPWClipDataset, build_dataset, reference_positions
from stcl.data.io import DataError
from stcl.data.prepare import prepare
from stcl.data.transforms import ClipTransform
from stcl.params import AugmentParams, ClipParams, DataParams, Params


@pytest.fixture()
def root(tmp_path):
    return write_vspw(tmp_path / "VSPW_480p")


@pytest.mark.parametrize(
    "t, n, offsets, boundary, expected",
    [
        (5, 10, (-3, -1, 2), "clamp", [2, 4, 7]),
        (0, 10, (-9, -6, -3), "clamp", [0, 0, 0]),
        (9, 10, (3,), "clamp", [9]),
        (1, 10, (-3, -2), "reflect", [2, 1]),
        (0, 10, (-9, -6, -3), "reflect", [9, 6, 3]),
        (8, 10, (2, 3), "reflect", [8, 7]),
        (0, 1, (-3, 3), "reflect", [0, 0]),
        (2, 3, (-7,), "reflect", [1]),
    ],
)
def test_reference_positions(t, n, offsets, boundary, expected):
    assert reference_positions(t, n, offsets, boundary) == expected


def test_reference_positions_always_inside():
    for n in range(1, 8):
        for t in range(n):
            for boundary in ("clamp", "reflect"):
                assert all(0 <= p < n for p in reference_positions(t, n, range(-20, 21), boundary))


def test_every_labelled_frame_is_a_query(root):
    ds = VSPWClipDataset(root, "train", offsets=(-6, -3), boundary="clamp")
    assert len(ds) == 10  # 2 videos x 5 frames
    assert ds.clip_frames(0) == ("vid_a", ["00000000", "00000000", "00000000"])
    # offsets count positions in the sorted frame list (frame files are numbered 0, 3, 6, ...)
    assert ds.clip_frames(4) == ("vid_a", ["00000012", "00000000", "00000003"])
    item = ds[4]
    # uint8 across the worker boundary; the train loop converts on the device
    assert item["img"].shape == (3, 3, 12, 16) and item["img"].dtype == torch.uint8
    assert item["label"].shape == (3, 12, 16) and item["label"].dtype == torch.uint8
    assert item["video"] == "vid_a" and item["frame"] == "00000012"
    raw = vspw.load_raw_mask(vspw.mask_path(root, "vid_a", "00000003"))
    np.testing.assert_array_equal(item["label"][2].numpy(), vspw.to_train_ids(raw))
    assert set(item["label"].unique().tolist()) == {0, 28, 60, 255}  # wall, sky, person, ignore


def _augmented(root, seed):
    aug = AugmentParams(scale=(16, 12), crop_size=(8, 8))
    return VSPWClipDataset(root, "train", (-2,), "clamp", ClipTransform(aug), seed=seed)


def test_determinism_by_seed_and_epoch(root):
    a, b = _augmented(root, 0), _augmented(root, 0)
    first = [a[i]["img"] for i in range(len(a))]
    assert all(torch.equal(x, b[i]["img"]) for i, x in enumerate(first))
    a.set_epoch(1)
    assert not all(torch.equal(x, a[i]["img"]) for i, x in enumerate(first))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]["img"]) for i, x in enumerate(first))
    c = _augmented(root, 1)
    assert not all(torch.equal(x, c[i]["img"]) for i, x in enumerate(first))


def test_unlabelled_split_has_no_queries(root):
    with pytest.raises(DataError, match=r"test\.txt: no labelled frames"):
        VSPWClipDataset(root, "test")


def test_missing_mask_in_labelled_video(root):
    path = vspw.mask_path(root, "vid_b", "00000006")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=str(path)):
        VSPWClipDataset(root, "train")


def test_size_mismatch_names_mask(root):
    path = vspw.mask_path(root, "vid_a", "00000000")
    Image.fromarray(np.ones((6, 16), np.uint8), mode="L").save(path)
    ds = VSPWClipDataset(root, "train")
    with pytest.raises(DataError, match=rf"{path}: mask size \(6, 16\) differs"):
        ds[0]


def test_image_dataset_lut(tmp_path):
    ade = write_ade(tmp_path / "ade")
    from stcl.data import ade20k
    from stcl.data.classes import ade_to_vspw_lut

    ds = ImageSegDataset(ade20k.list_samples(ade, "val"), ade20k.load_train_ids, ade_to_vspw_lut(), name="ade")
    item = ds[0]
    assert item["img"].shape == (1, 3, 12, 16) and item["video"] == "ade" and item["frame"] == "ADE_val_00000001"
    names = {VSPW_CLASSES[i] for i in item["label"].unique().tolist() if i != 255}
    assert names == {"wall", "sky", "person"}


def test_build_dataset_all_names(tmp_path):
    data = DataParams(
        synthetic=False,
        vspw_root=write_vspw(tmp_path / "VSPW_480p"),
        coco_root=write_coco(tmp_path / "coco"),
        ade_root=write_ade(tmp_path / "ade"),
    )
    params = Params(data=data, clips=ClipParams(reference_offsets=(-1,)), augment=AugmentParams(crop_size=(8, 8)))
    prepare(data, tmp_path / "prepare")
    pseudo = write_vspw(tmp_path / "pseudo", splits={"train": ["p1"]})
    paths = DataPaths(
        vspw=data.vspw_root, coco=data.coco_root, coco_semantic=tmp_path / "prepare/coco_semantic",
        ade=data.ade_root, pseudo=pseudo,
    )
    shapes = {}
    for name in ("vspw", "coco", "ade", "pseudo"):
        ds = build_dataset(name, params, paths)
        item = ds[0]
        shapes[name] = tuple(item["img"].shape)
        assert item["label"].max() <= 255 and ((item["label"] < 124) | (item["label"] == 255)).all()
    assert shapes == {"vspw": (2, 3, 8, 8), "coco": (1, 3, 8, 8), "ade": (1, 3, 8, 8), "pseudo": (2, 3, 8, 8)}
    coco = build_dataset("coco", params, paths, label_space="coco", transform=None)
    assert set(coco[0]["label"].unique().tolist()) == {0, 119, 255}
    with pytest.raises(ValueError, match="label_space"):
        build_dataset("vspw", params, paths, label_space="coco")
    with pytest.raises(ValueError, match="dataset name"):
        build_dataset("kitti", params, paths)
    with pytest.raises(ValueError, match="--pseudo"):  # a stage's paths come from its arguments only
        build_dataset("pseudo", params, DataPaths(vspw=data.vspw_root))
