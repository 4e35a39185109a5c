"""STCL anchors and positives per training clip, for each ``model.projection_input``.

STCL takes its labels at the projection's resolution (nearest resize, `stcl.losses.stcl`): an anchor is a
valid query pixel with at least one positive (a valid pixel of its class among the clip's other query and
reference pixels); it adds to the loss only if it also has a negative (a valid pixel of another class).
This counts them over the training clips the stage reads (VSPW train, the params'
augmentation, epochs 0..N-1), with the feature size read from the real segmentor's projection output
(meta device): the encoder's last stage (``backbone_last``, stride 32) against the decoder's fused map
(``fpn_bottleneck``, stride 4). Prints one JSON line per projection input.

    .venv/bin/python benchmarks/stcl_anchors.py                        # tiny default params, embedded data
    .venv/bin/python benchmarks/stcl_anchors.py --params params.yaml --vspw data/VSPW_480p --epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def feature_size(params, projection_input: str) -> tuple[int, int]:
    """(h, w) of the projection output of one crop, from the real model on the meta device."""
    import torch

    from stcl.models import build_segmentor

    model = params.model.model_copy(update={"projection_input": projection_input, "pretrained": None})
    net = build_segmentor(model, 124, proj_dim=8, device="meta", load_pretrained=False).train()
    out = net(torch.zeros((2, 2, 3, *params.augment.crop_size), device="meta"))
    return tuple(out.proj.shape[-2:])


def clip_counts(labels, size: tuple[int, int], ignore_index: int = 255) -> tuple[int, int, int, int]:
    """labels (T,H,W), query first → (anchors, positives summed over anchors, keys, anchors that also have a
    negative) at feature size. An anchor without a negative adds 0 to the loss and no gradient."""
    import torch

    from stcl.losses.stcl import _resize_labels

    small = _resize_labels(labels.long(), size).reshape(labels.shape[0], -1)
    valid = small != ignore_index
    keys = small[valid]
    counts = torch.bincount(keys, minlength=256)
    q = small[0][valid[0]]
    pos = counts[q] - 1
    informative = (pos > 0) & (counts[q] < len(keys))
    return int((pos > 0).sum()), int(pos[pos > 0].sum()), int(valid.sum()), int(informative.sum())


def measure(params, vspw: Path, epochs: int) -> list[dict]:
    from stcl.data.clips import DataPaths, build_dataset

    ds = build_dataset("vspw", params, DataPaths(vspw=vspw), "train", seed=params.train_stcl.seed)
    rows = []
    for projection_input in ("backbone_last", "fpn_bottleneck"):
        size = feature_size(params, projection_input)
        anchors, positives, keys, informative = [], [], [], []
        for epoch in range(epochs):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                a, p, k, n = clip_counts(ds[i]["label"], size)
                informative.append(n)
                anchors.append(a)
                positives.append(p)
                keys.append(k)
        rows.append(
            {
                "projection_input": projection_input,
                "feature_size": list(size),
                "frames": ds.frames_per_item,
                "clips": len(anchors),
                "anchors_per_clip_mean": round(statistics.mean(anchors), 2),
                "anchors_per_clip_median": statistics.median(anchors),
                "anchors_per_clip_max": max(anchors),
                "clips_without_anchor": round(sum(a == 0 for a in anchors) / len(anchors), 4),
                "anchors_with_a_negative_per_clip_mean": round(statistics.mean(informative), 2),
                "clips_without_an_anchor_with_a_negative": round(sum(n == 0 for n in informative) / len(anchors), 4),
                "positives_per_anchor_mean": round(sum(positives) / max(sum(anchors), 1), 2),
                "keys_per_clip_mean": round(statistics.mean(keys), 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, help="params file (default: the tiny defaults)")
    ap.add_argument("--vspw", type=Path, help="VSPW root (default: the embedded data, written to a temp dir)")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)
    from stcl.params import Params, load_params

    params = load_params(args.params) if args.params else Params()
    with tempfile.TemporaryDirectory(prefix="stcl_anchors_") as tmp:
        vspw = args.vspw
        if vspw is None:
            from stcl.data.synthetic import write_all

            write_all(Path(tmp), params.synth)
            vspw = Path(tmp) / "VSPW_480p"
        for row in measure(params, vspw, args.epochs):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
