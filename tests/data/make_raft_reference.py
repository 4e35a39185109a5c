"""Regenerate tests/data/raft_tc_official_reference.pt from the official VSPW TC code (RAFT_core + TC_cal.py).

    git clone https://github.com/VSPW-dataset/VSPW_code /tmp/VSPW_code      # commit 73b98ceb
    .venv/bin/python tests/data/make_raft_reference.py /tmp/VSPW_code

Nothing of the official code is copied into this repository: its RAFT_core package is imported from the
checkout, and TC_cal.py's ``flowwarp`` (the file runs its whole evaluation at import) is taken from that
file's text and executed alone. What is stored:

* RAFT: the official ``RAFT`` (RAFT_core/raft.py) with `seeded_state` weights in the official file layout
  (keys prefixed ``module.``, as in ``raft-things.pth``; the test re-creates them from the seed), run as
  TC_cal.py runs it (``InputPadder``, ``iters=20, test_mode=True``, unpad) on two seeded frame pairs:
  132×140 (padded to 136×144: InputPadder splits the padding) and 128×160 (no padding). The frames and the
  key list are stored; the weights are not (21 MB).
* The warp: ``flowwarp`` on seeded label maps and flows (sub-pixel, half-pixel and out-of-frame
  displacements), and the TC of three such pairs through the official ``Evaluator`` (utils.py), as
  TC_cal.py accumulates and scores it.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import torch

ORIGIN = "VSPW-dataset/VSPW_code@73b98ceb92cd9639da210da14f1bb0e02946f846"
SIZES = [(132, 140), (128, 160)]  # (H, W)
WARP_SIZE = (37, 53)
OUT = Path(__file__).with_name("raft_tc_official_reference.pt")


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout RAFT weights drawn in sorted key order (keys with or without ``module.``).

    Kernels N(0, 1/fan_in), biases and norm shifts 0.1·N(0,1), norm scales 1 ± 0.1, running means 0.1·N,
    running variances 1 + 0.1·|N|, ``num_batches_tracked`` 0, the flow head's last kernel × 0.05; a ``norm3``
    key takes the values of its ``downsample.1`` twin (they are one module in RAFT_core).
    """
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = torch.Size(shapes[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.long)
            continue
        x = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            x = x / shape[1:].numel() ** 0.5
            if "flow_head.conv2" in key:
                x = 0.05 * x  # updates of a few pixels, so the flows stay within the correlation's reach
        elif key.endswith("running_var"):
            x = 1 + 0.1 * x.abs()
        elif "norm" in key and key.endswith("weight") or key.endswith("downsample.1.weight"):
            x = 1 + 0.1 * x
        else:
            x = 0.1 * x
        out[key] = x
    for key in out:
        m = re.match(r"^(.*\.layer[23]\.0)\.norm3\.(\w+)$", key)
        if m:
            out[key] = out[f"{m[1]}.downsample.1.{m[2]}"].clone()
    return out


def seeded_frames(size: tuple[int, int], seed: int) -> torch.Tensor:
    """Two (H, W, 3) uint8 frames: smooth random texture, the second shifted by a few pixels plus noise."""
    g = torch.Generator().manual_seed(2000 + seed)
    h, w = size
    base = torch.rand(1, 3, h // 8 + 4, w // 8 + 4, generator=g)
    big = torch.nn.functional.interpolate(base, size=(h + 16, w + 16), mode="bicubic", align_corners=False)[0]
    f1 = big[:, 8 : 8 + h, 8 : 8 + w]
    f2 = big[:, 5 : 5 + h, 10 : 10 + w] + 0.02 * torch.randn(3, h, w, generator=g)
    return torch.stack([f1, f2]).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def seeded_warp_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred t, pred t+1 (H, W) uint8 label blocks, some changed to 123; flow (2, H, W) float32 px)."""
    g = torch.Generator().manual_seed(3000 + seed)
    h, w = WARP_SIZE
    coarse = torch.randint(0, 12, (1, 1, 5, 7), generator=g).repeat(2, 1, 1, 1)
    coarse[1, 0, torch.randint(0, 5, (6,), generator=g), torch.randint(0, 7, (6,), generator=g)] = 123
    preds = torch.nn.functional.interpolate(coarse.float(), size=(h, w), mode="nearest")[:, 0].to(torch.uint8)
    flow = 1.5 * torch.randn(2, h, w, generator=g)
    flow[:, :4] = torch.round(flow[:, :4]) + 0.5  # half-pixel source points: the rounding rule matters
    flow[0, -3:] = 40.0  # out of frame on the right: class 0
    return preds[0], preds[1], flow


def load_flowwarp(tc_cal: Path):
    src = tc_cal.read_text()
    m = re.search(r"^def flowwarp\(.*?(?=^\S)", src, flags=re.M | re.S)
    module = types.ModuleType("tc_cal_flowwarp")
    exec("import torch\nimport torch.nn as nn\n" + m.group(0), module.__dict__)  # noqa: S102 - official code, once
    return module.flowwarp


def main(checkout: str) -> None:
    root = Path(checkout).resolve()
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "RAFT_core"))
    from RAFT_core.raft import RAFT
    from RAFT_core.utils.utils import InputPadder
    import importlib.util

    spec = importlib.util.spec_from_file_location("vspw_utils", root / "utils.py")  # not RAFT_core/utils/
    vspw_utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vspw_utils)
    Evaluator = vspw_utils.Evaluator

    model = RAFT().eval()
    shapes = {f"module.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    state = seeded_state(shapes)
    model.load_state_dict({k[len("module."):]: v for k, v in state.items()}, strict=True)
    frames, flows = {}, {}
    for i, size in enumerate(SIZES):
        pair = seeded_frames(size, i)
        padder = InputPadder(pair.shape[1:3])
        image1 = padder.pad(pair[0:1].permute(0, 3, 1, 2))
        image2 = padder.pad(pair[1:2].permute(0, 3, 1, 2))
        with torch.no_grad():
            _, flow = model(image1, image2, iters=20, test_mode=True)
        key = f"{size[0]}x{size[1]}"
        frames[key] = pair
        flows[key] = padder.unpad(flow)[0].clone()

    flowwarp = load_flowwarp(root / "TC_cal.py")
    evaluator = Evaluator(124)
    warps = []
    for seed in range(3):
        pred, next_pred, flow = seeded_warp_case(seed)
        warped = flowwarp(next_pred[None, None].float(), flow[None].clone()).int().squeeze(1).numpy()
        evaluator.add_batch(pred[None].numpy(), warped)
        warps.append(torch.from_numpy(warped[0].astype(np.int64)))
    tc = float(evaluator.Mean_Intersection_over_Union())

    torch.save(
        {
            "origin": f"{ORIGIN}: RAFT_core/raft.py RAFT, RAFT_core/utils/utils.py InputPadder, "
            "TC_cal.py flowwarp, utils.py Evaluator",
            "shapes": {k: list(v) for k, v in shapes.items()},
            "sizes": SIZES,
            "frames": frames,
            "flows": flows,
            "warps": warps,
            "tc": tc,
        },
        OUT,
    )
    sizes = ", ".join(f"{k} |max| {v.abs().max():.3f}" for k, v in flows.items())
    print(f"wrote {OUT}: flows {sizes}; TC {tc:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
