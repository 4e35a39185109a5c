"""Speed of `stcl evaluate` against a straightforward per-window implementation and against decoding alone.

Writes synthetic VSPW-format GT masks (palette PNG, raw ids) and predictions (palette PNG, ids 0..123) at
854x480: moving Voronoi regions with void borders for the GT, the same with drifting seeds and a
mislabelled blob for the predictions. Then, with the same number of worker processes (one task per video):

* decode  — only read every GT and prediction PNG (the floor for any evaluator reading files);
* ours    — `stcl.metrics.evaluate_dirs` (bincount confusion, rolling VC_n, one frame in memory);
* naive   — the public scripts' way: a video's frames held in lists, a masked bincount per frame, and VC_n by
            re-comparing the n frames of every window (written here, same definitions), twice: as the public
            VC_perclip.py scripts write the loop (float64 ones, np.logical_and allocating), and tuned (bool
            arrays, in place) so the speed-up is not credited to sloppy numpy alone.

Checks that ours and naive agree and prints wall-clock times (best of --repeats, interleaved) and the
summed CPU seconds of the worker processes (per-video tasks timed with time.process_time inside the
workers; far less sensitive to other load on a shared machine than wall time), with the ratios. Finally
times the `stcl evaluate` command line and reports whether it imported torch.

    timeout 900 .venv/bin/python benchmarks/metrics_speed.py            # 20x60 frames, then 20x70 frames
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stcl.data.io import load_label_png
from stcl.data.vspw import mask_path, read_split
from stcl.metrics import evaluate_dirs
from stcl.metrics.evaluate import evaluate_video_files
from stcl.metrics.io import list_gt_frames, pred_path

PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


# ----------------------------------------------------------------------------------------- synthetic data
def _voronoi(seeds: np.ndarray, labels: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-seed label map at 1/4 resolution upsampled ×4 (blocky but PNG-realistic). → labels, margin."""
    ys, xs = np.mgrid[0 : (h + 3) // 4, 0 : (w + 3) // 4].astype(np.float32) * 4
    d = (ys[None] - seeds[:, 0, None, None]) ** 2 + (xs[None] - seeds[:, 1, None, None]) ** 2
    part = np.partition(d, 1, axis=0)
    lab = labels[np.argmin(d, axis=0)]
    margin = np.sqrt(part[1]) - np.sqrt(part[0])
    up = lambda x: np.repeat(np.repeat(x, 4, 0), 4, 1)[:h, :w]  # noqa: E731
    return up(lab), up(margin)


def _write_png(path: Path, array: np.ndarray) -> None:
    img = Image.fromarray(array, mode="L").convert("P")
    img.putpalette(PALETTE)
    img.save(path)


def _make_video(root: Path, video: str, frames: int, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 9
    seeds = rng.uniform((0, 0), (h, w), size=(k, 2)).astype(np.float32)
    vel = rng.normal(0, 3, size=(k, 2)).astype(np.float32)
    labels = rng.choice(np.arange(0, 125), size=k, replace=False).astype(np.uint8)  # raw ids, 0 = others
    wrong = np.uint8(rng.integers(0, 124))
    (root / "gt" / "data" / video / "mask").mkdir(parents=True, exist_ok=True)
    (root / "pred" / video).mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        pos = seeds + vel * t
        gt, margin = _voronoi(pos, labels, h, w)
        gt = gt.copy()
        gt[margin < 3] = 255  # void borders
        jitter = rng.normal(0, 4, size=(k, 2)).astype(np.float32)
        pred, _ = _voronoi(pos + jitter, labels, h, w)
        pred = np.where(pred == 0, 0, pred - 1).astype(np.uint8)  # raw → train ids (others → 0: a class)
        cy, cx = int(pos[0, 0]) % h, int(pos[0, 1]) % w
        pred[max(0, cy - 30) : cy + 30, max(0, cx - 40) : cx + 40] = wrong
        stem = f"{t * 15:08d}"
        _write_png(root / "gt" / "data" / video / "mask" / f"{stem}.png", gt)
        _write_png(root / "pred" / video / f"{stem}.png", pred)


def make_dataset(root: Path, videos: int, frames: int, h: int, w: int, workers: int) -> None:
    names = [f"video_{i:03d}" for i in range(videos)]
    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "gt" / "val.txt").write_text("\n".join(names) + "\n")
    with cf.ProcessPoolExecutor(workers) as pool:
        list(
            pool.map(_make_video, [root] * videos, names, [frames] * videos, [h] * videos, [w] * videos, range(videos))
        )


# ----------------------------------------------------------------------------------------- baselines
def _decode_video(gt_root: Path, pred_root: Path, video: str) -> int:
    n = 0
    for frame in list_gt_frames(gt_root, video):
        load_label_png(mask_path(gt_root, video, frame))
        load_label_png(pred_path(pred_root, video, frame))
        n += 1
    return n


def _window_scores_public(gts: list, preds: list, n: int) -> list[float]:
    """Per-window VC as the public VC_perclip.py scripts write it: float64 ones, a new array per step."""
    h, w = gts[0].shape
    accs = []
    for i in range(len(gts) - n):
        gt_same = np.ones((h, w))
        pred_same = np.ones((h, w))
        for j in range(1, n):
            gt_same = np.logical_and(gt_same, gts[i] == gts[i + j])
            pred_same = np.logical_and(pred_same, preds[i] == preds[i + j])
        both = pred_same * gt_same
        with np.errstate(invalid="ignore", divide="ignore"):
            accs.append(both.sum() / gt_same.sum())
    return accs


def _window_scores_tuned(gts: list, preds: list, n: int) -> list[float]:
    """The same per-window loop, tuned: bool arrays updated in place, count_nonzero."""
    accs = []
    for i in range(len(gts) - n):
        gt_same = gts[i] == gts[i + 1]
        pred_same = preds[i] == preds[i + 1]
        for j in range(2, n):
            gt_same &= gts[i] == gts[i + j]
            pred_same &= preds[i] == preds[i + j]
        pred_same &= gt_same
        with np.errstate(invalid="ignore", divide="ignore"):
            accs.append(np.float64(np.count_nonzero(pred_same)) / np.count_nonzero(gt_same))
    return accs


def _naive_video(gt_root: Path, pred_root: Path, video: str, style: str, num_class: int = 124, lengths=(8, 16)):
    """Per-window implementation in the style of the public scripts: lists of frames, n−1 compares per window."""
    gts, preds = [], []
    confusion = np.zeros((num_class, num_class), dtype=np.int64)
    for frame in list_gt_frames(gt_root, video):
        raw = load_label_png(mask_path(gt_root, video, frame)).copy()
        raw[raw == 0] = 255
        gt = raw - 1
        gt[gt == 254] = 255
        pred = load_label_png(pred_path(pred_root, video, frame))
        mask = gt < num_class
        confusion += np.bincount(num_class * gt[mask].astype(int) + pred[mask], minlength=num_class**2).reshape(
            num_class, num_class
        )
        gts.append(gt)
        preds.append(pred)
    windows = _window_scores_public if style == "public" else _window_scores_tuned
    accs = {n: (windows(gts, preds, n) if len(gts) > n else []) for n in lengths}
    return confusion, accs


def _cpu_task(kind: str, gt_root: Path, pred_root: Path, video: str):
    """Run one video's task in a worker; return (CPU seconds of this worker for it, result)."""
    start = time.process_time()
    if kind == "decode":
        result = _decode_video(gt_root, pred_root, video)
    elif kind == "ours":
        result = evaluate_video_files(gt_root, pred_root, video)
    else:
        result = _naive_video(gt_root, pred_root, video, kind)
    return time.process_time() - start, result


def run_tasks(kind: str, gt_root: Path, pred_root: Path, workers: int) -> tuple[float, list]:
    """One task per video over ``workers`` processes. Returns (summed worker CPU seconds, results)."""
    names = read_split(gt_root, "val")
    k = len(names)
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        out = list(pool.map(_cpu_task, [kind] * k, [gt_root] * k, [pred_root] * k, names))
    return sum(t for t, _ in out), [r for _, r in out]


def naive_metrics(results: list) -> dict[str, float]:
    cm = sum(r[0] for r in results).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.diag(cm) / (cm.sum(1) + cm.sum(0) - np.diag(cm))
    present = cm.sum(1) > 0
    freq = cm.sum(1) / cm.sum()
    out = {"mIoU": float(np.nansum(iou * present) / present.sum()), "WIoU": float((freq[present] * iou[present]).sum())}
    for n in (8, 16):
        out[f"VC{n}"] = float(np.nanmean([a for r in results for a in r[1][n]]))
    return out


# ----------------------------------------------------------------------------------------- main
def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def run_case(root: Path, videos: int, frames: int, h: int, w: int, workers: int, repeats: int) -> None:
    print(f"\n== {videos} videos x {frames} frames, {w}x{h}, {workers} worker processes ==", flush=True)
    t_gen, _ = _timed(make_dataset, root, videos, frames, h, w, workers)
    size = sum(f.stat().st_size for f in root.rglob("*.png")) / 2**20
    print(f"wrote {2 * videos * frames} PNGs ({size:.0f} MiB) in {t_gen:.1f} s", flush=True)
    gt_root, pred_root = root / "gt", root / "pred"
    wall: dict[str, list[float]] = {"decode": [], "ours": [], "ours_api": []}
    cpu: dict[str, list[float]] = {"decode": [], "ours": []}
    for _ in range(repeats):  # interleaved, so all see the same machine load
        for kind in ("decode", "ours"):
            t, (c, _) = _timed(run_tasks, kind, gt_root, pred_root, workers)
            wall[kind].append(t)
            cpu[kind].append(c)
        t, result = _timed(evaluate_dirs, gt_root, pred_root, "val", 124, (8, 16), workers)
        wall["ours_api"].append(t)
    best = {k: min(v) for k, v in wall.items()}
    best_cpu = {k: min(v) for k, v in cpu.items()}
    refs = {}
    for style in ("public", "tuned"):
        t, (c, results) = _timed(run_tasks, style, gt_root, pred_root, workers)
        best[style], best_cpu[style], refs[style] = t, c, naive_metrics(results)
    got = {"mIoU": result.mIoU, "WIoU": result.WIoU, "VC8": result.vc[8], "VC16": result.vc[16]}
    agree = all(abs(got[k] - r[k]) < 1e-12 for r in refs.values() for k in r)
    print("metrics  ours  " + "  ".join(f"{k} {v:.6f}" for k, v in got.items()))
    print("metrics  naive " + "  ".join(f"{k} {v:.6f}" for k, v in refs["public"].items()) + f"   agree: {agree}")
    nframes = videos * frames
    print(f"{'':28s} {'wall s':>8s} {'ms/frame':>9s} {'worker CPU s':>13s} {'CPU ms/frame':>13s}")
    rows = [
        ("decode-only", "decode"),
        ("ours (evaluate_dirs)", "ours_api"),
        ("ours (same task harness)", "ours"),
        ("naive, public style", "public"),
        ("naive, tuned numpy", "tuned"),
    ]
    for label, key in rows:
        c = best_cpu.get(key)
        cpu_txt = f"{c:13.2f} {1000 * c / nframes:13.2f}" if c is not None else f"{'':13s} {'':13s}"
        print(f"{label:28s} {best[key]:8.2f} {1000 * best[key] / nframes:9.2f} {cpu_txt}")
    print(
        f"ours / decode-only : wall {best['ours_api'] / best['decode']:.2f}x   CPU {best_cpu['ours'] / best_cpu['decode']:.2f}x   (target <= 1.5x)"
    )
    for style in ("public", "tuned"):
        print(
            f"naive {style:6s} / ours : wall {best[style] / best['ours_api']:.2f}x   CPU {best_cpu[style] / best_cpu['ours']:.2f}x   (target >= 5x)"
        )
    if not agree:
        raise SystemExit("ours and the per-window implementations disagree")


def frame_breakdown(root: Path, repeats: int = 5) -> None:
    """In-process CPU ms per frame of each step on one video (min over repeats; frames decoded once)."""
    from stcl.metrics.confusion import FrameCounter, gt_codes_from_raw
    from stcl.metrics.consistency import ConsistencyCounter

    gt_root, pred_root = root / "gt", root / "pred"
    video = read_split(gt_root, "val")[0]
    frames = list_gt_frames(gt_root, video)
    files = [(mask_path(gt_root, video, f), pred_path(pred_root, video, f)) for f in frames]
    raws = [(load_label_png(g), load_label_png(p)) for g, p in files]
    pairs = [(gt_codes_from_raw(r), p) for r, p in raws]

    def decode():
        for g, p in files:
            load_label_png(g), load_label_png(p)

    def codes():
        for r, _ in raws:
            gt_codes_from_raw(r)

    def confusion():
        counter = FrameCounter(124)
        for c, p in pairs:
            counter.add(c, p)

    def consistency():
        counter = ConsistencyCounter((8, 16))
        for c, p in pairs:
            counter.add(c, p, copy=False)

    def cpu_ms(fn):
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        return 1000 * best / len(frames)

    t = {
        name: cpu_ms(fn)
        for name, fn in (
            ("decode GT+pred PNG", decode),
            ("raw -> train ids", codes),
            ("confusion", confusion),
            ("VC8+VC16", consistency),
        )
    }
    extra = t["raw -> train ids"] + t["confusion"] + t["VC8+VC16"]
    print(
        f"\nper-frame CPU, one process, {video} ({len(frames)} frames): "
        + "  ".join(f"{k} {v:.3f} ms" for k, v in t.items())
        + f"\n  → decode + our work = {(t['decode GT+pred PNG'] + extra) / t['decode GT+pred PNG']:.2f}x decode alone"
    )


def time_cli(root: Path, workers: int) -> None:
    out, details = root / "cli.json", root / "cli_details.json"
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "stcl",
        "evaluate",
        "--gt-root",
        str(root / "gt"),
        "--pred-root",
        str(root / "pred"),
        "--out",
        str(out),
        "--details",
        str(details),
        "--workers",
        str(workers),
        "--params",
        str(Path(__file__).resolve().parents[1] / "params.yaml"),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    torch_lines = [ln for ln in proc.stderr.splitlines() if "import time:" in ln and ln.rstrip().endswith("torch")]
    inner = json.loads(details.read_text())["seconds"]
    print(
        f"\n`stcl evaluate` command line: {wall:.2f} s wall, {inner:.2f} s evaluating, "
        f"{wall - inner:.2f} s start-up; imported torch: {bool(torch_lines)}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--frames", type=int, nargs="+", default=[60, 70], help="frames per video, one case each")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="best of N for decode-only and ours")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary folder, removed)")
    args = p.parse_args()
    print(
        f"cpus: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}  python {sys.version.split()[0]}  numpy {np.__version__}"
    )
    print("(on a shared machine the load above inflates wall times; worker CPU seconds are steadier)")
    base = args.dir or Path(tempfile.mkdtemp(prefix="stcl-metrics-bench-"))
    try:
        for frames in args.frames:
            root = base / f"{args.videos}x{frames}"
            shutil.rmtree(root, ignore_errors=True)
            run_case(root, args.videos, frames, args.height, args.width, args.workers, args.repeats)
        frame_breakdown(root)
        time_cli(root, args.workers)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
