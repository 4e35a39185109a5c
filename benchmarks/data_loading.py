"""Clips per second through the full training data path at paper scale.

Writes a temporary VSPW-layout dataset of real JPEG frames and palette-PNG masks at 854×480, then times
`VSPWClipDataset` (query + 3 reference frames, offsets -9/-6/-3 as the paper preset) with `ClipTransform` (RandomResize ratio
0.5–2.0 → RandomCrop 768² with cat_max_ratio 0.75 → flip → photometric distortion → pad):

* per worker process: ``dataset[i]`` in this process, with the time split into decoding and transform;
* with N DataLoader workers: clips/s of a ``DataLoader(batch_size=2, num_workers=N)`` after warm-up;
* what one GPU consumes: clips per GPU per step / the step time `stcl plan` projects for train_stcl of the
  paper preset on ``--gpu`` (FLOPs counted on the meta device, table rate × utilisation), and the workers
  per GPU that rate needs at the measured clips/s per worker.

Clips leave the workers as uint8 (images (T, 3, 768, 768) and labels (T, 768, 768)): 9.4 MB per 4-frame
clip instead of 47 MB as float32 images + int64 labels; the train loop converts them on the device.

Usage::

    .venv/bin/python benchmarks/data_loading.py [--clips 40] [--workers 0 1 2] [--videos 2] [--frames 12]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def write_dataset(root: Path, videos: int, frames: int, height: int = 480, width: int = 854) -> None:
    """A VSPW-layout train split of textured moving scenes (real-format JPEG + palette PNG files)."""
    from stcl.data import synthetic, vspw
    from stcl.data.io import save_jpeg, save_png

    styles = synthetic.class_styles(8)
    palette = synthetic.vspw_palette()
    names = [f"bench_{i:02d}" for i in range(videos)]
    for i, video in enumerate(names):
        rng = np.random.default_rng(i)
        scene = synthetic.sample_scene(rng, styles, list(range(len(styles))), height, width, frames)
        for t in range(frames):
            rgb, cls, _ = synthetic.render_frame(scene, t, frames, styles, height, width, rng)
            raw = np.where(cls >= 0, np.array([s.vspw_id + 1 for s in styles], np.uint8)[np.maximum(cls, 0)], 0)
            save_jpeg(vspw.frame_path(root, video, f"{t:08d}"), rgb, 90)
            save_png(vspw.mask_path(root, video, f"{t:08d}"), raw.astype(np.uint8), palette=palette)
    (root / "train.txt").write_text("\n".join(names) + "\n")


def time_in_process(dataset, clips: int) -> dict[str, float]:
    """Clips/s of dataset[i] in this process, with decode and transform time per clip (ms)."""
    from stcl.data import vspw
    from stcl.data.clips import _clip_rng

    n = len(dataset)
    start = time.perf_counter()
    for i in range(clips):
        dataset[i % n]
    total = time.perf_counter() - start
    decode = transform = 0.0
    for i in range(clips):
        video, stems = dataset.clip_frames(i % n)
        t0 = time.perf_counter()
        images = [vspw.load_image(vspw.frame_path(dataset.root, video, s)) for s in stems]
        labels = [vspw.load_train_ids(vspw.mask_path(dataset.root, video, s)) for s in stems]
        t1 = time.perf_counter()
        dataset.transform(images, labels, _clip_rng(dataset.seed, dataset.epoch, i))
        t2 = time.perf_counter()
        decode += t1 - t0
        transform += t2 - t1
    return {"clips_per_s": clips / total, "decode_ms": 1e3 * decode / clips, "transform_ms": 1e3 * transform / clips}


def time_loader(dataset, workers: int, clips: int, batch_size: int = 2) -> float:
    """Clips/s through a DataLoader with ``workers`` processes (first batches excluded as warm-up)."""
    import torch
    from torch.utils.data import DataLoader

    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=clips + 4 * batch_size * max(workers, 1))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    it = iter(loader)
    for _ in range(2 * max(workers, 1)):  # warm-up: worker start-up and first prefetch
        next(it)
    seen = 0
    start = time.perf_counter()
    for batch in it:
        seen += batch["img"].shape[0]
        if seen >= clips:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="clips timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--gpu", default="A100-80GB", help="GPU of the consumption figure (stcl plan's table)")
    args = parser.parse_args()

    import torch

    from stcl.data.clips import VSPWClipDataset
    from stcl.data.transforms import ClipTransform
    from stcl.params import AugmentParams

    torch.set_num_threads(1)
    aug = AugmentParams(scale=(854, 480), ratio_range=(0.5, 2.0), crop_size=(768, 768), cat_max_ratio=0.75,
                        flip_prob=0.5, photometric=True)
    with tempfile.TemporaryDirectory(prefix="stcl-bench-") as tmp:
        root = Path(tmp) / "VSPW_480p"
        t0 = time.perf_counter()
        write_dataset(root, args.videos, args.frames)
        print(f"dataset: {args.videos} videos x {args.frames} frames, 854x480 JPEG + PNG "
              f"(written in {time.perf_counter() - t0:.1f} s); cpus: {os.cpu_count()}")
        ds = VSPWClipDataset(root, "train", offsets=(-9, -6, -3), boundary="clamp", transform=ClipTransform(aug), seed=0)
        item = ds[0]
        size = sum(item[k].numel() * item[k].element_size() for k in ("img", "label"))
        print(f"item: img {tuple(item['img'].shape)} {item['img'].dtype}, label {tuple(item['label'].shape)} "
              f"{item['label'].dtype}: {size / 1e6:.1f} MB across the worker boundary")
        rows = []
        r = time_in_process(ds, args.clips)
        rows.append(("1 process (dataset[i])", r["clips_per_s"], f"decode {r['decode_ms']:.0f} ms + transform {r['transform_ms']:.0f} ms per clip"))
        for w in args.workers:
            rows.append((f"DataLoader workers={w}", time_loader(ds, w, args.clips), "batch 2"))
    print(f"\n{'setting':<28} {'clips/s':>8}  notes")
    for name, rate, note in rows:
        print(f"{name:<28} {rate:>8.2f}  {note}")
    need = gpu_consumption(args.gpu)
    per_worker = rows[0][1]
    print(f"\none {args.gpu} at the planned train_stcl step ({need['step_s']:.2f} s for {need['clips']} clips, paper preset) "
          f"consumes {need['clips_per_s']:.2f} clips/s: {need['clips_per_s'] / per_worker:.1f} workers at the measured "
          f"{per_worker:.2f} clips/s per worker (the paper preset has {need['workers']} per GPU)")


def gpu_consumption(gpu_name: str) -> dict:
    """Clips/s one GPU consumes in train_stcl of the paper preset at the step time `stcl plan` projects."""
    from stcl.params import preset_params
    from stcl.plan.gpus import gpu_by_name
    from stcl.plan.work import train_step_work

    params = preset_params("paper")
    stage = params.train_stcl
    step_s = train_step_work(params, stage).flops / gpu_by_name(gpu_name).rate(stage.amp, "train")
    return {"step_s": step_s, "clips": stage.batch_per_device, "clips_per_s": stage.batch_per_device / step_s,
            "workers": stage.workers}


if __name__ == "__main__":
    main()
