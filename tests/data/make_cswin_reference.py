"""Regenerate tests/data/cswin_official_reference.pt from the official CSWin segmentation backbone.

    git clone https://github.com/microsoft/CSWin-Transformer /tmp/CSWin-Transformer   # commit f111ae2f
    .venv/bin/pip install --target /tmp/einops einops      # the official file imports einops
    PYTHONPATH=/tmp/einops .venv/bin/python tests/data/make_cswin_reference.py \
        /tmp/CSWin-Transformer/segmentation/backbone/cswin_transformer.py

The official file is executed with its mmcv/mmseg-0.x imports replaced by stand-ins (nothing of it is
copied into this repository); a small CSWin (embed 16, depths 1-1-2-1, heads 2-4-8-16, splits 1-2-3-3:
channels double per stage, as in the classification releases) gets seeded weights (`seeded_state`, which the
test re-creates), and its four stage outputs on three seeded inputs are stored: 96×96 (no padding anywhere),
128×128 (stage 3 pads its stripes) and 122×170 (not a multiple of 4: the stem's rounding, and padding in
stages 2-3).
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import torch

CONFIG = dict(embed_dim=16, depth=[1, 1, 2, 1], num_heads=[2, 4, 8, 16], split_size=[1, 2, 3, 3])
SIZES = [(96, 96), (128, 128), (122, 170)]
OUT = Path(__file__).with_name("cswin_official_reference.pt")


def seeded_state(shapes: dict[str, torch.Size], seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights drawn in sorted key order: N(0, 1/fan_in) for matrices and kernels, 1 ± 0.1 for norm scales."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        x = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            x = x / shape[1:].numel() ** 0.5
        elif "norm" in key and key.endswith("weight"):
            x = 1 + 0.1 * x
        else:
            x = 0.1 * x
        out[key] = x
    return out


def seeded_input(size: tuple[int, int], seed: int) -> torch.Tensor:
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1000 + seed))


def load_official(path: str):
    src = Path(path).read_text()
    src = re.sub(r"^from (mmcv_custom|mmseg\.utils|\.\.builder) import .*$", "", src, flags=re.M)
    src = re.sub(r"^@BACKBONES\.register_module\(\)$", "", src, flags=re.M)
    src = re.sub(r"^from timm\.models\.(helpers|resnet|registry) import .*$", "", src, flags=re.M)
    src = src.replace("from timm.models.layers import", "from timm.layers import")
    module = types.ModuleType("official_cswin")
    exec(compile(src, path, "exec"), module.__dict__)  # noqa: S102 - the official file, run once here
    return module


def main(path: str) -> None:
    official = load_official(path)
    model = official.CSWin(**CONFIG).eval()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(seeded_state(shapes), strict=True)
    outputs = {}
    with torch.no_grad():
        for i, size in enumerate(SIZES):
            outputs[f"{size[0]}x{size[1]}"] = [o.clone() for o in model(seeded_input(size, i))]
    torch.save(
        {
            "origin": "microsoft/CSWin-Transformer@f111ae2f segmentation/backbone/cswin_transformer.py (class CSWin)",
            "config": CONFIG,
            "sizes": SIZES,
            "shapes": {k: list(v) for k, v in shapes.items()},
            "outputs": outputs,
        },
        OUT,
    )
    print(f"wrote {OUT}: " + ", ".join(f"{k}: {[tuple(o.shape[2:]) for o in v]}" for k, v in outputs.items()))


if __name__ == "__main__":
    main(sys.argv[1])
