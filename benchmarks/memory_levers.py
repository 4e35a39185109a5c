"""What grad_checkpointing, bf16 autocast and the projection input save in a training step, and a check of
`stcl.plan.memory`'s activation count against measured memory.

Each case runs in a fresh Python process (so the peak is that case's alone): the paper's model (Swin-L
UperNet + projection dim 512 by default) at a reduced crop, 2 clips × 4 frames, CE + 0.4·aux + 0.2·STCL,
forward + backward on the CPU. One warm-up step allocates the gradients; then glibc's free memory is
returned (malloc_trim), the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` 5) and a second step
runs: *activations* = peak RSS during that step − RSS before it. Beside it, the method `stcl plan` uses:
bytes saved for backward counted on the meta device (`stcl.plan.work.train_step_work`, float32, no
checkpointing) at the same size.

    .venv/bin/python benchmarks/memory_levers.py                    # Swin-L at 96² and 128² (< 5 GB each)
    .venv/bin/python benchmarks/memory_levers.py --backbone swin_mini --crops 64 96
    .venv/bin/python benchmarks/memory_levers.py --count --crops 64 768   # seconds, no compute

``--count`` measures nothing: it counts the bytes saved for backward by the forward pass of the paper's
network (2 clips x 4 frames) on fake tensors (``torch._subclasses.FakeTensorMode``: shapes and dtypes, no
data), in float32 and under bf16 autocast, with the CPU's and with CUDA's autocast policy (which ops run in
bf16 and which stay in float32 differs between the two). No GPU is needed: CUDA's policy is switched on
directly (``torch.set_autocast_enabled("cuda", True)``) for fake CUDA tensors. This gives the bf16 ratio of
Swin-L at the real 768² crop, where the measured CPU bf16 step is too slow to run.

Prints one line per case and, per lever, the ratio of its activations to the float32 baseline
(averaged over the crops), and the extrapolation to 768² (activations are linear in pixels).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys

CASES = {
    "fp32": {},
    "bf16": {"amp": "bf16"},
    "grad_checkpointing": {"ckpt": True},
    "bf16+grad_checkpointing": {"amp": "bf16", "ckpt": True},
    "projection=backbone_last": {"proj": "backbone_last"},
}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not in /proc/self/status")


def _params(backbone: str, crop: int, amp: str, ckpt: bool, proj: str, dim: int):
    from stcl.params import Params

    p = Params()
    small = backbone in ("swin_mini", "resnet18")
    return p.model_copy(
        update={
            "model": p.model.model_copy(
                update={
                    "backbone": backbone,
                    "channels": 64 if small else 512,
                    "aux_channels": 32 if small else 256,
                    "grad_checkpointing": ckpt,
                    "projection_input": proj,
                }
            ),
            "augment": p.augment.model_copy(update={"crop_size": (crop, crop)}),
            "clips": p.clips.model_copy(update={"reference_offsets": (-9, -6, -3)}),
            "train_stcl": p.train_stcl.model_copy(
                update={
                    "batch_per_device": 2,
                    "batch_size": 2,
                    "amp": amp,
                    "stcl": p.train_stcl.stcl.model_copy(update={"dim": dim}),
                }
            ),
        }
    )


def run_case(backbone: str, crop: int, amp: str, ckpt: bool, proj: str, dim: int) -> dict:
    import torch

    from stcl.models.segmentor import build_segmentor
    from stcl.plan.work import train_step_work
    from stcl.train.stage import make_loss_fn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    params = _params(backbone, crop, amp, ckpt, proj, dim)
    model = build_segmentor(params.model, 124, dim, load_pretrained=False).train()
    loss_fn = make_loss_fn(params, "train_stcl")
    images = torch.randint(0, 256, (2, 4, 3, crop, crop)).float()
    labels = torch.randint(0, 8, (2, 4, crop // 16, crop // 16)).repeat_interleave(16, -1).repeat_interleave(16, -2)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss, _ = loss_fn(model(images), labels, True)
        loss.backward()

    step()  # gradients allocated
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _rss()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    step()
    measured = _peak_rss() - before
    counted = train_step_work(params, params.train_stcl).activation_bytes
    params_n = sum(p.numel() for p in model.parameters())
    return {"crop": crop, "measured_bytes": measured, "counted_fp32_bytes": counted, "parameters": params_n}


def count_saved(backbone: str, crop: int, dim: int, device: str, amp: bool) -> int:
    """Bytes saved for backward by one forward of 2 clips x 4 frames, counted on fake ``device`` tensors."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from stcl.models.segmentor import build_segmentor

    params = _params(backbone, crop, "off", False, "fpn_bottleneck", dim)
    meta = build_segmentor(params.model, 124, dim, device="meta", load_pretrained=False).train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[id(storage)] = storage.nbytes()
        return t

    with FakeTensorMode(allow_non_fake_inputs=True), torch.device(device):
        net = meta.to_empty(device=device)
        images = torch.zeros((2, 4, 3, crop, crop))
        torch.set_autocast_dtype(device, torch.bfloat16)
        torch.set_autocast_enabled(device, amp)
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                net(images)
        finally:
            torch.set_autocast_enabled(device, False)
    return sum(storages.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="swin_large_patch4_window12_384")
    ap.add_argument("--crops", type=int, nargs=2, default=[96, 128])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--count", action="store_true", help="count saved activations on fake tensors (no compute)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process: JSON of one case
    args = ap.parse_args(argv)
    if args.count:
        for crop in args.crops:
            for device in ("cpu", "cuda"):
                fp32 = count_saved(args.backbone, crop, args.dim, device, False)
                bf16 = count_saved(args.backbone, crop, args.dim, device, True)
                print(
                    f"counted {crop:>4}² {device:<4} autocast policy: float32 {fp32 / 2**30:6.2f} GiB   "
                    f"bf16 {bf16 / 2**30:6.2f} GiB   x{bf16 / fp32:.2f}",
                    flush=True,
                )
        return 0
    if args.case:
        c = json.loads(args.case)
        print(
            json.dumps(
                run_case(
                    args.backbone,
                    c["crop"],
                    c.get("amp", "off"),
                    c.get("ckpt", False),
                    c.get("proj", "fpn_bottleneck"),
                    args.dim,
                )
            )
        )
        return 0
    results: dict[str, list[dict]] = {}
    for name in args.cases:
        for crop in args.crops:
            case = json.dumps({**CASES[name], "crop": crop})
            proc = subprocess.run(
                [sys.executable, __file__, "--backbone", args.backbone, "--dim", str(args.dim), "--case", case],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.setdefault(name, []).append(r)
            print(
                f"{name:<26} {crop:>4}²  measured {r['measured_bytes'] / 2**30:6.2f} GiB   "
                f"counted (meta, fp32) {r['counted_fp32_bytes'] / 2**30:6.2f} GiB",
                flush=True,
            )
    base = results.get("fp32")
    if base:
        print(
            "\nmeasured / counted (fp32): "
            + ", ".join(f"{r['crop']}²: {r['measured_bytes'] / r['counted_fp32_bytes']:.2f}" for r in base)
        )
        per_pixel = [r["measured_bytes"] / r["crop"] ** 2 for r in base]
        print(
            f"fp32 activations per pixel: {', '.join(f'{x / 1024:.1f} KiB' for x in per_pixel)} "
            f"→ 768²: {per_pixel[-1] * 768**2 / 2**30:.1f} GiB (2 clips x 4 frames)"
        )
        for name, rs in results.items():
            ratio = sum(r["measured_bytes"] / b["measured_bytes"] for r, b in zip(rs, base)) / len(rs)
            print(f"{name:<26} x{ratio:.2f} of fp32  → 768²: {ratio * per_pixel[-1] * 768**2 / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
