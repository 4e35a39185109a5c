"""The run report: figures and page built from real stage outputs (evaluate, training logs, pseudo-label
statistics) of a tiny run, opened in headless Chromium as a person would."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from _browser_harness import Browser
from _infer_fixtures import PointwiseNet
from _video_fixtures import synth_vspw
from stcl.cli import main
from stcl.data.vspw import frame_path, list_frames, load_train_ids, mask_path, read_split
from stcl.infer.io import save_label_png
from stcl.metrics.consistency import ConsistencyCounter
from stcl.report.qualitative import FlickerTracker
from stcl.roles import TRAIN_ADE, TRAIN_STCL

STAGES = (TRAIN_STCL, TRAIN_ADE)  # two stages' curves


def test_flicker_marks_exactly_the_pixels_vc_does_not_count():
    rng = np.random.default_rng(0)
    frames = 30
    gts = [rng.integers(0, 2, (6, 7)).astype(np.uint8) for _ in range(frames)]
    for t in range(1, frames):  # mostly stable GT so that windows are GT-consistent
        keep = rng.random((6, 7)) < 0.95
        gts[t] = np.where(keep, gts[t - 1], gts[t])
    preds = [np.where(rng.random((6, 7)) < 0.97, g, 3).astype(np.uint8) for g in gts]
    counter, tracker = ConsistencyCounter([8]), FlickerTracker(8)
    flicker_counts, consistent_counts = [], []
    for g, p in zip(gts, preds):
        counter.add(g, p)
        mask, consistent = tracker.add(g, p)
        if mask is not None:
            flicker_counts.append(int(mask.sum()))
            consistent_counts.append(consistent)
    counted, consistent = counter.windows(8)  # official windows: the last full one is skipped
    assert len(counted) == frames - 8 == len(flicker_counts) - 1
    assert consistent.tolist() == consistent_counts[:-1]
    assert (consistent - counted).tolist() == flicker_counts[:-1]
    assert sum(flicker_counts) > 0


def _corrupt(gt: np.ndarray, t: int, rate: float, seed: int) -> np.ndarray:
    """Train-id prediction: the GT (void → 0) with a flickering block on odd frames and random errors."""
    pred = np.where(gt == 255, 0, gt).astype(np.uint8)
    rng = np.random.default_rng(seed * 1000 + t)
    wrong = rng.random(gt.shape) < rate
    pred[wrong] = (pred[wrong] + 1) % 5
    if t % 2:
        pred[:12, :16] = 4
    return pred


@pytest.fixture(scope="module")
def run_dir(module_tmp) -> Path:
    """Outputs of the stages the report reads: metrics of two models, training curves, pseudo-label stats."""
    from stcl.data.classes import VSPW_CLASSES
    from stcl.infer.multiscale import TTA
    from stcl.infer.pseudo_labels import Teacher, gather, run_shard
    from stcl.infer.sliding import Window
    from stcl.params import Params
    from stcl.train.logging import TrainLogger

    tmp = module_tmp("run")
    root = synth_vspw(tmp / "VSPW_480p", frames=20, val=3)
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(Params().model_dump(mode="json")))
    for model, rate in (("ensemble", 0.02), ("train_stcl", 0.1)):
        for video in read_split(root, "val"):
            for t, stem in enumerate(list_frames(root, video)):
                gt = load_train_ids(mask_path(root, video, stem))
                save_label_png(tmp / "pred" / model / video / f"{stem}.png", _corrupt(gt, t, rate, len(model)))
        assert main(["evaluate", "--gt-root", str(root), "--pred-root", str(tmp / "pred" / model), "--split", "val",
                     "--out", str(tmp / "metrics" / f"{model}.json"), "--details", str(tmp / "evaluate" / f"{model}.json"),
                     "--params", str(params), "--workers", "1"]) == 0
    for i, stage in enumerate(STAGES):
        logger = TrainLogger(tmp / "models" / stage, enabled=True, total_iters=40, start_iter=0, desc=stage)
        for it in range(4, 41, 4):
            ce = 2.0 / (1 + it / 10) + i
            logger.log(it, {"loss": ce * 1.5, "ce": ce, "aux": ce / 2, "lr": 0.01 * (1 - it / 40)})
        logger.close()
    frames = {v: list_frames(root, v) for v in read_split(root, "test")}
    teacher = Teacher({"t": PointwiseNet(num_classes=124, gain=6.0).eval()}, (1.0,))
    tta = TTA(scales=(1.0,), flip=False, window=Window((32, 32), (32, 32)))
    run_shard(teacher, tta, frames, 0, 1, frame_path=lambda v, s: frame_path(root, v, s), out_root=tmp / "pseudo",
              record=tmp / "shards" / "0-of-1.json", threshold=0.5, progress=False, workers=0)
    gather(frames, [tmp / "shards" / "0-of-1.json"], out_root=tmp / "pseudo", stats_path=tmp / "pseudo_stats.json",
           class_names=VSPW_CLASSES)
    out = tmp / "report"
    args = ["report", "--out-dir", str(out), "--metrics-dir", str(tmp / "evaluate"),
            *[a for s in STAGES for a in ("--train-log", f"{s}={tmp / 'models' / s / 'dvclive'}")],
            "--gt-root", str(root), "--split", "val", "--pred-root", str(tmp / "pred" / "ensemble"),
            "--pred-model", "ensemble", "--pseudo-stats", str(tmp / "pseudo_stats.json"), "--max-videos", "2"]
    assert main(args) == 0
    return tmp


def test_report_files_hold_the_figures_and_the_numbers_of_the_run(run_dir):
    from stcl.metrics.consistency import pooled_vc
    from stcl.metrics.evaluate import evaluate_video_files

    out = run_dir / "report"
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    videos = read_split(run_dir / "VSPW_480p", "val")
    expected = {f"curves/{s}.png" for s in STAGES} | {"per_class_iou.png", "vc_per_video.png", "pseudo_labels.png"}
    expected |= {f"qualitative/{v}.{k}" for v in videos[:2] for k in ("strip.png", "anim.gif", "flicker.png")}
    assert set(sources) == expected
    for src in sources:
        with Image.open(out / src) as img:
            img.verify()
    with Image.open(out / "qualitative" / f"{videos[0]}.anim.gif") as gif:
        assert gif.n_frames == 20
        assert gif.size == (5 * round(160 * 64 / 48), 160)  # frame | GT | prediction | error | flicker
    page_gif = (out / "qualitative" / f"{videos[0]}.anim.html").read_text()  # for Snakemake's report
    assert "data:image/gif;base64," in page_gif and "http" not in page_gif
    assert not (out / "qualitative" / f"{videos[2]}.strip.png").exists()  # --max-videos 2
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # the VC per video table holds the official per-video figures
    for video in videos:
        stats = evaluate_video_files(run_dir / "VSPW_480p", run_dir / "pred" / "ensemble", video)
        vc8 = 100 * pooled_vc([stats.windows[8]])[0]
        assert f"<td>{video}</td><td>20</td><td>{vc8:.1f}</td>" in page
    headline = json.loads((run_dir / "metrics" / "ensemble.json").read_text())
    assert f"<td>ensemble</td><td>{100 * headline['mIoU']:.1f}</td>" in page


def test_report_stage_without_curves_is_one_clear_line(run_dir, tmp_path, capsys):
    missing = tmp_path / "nothing" / "dvclive"
    code = main(["report", "--out-dir", str(tmp_path / "r"), "--train-log", f"train_stcl={missing}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and str(missing) in err


def test_report_page_in_headless_chromium(run_dir, tmp_path):
    page = run_dir / "report" / "index.html"
    with Browser(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        images = browser.evaluate(
            "Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,"
            " w: i.naturalWidth, h: i.naturalHeight}))"
        )
        cells = browser.evaluate(
            "Array.from(document.querySelectorAll('table')).map(t => Array.from(t.querySelectorAll('tbody tr'))"
            ".map(r => Array.from(r.cells).slice(1).map(c => c.textContent)))"
        )
        shot = browser.screenshot(Path(os.environ.get("STCL_REPORT_SCREENSHOT", tmp_path / "report.png")))
        external = [u for u in browser.requests if not u.startswith(("file://", "data:", "about:"))]
    assert len(images) == 11  # 2 curves, per-class IoU, VC per video, pseudo labels, 3 views x 2 videos
    assert all(i["ok"] for i in images), [i["src"] for i in images if not i["ok"]]
    assert len(cells) == 4  # metrics, per-class IoU, VC per video, pseudo labels
    for table in cells:
        assert table and all(row for row in table)
        values = [c.replace(",", "") for row in table for c in row]
        assert all(v == "–" or re.fullmatch(r"-?\d+(\.\d+)?", v) for v in values), values
        assert any(v != "–" for v in values)
    assert external == []
    with Image.open(shot) as img:
        assert img.size[0] >= 1000 and img.size[1] > 2000  # the whole page, not a blank viewport
        grey = np.asarray(img.convert("L"))
        assert grey.std() > 20  # something drawn


def test_video_views_keep_only_the_rows_they_need(run_dir, tmp_path):
    from stcl.report.qualitative import write_video_views

    root = run_dir / "VSPW_480p"
    video = read_split(root, "val")[1]
    views = write_video_views(root, run_dir / "pred" / "train_stcl", video, tmp_path, max_gif_frames=3, strip_rows=2)
    with Image.open(views.gif) as gif:
        assert gif.n_frames == 3
    assert len(views.flicker_fraction) == 20 - 8 + 1
    # odd frames flicker in the top-left block, so every window holds flickering GT-consistent pixels
    assert all(0 < f < 1 for f in views.flicker_fraction)
    with Image.open(views.strip) as strip, Image.open(views.flicker) as flicker:
        assert strip.size[1] < flicker.size[1]  # two strip rows; curve + three windows
