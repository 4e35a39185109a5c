"""A tiny VSPW root for TC (frames drifting right, GT masks, predictions moving with them) and a RAFT file made
by the converter's seeded recipe (tests/data/make_raft_reference.py): what `stcl flow` and `evaluate --flows`
tests read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _data_fixtures import DATA, reference_maker

SIZE = (130, 140)  # (H, W): padded to 136×144
VIDEOS = {"vid_a": 3, "vid_b": 4, "vid_c": 2}


def raft_file(path: Path) -> Path:
    """The seeded official-layout RAFT weights (keys prefixed ``module.``) saved to ``path``."""
    maker = reference_maker("make_raft_reference")
    ref = torch.load(DATA / "raft_tc_official_reference.pt", weights_only=True)
    torch.save(maker.seeded_state(ref["shapes"]), path)
    return path


def make_tc_root(root: Path) -> tuple[Path, Path, Path]:
    """(VSPW root, prediction root, RAFT file) under ``root``; videos `VIDEOS` of size `SIZE` in val.txt."""
    raft = raft_file(root / "raft-things.pth")
    vspw, preds = root / "VSPW", root / "pred"
    rng = np.random.default_rng(0)
    h, w = SIZE
    for v, length in VIDEOS.items():
        texture = rng.integers(0, 256, (h // 4 + 2, (w + 4 * length) // 4 + 2, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(texture).resize((texture.shape[1] * 4, texture.shape[0] * 4), Image.BICUBIC))
        blocks = rng.integers(0, 6, (h // 26 + 1, (w + 4 * length) // 20 + 1), dtype=np.uint8)
        labels = np.kron(blocks, np.ones((26, 20), np.uint8))
        for t in range(length):
            stem = f"{t:08d}"
            (vspw / "data" / v / "origin").mkdir(parents=True, exist_ok=True)
            (vspw / "data" / v / "mask").mkdir(parents=True, exist_ok=True)
            Image.fromarray(big[:h, 4 * t : 4 * t + w]).save(vspw / "data" / v / "origin" / f"{stem}.jpg", quality=95)
            label = labels[:h, 4 * t : 4 * t + w]
            Image.fromarray(label + 1).save(vspw / "data" / v / "mask" / f"{stem}.png")
            (preds / v).mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(preds / v / f"{stem}.png")
    (vspw / "val.txt").write_text("\n".join(VIDEOS) + "\n")
    return vspw, preds, raft
