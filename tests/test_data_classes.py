"""Class tables and the COCO/ADE → VSPW mapping CSVs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from stcl.data import classes
from stcl.data.classes import ADE_CLASSES, COCO_CLASSES, VSPW_CLASSES, resource_path


def test_vspw_classes_in_id_order():
    assert len(VSPW_CLASSES) == 124
    assert VSPW_CLASSES[0] == "wall" and VSPW_CLASSES[-1] == "train"
    raw = json.loads(resource_path("vspw_label_num_dic_final.json").read_text())
    for i, name in enumerate(VSPW_CLASSES):
        assert int(raw[name]) == i + 1


def test_coco_and_ade_class_counts():
    assert len(COCO_CLASSES) == 133 and sum(classes.COCO_ISTHING) == 80
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[-1] == "rug-merged"
    assert len(ADE_CLASSES) == 150 and ADE_CLASSES[0] == "wall" and ADE_CLASSES[-1] == "flag"


@pytest.mark.parametrize(
    "table, id_col, name_col, sources",
    [
        ("ade20k_to_vspw.csv", "ade_id", "ade_name", "ade20k_classes.json"),
        ("coco_to_vspw.csv", "coco_id", "coco_name", "coco_panoptic_categories.json"),
    ],
)
def test_mapping_table_rows_and_targets(table, id_col, name_col, sources):
    with open(resource_path(table), newline="") as f:
        rows = list(csv.DictReader(f))
    source = json.loads(resource_path(sources).read_text())
    # one row per source class, same id and name, in source order
    assert [(int(r[id_col]), r[name_col]) for r in rows] == [(int(c["id"]), c["name"]) for c in source]
    targets = {r["vspw_name"] for r in rows if r["vspw_name"]}
    assert targets <= set(VSPW_CLASSES), targets - set(VSPW_CLASSES)
    assert len(targets) > 40  # the tables are actually filled in


def test_luts_map_names_and_ignore():
    ade, coco = classes.ade_to_vspw_lut(), classes.coco_to_vspw_lut()
    for lut in (ade, coco):
        assert lut.shape == (256,) and lut.dtype == np.uint8 and lut[255] == 255
        assert set(lut[lut != 255].tolist()) <= set(range(124))
    v = VSPW_CLASSES.index
    assert ade[ADE_CLASSES.index("sky")] == v("sky")
    assert ade[ADE_CLASSES.index("person")] == v("person")
    assert ade[ADE_CLASSES.index("base")] == 255  # unmapped
    assert ade[150] == 255  # outside the ADE train ids
    assert coco[COCO_CLASSES.index("sky-other-merged")] == v("sky")
    assert coco[COCO_CLASSES.index("wall-brick")] == v("wall")
    assert coco[COCO_CLASSES.index("fork")] == 255
    ade[0] = 7  # callers get a copy
    assert classes.ade_to_vspw_lut()[0] == v("wall")


def test_bad_mapping_target_names_the_file(tmp_path):
    bad = tmp_path / "map.csv"
    bad.write_text("ade_id,ade_name,vspw_name\n1,wall,wal\n")
    with pytest.raises(ValueError, match=r"map\.csv:2: target 'wal' is not a VSPW class"):
        classes.read_mapping_table(bad, "ade_id", "ade_name")
    bad.write_text("id,name\n1,wall\n")
    with pytest.raises(ValueError, match="map.csv: header"):
        classes.read_mapping_table(bad, "ade_id", "ade_name")


def test_class_names_rejects_unknown_space():
    assert classes.class_names("coco") is COCO_CLASSES
    with pytest.raises(ValueError, match="label_space"):
        classes.class_names("cityscapes")
