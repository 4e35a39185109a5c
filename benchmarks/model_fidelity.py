"""Max |Δ| of our encoders + UperNet against the reference code, per model and input size, and parameter counts.

References: mmsegmentation 1.2.2's own models built from the configs in its wheel (Swin-T, Swin-L, UperNet-R50,
ResNeSt-101; installed by `workflow/setup.sh --tests`) with seeded random weights converted to our layout and loaded
strictly; CSWin against the fixture generated from the official segmentation backbone
(tests/data/make_cswin_reference.py). Float32 on the CPU; Swin-L needs about 4 GB of memory.

Usage::

    .venv/bin/python benchmarks/model_fidelity.py [--models swin_t r50 cswin swin_l resnest101]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _mmseg_fixtures import build_mmseg, max_diffs, mmseg_outputs, ours_outputs  # noqa: E402

from stcl.models import build_segmentor, convert_mmseg_checkpoint  # noqa: E402
from stcl.models.loading import strict_load  # noqa: E402
from stcl.params import ModelParams  # noqa: E402

MMSEG = {
    "swin_t": (
        "swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py",
        "swin_tiny_patch4_window7_224",
        {},
        [(224, 224), (128, 128), (200, 328)],
    ),
    "r50": ("upernet/upernet_r50_4xb4-80k_ade20k-512x512.py", "resnet50", {}, [(224, 224), (128, 128), (200, 328)]),
    "swin_l": (
        "swin/swin-large-patch4-window12-in22k-384x384-pre_upernet_8xb2-160k_ade20k-512x512.py",
        "swin_large_patch4_window12_384",
        {},
        [(384, 384), (128, 128), (200, 328)],
    ),
    "resnest101": (
        "upernet/upernet_r50_4xb4-80k_ade20k-512x512.py",
        "resnest101e",
        dict(type="ResNeSt", depth=101, stem_channels=128, radix=2, reduction_factor=4, avg_down_stride=True),
        [(224, 224), (200, 328)],
    ),
}


def run_mmseg(key: str) -> None:
    cfg, backbone, overrides, sizes = MMSEG[key]
    t0 = time.perf_counter()
    mm = build_mmseg(cfg, num_classes=150, **overrides)
    ours = build_segmentor(ModelParams(backbone=backbone, channels=512, aux_channels=256), 150).eval()
    window = getattr(ours.backbone, "window_size", None)
    strict_load(ours, convert_mmseg_checkpoint(mm.state_dict(), window=window), cfg)
    n_mm, n_ours = (sum(p.numel() for p in m.parameters()) for m in (mm, ours))
    print(f"{key}: UperNet (150 classes) parameters: mmseg {n_mm:,}, ours {n_ours:,}")
    for size in sizes:
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        d = max_diffs(mmseg_outputs(mm, x), ours_outputs(ours, x))
        print(
            f"  {size[0]}x{size[1]}: max|Δ| stages "
            + " ".join(f"{d[f'stage{i}']:.1e}" for i in range(4))
            + f", logits {d['logits']:.1e}, aux {d['aux']:.1e}"
        )
    print(f"  ({time.perf_counter() - t0:.0f} s)")


def run_cswin() -> None:
    from stcl.models.cswin import CSWinEncoder

    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    sys.path.insert(0, str(data))
    import make_cswin_reference as maker

    ref = torch.load(data / "cswin_official_reference.pt", weights_only=True)
    cfg = ref["config"]
    enc = CSWinEncoder(
        embed_dim=cfg["embed_dim"],
        depths=tuple(cfg["depth"]),
        num_heads=tuple(cfg["num_heads"]),
        split_sizes=tuple(cfg["split_size"]),
    ).eval()
    enc.load_state_dict(maker.seeded_state({k: torch.Size(v) for k, v in ref["shapes"].items()}), strict=True)
    print(f"cswin (official segmentation backbone, {ref['origin']}):")
    for i, size in enumerate(ref["sizes"]):
        with torch.no_grad():
            outs = enc(maker.seeded_input(tuple(size), i))
        want = ref["outputs"][f"{size[0]}x{size[1]}"]
        d = [(a - b).abs().max().item() for a, b in zip(outs, want)]
        print(f"  {size[0]}x{size[1]}: max|Δ| stages " + " ".join(f"{v:.1e}" for v in d))
    with torch.device("meta"):
        n = sum(
            p.numel()
            for p in build_segmentor(
                ModelParams(backbone="cswin_large", channels=512, aux_channels=256), 150, device="meta"
            ).parameters()
        )
    print(f"  UperNet CSWin-L (150 classes) parameters: {n:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["swin_t", "r50", "cswin", "swin_l", "resnest101"], choices=[*MMSEG, "cswin"]
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    for key in args.models:
        run_cswin() if key == "cswin" else run_mmseg(key)


if __name__ == "__main__":
    main()
