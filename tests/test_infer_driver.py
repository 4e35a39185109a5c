"""The three writers (predictions, pseudo labels, `stcl predict`) share the one video driver's behaviour:
stale temporaries removed, the hold point once a video is in place, complete videos skipped without a
model run, and nothing half-written when a model fails mid-video."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _data_fixtures import write_vspw_root
from _infer_fixtures import PointwiseNet
from PIL import Image

from stcl.data import vspw
from stcl.hold import ENV as HOLD_ENV
from stcl.infer import driver
from stcl.infer import pseudo_labels as pl
from stcl.infer.multiscale import TTA
from stcl.infer.outputs import OutputSpec, predict_outputs
from stcl.infer.sliding import Window
from stcl.infer.video import open_source, predict_video

VIDEOS = {"v1": (2, 20, 28), "v2": (1, 16, 24)}
TTA_SMALL = TTA(scales=(1.0,), flip=False, window=Window((16, 16), (12, 12)), batch_size=8)


class Counting:
    """A predictor that counts its calls and fails on the call ``fail_at`` (1-based) when set."""

    def __init__(self) -> None:
        self.model = PointwiseNet(num_classes=124, seed=0).eval()
        self.calls = 0
        self.fail_at: int | None = None

    def __call__(self, x):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("model failed")
        return self.model(x)


@dataclass
class Case:
    """One writer on a small input: ``run()`` → (computed, skipped) videos; the folder a video's files go to
    and the parent folder holding it (where killed runs leave temporaries)."""

    stage: str
    videos: list[str]
    run: Callable[[], tuple[list[str], list[str]]]
    folder: Callable[[str], Path]
    parent: Path


def _infer(tmp: Path, model: Counting) -> Case:
    root = write_vspw_root(tmp / "VSPW", VIDEOS, split="val")
    out = tmp / "pred" / "m"

    def run():
        s = predict_outputs({"m": model}, [OutputSpec("m", ("m",), out)], TTA_SMALL, root, list(VIDEOS), progress=False)
        return s.computed, s.skipped

    return Case("infer", list(VIDEOS), run, lambda v: out / v, out)


def _pseudo(tmp: Path, model: Counting) -> Case:
    root = write_vspw_root(tmp / "VSPW", VIDEOS, split="val")
    frames = {v: vspw.list_frames(root, v) for v in VIDEOS}
    data = tmp / "pseudo" / "data"

    def run():
        r = pl.run_shard(pl.Teacher({"m": model}, (1.0,)), TTA_SMALL, frames, 0, 1,
                         frame_path=lambda v, s: vspw.frame_path(root, v, s), out_root=data.parent,
                         record=tmp / "record.json", threshold=0.5, progress=False)
        return r.computed, r.skipped

    return Case("pseudo_label", list(VIDEOS), run, lambda v: data / v, data)


def _predict(tmp: Path, model: Counting) -> Case:
    frames = tmp / "clip"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(frames / f"{k:03d}.png")
    info = open_source(frames)
    out = tmp / "out"

    def run():
        r = predict_video({"m": model}, [1.0], TTA_SMALL, info, out, render=lambda image, label: image,
                          overlay_size=(20, 28), options={}, progress=False)
        return ([], [info.path.name]) if r.skipped else ([info.path.name], [])

    return Case("predict", [info.path.name], run, lambda v: out / "labels", out)


CASES = {"infer": _infer, "pseudo_label": _pseudo, "predict": _predict}


@pytest.mark.parametrize("kind", CASES)
def test_each_writer_cleans_holds_and_skips_through_the_driver(tmp_path, monkeypatch, kind):
    model = Counting()
    case = CASES[kind](tmp_path, model)
    case.parent.mkdir(parents=True, exist_ok=True)
    stale = case.parent / f".{case.videos[0]}.deadbeef.tmp"  # a killed run's temporary
    stale.mkdir()
    (stale / "x.png").write_bytes(b"half")
    first = case.videos[0]
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    monkeypatch.setenv(HOLD_ENV, f"{case.stage}.video_done.{first}={fifo}")
    seen: dict[str, object] = {}
    finished = threading.Event()

    def release() -> None:  # opening for writing waits until the run reads the pipe: the hold point
        with open(fifo, "wb"):
            seen["held"] = not finished.is_set()
            seen["in_place"] = case.folder(first).is_dir() and any(case.folder(first).rglob("*.png"))
            seen["stale"] = stale.exists()

    writer = threading.Thread(target=release)
    writer.start()
    computed, skipped = case.run()
    finished.set()
    if writer.is_alive():  # the run never held: let the writer go so the assertion below fails, not hangs
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join()
    assert seen == {"held": True, "in_place": True, "stale": False}  # held with the video in place, temporaries gone
    assert (computed, skipped) == (case.videos, [])
    monkeypatch.delenv(HOLD_ENV)
    calls = model.calls
    assert case.run() == ([], case.videos)  # complete: skipped, no model run
    assert model.calls == calls


@pytest.mark.parametrize("kind", ["infer", "pseudo_label"])
def test_a_failure_mid_video_leaves_no_folder_and_the_rerun_does_it(tmp_path, kind):
    model = Counting()
    model.fail_at = 2  # v1 has two frames of one size in one group; v2 is the second model call
    case = CASES[kind](tmp_path, model)
    with pytest.raises(RuntimeError, match="model failed"):
        case.run()
    assert case.folder("v1").is_dir() and not case.folder("v2").exists()
    assert not [p for p in case.parent.iterdir() if p.name.endswith(".tmp")]
    model.fail_at = None
    assert case.run() == (["v2"], ["v1"])


def test_predict_resumes_frame_by_frame(tmp_path):
    model = Counting()
    case = _predict(tmp_path, model)
    case.run()
    labels = case.folder(case.videos[0])
    first = {p.name: p.read_bytes() for p in labels.glob("*.png")}
    (labels / "00000001.png").unlink()
    (labels.parent / "overlay.mp4").unlink()
    calls = model.calls
    assert case.run() == (case.videos, [])
    assert model.calls == calls + 1  # only the missing frame
    assert {p.name: p.read_bytes() for p in labels.glob("*.png")} == first


def test_shard_count_must_match_the_params_in_one_place():
    assert driver.select_shard(None, 4, "infer.shards") == (0, 1)
    assert driver.select_shard("1/4", 4, "infer.shards") == (1, 4)
    with pytest.raises(ValueError, match=r"--shard 1/3: N must equal pseudo_label.shards = 4"):
        driver.select_shard("1/3", 4, "pseudo_label.shards")
    with pytest.raises(ValueError, match=r"--record: 2 records given, infer.shards = 3"):
        driver.check_record_count(["a", "b"], 3, "infer.shards")


def test_one_driver_loop_and_one_place_for_the_pseudo_label_tta():
    """grep src/: only the driver runs the frame loop, and in infer/ only the driver draws a progress bar,
    holds, builds atomic folders, removes temporaries, decodes ahead, selects shards and writes their
    records; only `pseudo_label_tta` reads the pseudo labels' scales and flip."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "stcl"
    loops, bars, tta = [], [], []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(src))
        if re.search(r"(?<!def )\bframe_probs\(", text) and rel != "infer/driver.py":
            loops.append(rel)
        owned = r"(?<!def )\b(tqdm|hold|atomic_dir|remove_stale_tmp|prefetch|shard_videos|write_record)\("
        if rel.startswith("infer/") and re.search(owned, text) and rel != "infer/driver.py":
            bars.append(rel)
        if re.search(r"pseudo_label\.(scales|flip)\b", text) and rel != "infer/multiscale.py":
            tta.append(rel)
    assert loops == [], f"frame loops outside the driver: {loops}"
    assert bars == [], f"the driver's work done outside the driver: {bars}"
    assert tta == [], f"pseudo-label TTA chosen outside pseudo_label_tta: {tta}"
