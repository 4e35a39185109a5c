"""VSPW, ADE20K and COCO panoptic readers: formats, train ids and bad input naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from _data_fixtures import expected_coco_semantic, frame_content, write_ade, write_coco, write_vspw
from PIL import Image

from stcl.data import ade20k, coco_panoptic, vspw
from stcl.data.io import DataError


@pytest.fixture()
def root(tmp_path):
    return write_vspw(tmp_path / "VSPW_480p")


def test_read_split_and_frames(root):
    assert vspw.read_split(root, "train") == ["vid_a", "vid_b"]  # file has no trailing newline
    assert vspw.list_frames(root, "vid_a") == [f"{t * 3:08d}" for t in range(5)]
    img = vspw.load_image(vspw.frame_path(root, "vid_a", "00000003"))
    assert img.shape == (12, 16, 3) and img.dtype == np.uint8
    raw = vspw.load_raw_mask(vspw.mask_path(root, "vid_a", "00000003"))
    np.testing.assert_array_equal(raw, frame_content(0, 1)[1])


def test_read_split_blank_lines_and_crlf(tmp_path):
    (tmp_path / "train.txt").write_text("a\r\n\r\nb\r\n")
    assert vspw.read_split(tmp_path, "train") == ["a", "b"]


def test_to_train_ids():
    raw = np.array([[0, 1, 2], [124, 255, 61]], dtype=np.uint8)
    np.testing.assert_array_equal(vspw.to_train_ids(raw), [[255, 0, 1], [123, 255, 60]])


@pytest.mark.parametrize("name", ["a/b", "..", "x..y", "a\\b", "../etc"])
def test_bad_video_names(tmp_path, name):
    (tmp_path / "train.txt").write_text(f"ok\n{name}\n")
    with pytest.raises(DataError, match=r"train\.txt: invalid video name"):
        vspw.read_split(tmp_path, "train")


def test_empty_and_missing_split(tmp_path):
    (tmp_path / "val.txt").write_text("\n \n")
    with pytest.raises(DataError, match=r"val\.txt: split is empty"):
        vspw.read_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        vspw.read_split(tmp_path, "train")


def test_mask_value_outside_label_set_names_file(root):
    path = vspw.mask_path(root, "vid_a", "00000000")
    Image.fromarray(np.full((12, 16), 200, np.uint8), mode="L").save(path)
    with pytest.raises(DataError, match=rf"{path}: mask values \[200\]"):
        vspw.load_raw_mask(path)


def test_rgb_mask_rejected(root):
    path = vspw.mask_path(root, "vid_a", "00000000")
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="single-channel"):
        vspw.load_raw_mask(path)


def test_truncated_and_garbage_images_name_file(root):
    path = vspw.frame_path(root, "vid_a", "00000000")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{path}: unreadable or truncated"):
        vspw.load_image(path)
    path.write_bytes(b"not an image")
    with pytest.raises(DataError, match=rf"{path}: unreadable"):
        vspw.load_image(path)


def test_missing_frame_folder(root):
    with pytest.raises(FileNotFoundError, match="nope/origin"):
        vspw.list_frames(root, "nope")


def test_ade_reduce_zero_label(tmp_path):
    root = write_ade(tmp_path / "ade")
    samples = ade20k.list_samples(root, "train")
    assert [s[0].name for s in samples] == ["ADE_train_00000001.jpg", "ADE_train_00000002.jpg"]
    label = ade20k.load_train_ids(samples[0][1])
    assert label[0, 0] == 255 and label[11, 0] == 0 and label[0, 5] == 2 and label[6, 6] == 12
    Image.fromarray(np.full((12, 16), 151, np.uint8), mode="L").save(samples[1][1])
    with pytest.raises(DataError, match=r"ADE_train_00000002\.png: annotation values \[151\]"):
        ade20k.load_train_ids(samples[1][1])
    samples[0][1].unlink()
    with pytest.raises(FileNotFoundError, match=r"ADE_train_00000001\.png"):
        ade20k.list_samples(root, "train")


def test_coco_panoptic_to_semantic(tmp_path):
    root = write_coco(tmp_path / "coco")
    anns = coco_panoptic.load_panoptic_json(coco_panoptic.json_path(root, "train"))
    ann = anns["000000000001.png"]
    png = coco_panoptic.png_dir(root, "train") / ann["file_name"]
    semantic = coco_panoptic.panoptic_to_semantic(coco_panoptic.load_panoptic_png(png), ann["segments_info"], png)
    np.testing.assert_array_equal(semantic, expected_coco_semantic())


def test_coco_segment_absent_from_json_names_png(tmp_path):
    root = write_coco(tmp_path / "coco")
    ann = coco_panoptic.load_panoptic_json(coco_panoptic.json_path(root, "val"))["000000000001.png"]
    png = coco_panoptic.png_dir(root, "val") / ann["file_name"]
    segments = [s for s in ann["segments_info"] if s["id"] != 70000]
    with pytest.raises(DataError, match=rf"{png}: segment ids \[70000\] are absent"):
        coco_panoptic.panoptic_to_semantic(coco_panoptic.load_panoptic_png(png), segments, png)


def test_coco_rgb_id_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 16777215, 1797]])
    np.testing.assert_array_equal(coco_panoptic.rgb_to_id(coco_panoptic.id_to_rgb(ids)), ids)
