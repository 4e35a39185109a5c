"""RAFT as the official VSPW TC script (VSPW-dataset/VSPW_code, TC_cal.py with its RAFT_core copy) runs it.

The network is torchvision's ``raft_large``, which computes what RAFT_core's ``RAFT`` computes (both have
5,257,536 parameters) when it is run the way TC_cal.py runs RAFT_core:

* 20 refinement iterations (``iters=20``; torchvision's default is 12), and the last upsampled flow;
* frames padded as RAFT_core's ``InputPadder`` (``mode='sintel'``) does: to multiples of 8, split
  ``[w//2, w - w//2, h//2, h - h//2]``, with the constant 0 on the raw 0..255 frame — which is −1 after the
  normalisation ``2·(x/255) − 1`` — and the flow cropped back;
* at least 128×128 after padding (smaller frames give NaN flows in RAFT_core, a ValueError in torchvision):
  refused here with one line.

Weights files (`load_raft`): the official ``raft-things.pth`` (179 keys prefixed ``module.``, converted by
`official_to_torchvision`, strictly: every key used once, shapes equal) or a torchvision state dict
(``raft_large_C_T_V1-22a6c225.pth`` is the port of raft-things; the default ``C_T_SKHT_V2`` weights are
other weights and give another TC). Nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "RAFT_ITERS",
    "MIN_SIZE",
    "build_raft",
    "detect_raft_format",
    "official_to_torchvision",
    "load_raft",
    "padding",
    "raft_flow",
]

RAFT_ITERS = 20  # TC_cal.py: model_raft(image1, image2, iters=20, test_mode=True)
MIN_SIZE = 128  # smallest padded height/width RAFT's 4-level correlation pyramid works on

# official RAFT_core names → torchvision names, applied in order to each key (after removing `module.`)
_RENAMES = (
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"^(\w+_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(\w+_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(\w+_encoder)\.conv2\.", r"\1.conv."),
    (r"\.(layer\d\.\d)\.conv([12])\.", r".\1.convnormrelu\2.0."),
    (r"\.(layer\d\.\d)\.norm([12])\.", r".\1.convnormrelu\2.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])([12])\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
)
# RAFT_core's residual blocks register their downsample norm twice (as norm3 and as downsample.1)
_DUPLICATE = re.compile(r"^(?P<block>[fc]net\.layer[23]\.0)\.norm3\.(?P<leaf>\w+)$")


def build_raft() -> torch.nn.Module:
    """torchvision ``raft_large`` without weights, in eval mode (load them with `load_raft`)."""
    from torchvision.models.optical_flow import raft_large

    return raft_large(weights=None, progress=False).eval()


def detect_raft_format(state: Mapping[str, object]) -> str | None:
    """``"raft-official"`` (RAFT_core / princeton-vl layout), ``"raft-torchvision"``, or None for other files."""
    keys = [k.removeprefix("module.") for k in state]
    if any(k.startswith("fnet.") for k in keys) and any(k.startswith("update_block.gru.") for k in keys):
        return "raft-official"
    tv = ("feature_encoder.", "update_block.recurrent_block.")
    if all(any(k.startswith(p) for k in keys) for p in tv):
        return "raft-torchvision"
    return None


def official_to_torchvision(state: Mapping[str, torch.Tensor], source: str = "weights") -> dict[str, torch.Tensor]:
    """RAFT_core / princeton-vl ``raft-things.pth`` state dict → torchvision ``raft_large`` state dict.

    Keys may carry the ``module.`` prefix of ``nn.DataParallel`` (as the released files do). The ten
    ``cnet.layer{2,3}.0.norm3.*`` / ``fnet...`` duplicates must equal their ``downsample.1`` twin and are
    dropped; anything else that does not map is an error naming ``source`` and the keys.
    """
    plain = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in plain.items():
        m = _DUPLICATE.match(key)
        if m:
            twin = f"{m['block']}.downsample.1.{m['leaf']}"
            if twin not in plain or not torch.equal(plain[twin], value):
                raise ValueError(f"{source}: {key} differs from its twin {twin} (not a RAFT_core file?)")
            continue
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if new in out:
            raise ValueError(f"{source}: two keys map to {new}")
        out[new] = value
    return out


def load_raft(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """``raft_large`` with the weights of ``path`` (official or torchvision layout), strictly, in eval mode.

    Errors are one line naming the file: unreadable, not a dict of named tensors (`stcl.models.files.
    unwrap_state`, which also removes ``module.``), not a RAFT file, or the missing / unexpected / misshaped keys
    (`stcl.models.loading.strict_load`).
    """
    from stcl.models.files import read_weights_file, unwrap_state
    from stcl.models.loading import strict_load

    state, _ = unwrap_state(read_weights_file(path, "RAFT weights file"), path)
    fmt = detect_raft_format(state)
    if fmt is None:
        raise ValueError(
            f"{path}: not a RAFT weights file (neither RAFT_core's fnet/cnet/update_block keys nor torchvision's "
            "raft_large keys)"
        )
    if fmt == "raft-official":
        state = official_to_torchvision(state, str(path))
    model = build_raft()
    strict_load(model, state, str(path), fmt=fmt, target="torchvision raft_large", advice="")
    return model.to(device).eval()


def padding(height: int, width: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` as RAFT_core's InputPadder (sintel mode): up to a multiple of 8, split."""
    ph = (-height) % 8
    pw = (-width) % 8
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


@torch.inference_mode()
def raft_flow(
    model: torch.nn.Module, frame1: torch.Tensor, frame2: torch.Tensor, iters: int = RAFT_ITERS
) -> torch.Tensor:
    """Flow from ``frame1`` to ``frame2``: uint8 or 0..255 float (N, 3, H, W) RGB → float32 (N, 2, H, W).

    Channel 0 is the horizontal displacement (x), 1 the vertical (y), in pixels of the frame. The frames go
    on ``model``'s device; the flow comes back there.
    """
    if frame1.shape != frame2.shape or frame1.ndim != 4 or frame1.shape[1] != 3:
        raise ValueError(
            f"RAFT needs two (N, 3, H, W) frames of one size, got {tuple(frame1.shape)} and {tuple(frame2.shape)}"
        )
    h, w = frame1.shape[-2:]
    left, right, top, bottom = pad = padding(h, w)
    if h + top + bottom < MIN_SIZE or w + left + right < MIN_SIZE:
        raise ValueError(
            f"RAFT needs frames of at least {MIN_SIZE}x{MIN_SIZE} after padding to multiples of 8, got {w}x{h}"
        )
    device = next(model.parameters()).device
    images = []
    for frame in (frame1, frame2):
        x = F.pad(frame.to(device), pad, mode="constant", value=0).float()  # 0 on the raw frame, as InputPadder
        images.append(2 * (x / 255.0) - 1.0)
    flow = model(images[0].contiguous(), images[1].contiguous(), num_flow_updates=iters)[-1]
    return flow[:, :, top : top + h, left : left + w].float()
