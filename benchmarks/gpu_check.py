"""Exercise every GPU path of the pipeline once and print one JSON (≤ 8 minutes on one H100/H200).

Parts (each its own key in the JSON):

* ``matmul``: bf16 and float32 dense matmul rate (8192³), the peak MFU is measured against.
* ``train_step``: the paper's training step — Swin-L UperNet + STCL (projection dim 512), 2 clips × 4
  frames × 768², bf16 autocast, CE + 0.4·aux + 0.2·STCL, AdamW step: ms/step, peak memory, FLOPs per step
  (counted on the meta device by `stcl.plan.work.train_step_work`, as `stcl plan` does), achieved TFLOP/s
  and MFU against the measured bf16 matmul rate.
* ``ddp_syncbn``: one process group (NCCL on CUDA, gloo on CPU) of world size 1, the model with SyncBN in
  DistributedDataParallel, one step; checks the gradients are finite.
* ``stcl``: the loss alone at N = 36,864 anchors (one 768² query at stride 4), K = 147,456 keys (4 frames),
  D = 512, forward + backward per chunk size: ms and peak memory.
* ``tta``: one 854×480 frame through the 6-scale + flip sliding-window TTA (crop 768, stride 512) of the
  paper model in bf16 autocast and in float32: frames/s, achieved TFLOP/s, and the share of pixels whose
  argmax agrees (target ≥ 0.999). With random weights (no ``--checkpoint``) logits are nearly flat, so the
  agreement is a lower bound of a trained model's.

``stcl plan --calibration gpu_check.json`` projects with the measured rates instead of the table.
``--cpu-smoke`` runs the same code at tiny sizes on the CPU (tests/test_gpu_check.py), so it cannot rot.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json          # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke                    # seconds, on a CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Sizes:
    backbone: str
    channels: int
    aux_channels: int
    dim: int
    crop: int
    clips: int
    frames: int
    frame_hw: tuple[int, int]
    scales: tuple[float, ...]
    window: int
    stride: int
    matmul: int
    steps: int
    warmup: int
    tta_frames: int
    chunks: tuple[int, ...]


PAPER = Sizes(
    "swin_large_patch4_window12_384",
    512,
    256,
    512,
    768,
    2,
    4,
    (480, 854),
    (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
    768,
    512,
    8192,
    10,
    2,
    3,
    (2048, 4096, 8192),
)
SMOKE = Sizes("swin_mini", 16, 8, 8, 32, 2, 2, (40, 56), (0.5, 1.0), 32, 24, 128, 1, 1, 1, (64, 256))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _params(s: Sizes):
    from stcl.params import Params

    p = Params()
    return p.model_copy(
        update={
            "model": p.model.model_copy(
                update={
                    "backbone": s.backbone,
                    "channels": s.channels,
                    "aux_channels": s.aux_channels,
                    "drop_path": 0.3,
                }
            ),
            "augment": p.augment.model_copy(update={"crop_size": (s.crop, s.crop)}),
            "clips": p.clips.model_copy(update={"reference_offsets": tuple(range(-(s.frames - 1) * 3, 0, 3))}),
            "train_stcl": p.train_stcl.model_copy(
                update={
                    "batch_per_device": s.clips,
                    "batch_size": s.clips,
                    "amp": "bf16",
                    "stcl": p.train_stcl.stcl.model_copy(update={"dim": s.dim}),
                }
            ),
            "infer": p.infer.model_copy(
                update={
                    "scales": s.scales,
                    "crop_size": (s.window, s.window),
                    "stride": (s.stride, s.stride),
                    "batch_size": 8,
                }
            ),
        }
    )


def matmul_rates(s: Sizes, device: torch.device) -> dict:
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(s.matmul, s.matmul, device=device, dtype=dtype)
        b = torch.randn(s.matmul, s.matmul, device=device, dtype=dtype)
        a @ b
        _sync(device)
        reps = 20 if device.type == "cuda" else 3
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        out[f"{name}_tflops"] = 2 * s.matmul**3 * reps / (time.perf_counter() - t0) / 1e12
    return out


def _batch(s: Sizes, device: torch.device, classes: int = 124):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s.clips, s.frames, 3, s.crop, s.crop), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, classes, (s.clips, s.frames, s.crop // 32, s.crop // 32), generator=g).to(torch.uint8)
    labels = labels.repeat_interleave(32, -1).repeat_interleave(32, -2)  # blocky regions, as real masks
    return images.to(device).float(), labels.to(device).long()


def train_step(s: Sizes, device: torch.device, matmul_bf16: float) -> dict:
    from stcl.models.segmentor import build_segmentor
    from stcl.plan.work import train_step_work
    from stcl.train.optim import build_optimizer
    from stcl.train.stage import make_loss_fn

    params = _params(s)
    stage = params.train_stcl
    model = build_segmentor(params.model, 124, stage.stcl.dim, load_pretrained=False).to(device).train()
    opt = build_optimizer(model, stage.optimizer)
    loss_fn = make_loss_fn(params, "train_stcl")
    images, labels = _batch(s, device)
    times = []
    _reset_peak(device)
    for i in range(s.steps + s.warmup):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss, _ = loss_fn(model(images), labels, True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= s.warmup:
            times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    flops = train_step_work(params, stage).flops
    return {
        "clips": s.clips,
        "frames": s.frames,
        "crop": s.crop,
        "loss": float(loss.detach()),
        "ms_per_step": step_s * 1e3,
        "peak_memory_bytes": _peak(device),
        "flops_per_step": flops,
        "achieved_tflops": flops / step_s / 1e12,
        "mfu_vs_matmul_bf16": flops / step_s / 1e12 / matmul_bf16,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_syncbn(s: Sizes, device: torch.device) -> dict:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from stcl.models.segmentor import build_segmentor
    from stcl.train.stage import make_loss_fn

    params = _params(s)
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        model = build_segmentor(params.model, 124, s.dim, load_pretrained=False)
        synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
        sync_bn = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
        # DDP refuses SyncBN on CPU modules ("SyncBatchNorm layers only work with GPU modules"): the CPU
        # smoke converts (and counts) the layers, then runs DDP over gloo with the plain BatchNorm model.
        model = (synced if device.type == "cuda" else model).to(device).train()
        ddp = DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
        images, labels = _batch(s, device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = make_loss_fn(params, "train_stcl")(ddp(images), labels, True)
        loss.backward()
        _sync(device)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        return {
            "backend": backend,
            "sync_bn_layers": sync_bn,
            "sync_bn_in_ddp": device.type == "cuda",
            "grads_finite": finite,
            "ms": (time.perf_counter() - t0) * 1e3,
        }
    finally:
        dist.destroy_process_group()


def stcl_alone(s: Sizes, device: torch.device) -> dict:
    from stcl.losses.stcl import spatial_temporal_consistency_loss

    h = w = s.crop // 4
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 124, (1, s.frames, h // 8, w // 8), generator=g).repeat_interleave(8, -1)
    labels = labels.repeat_interleave(8, -2).to(device)
    out = {"anchors": h * w, "keys": s.frames * h * w, "dim": s.dim, "chunks": {}}
    base = torch.randn(1, s.frames, s.dim, h, w, generator=g).to(device)
    for chunk in s.chunks:
        feats = base.clone().requires_grad_(True)
        _reset_peak(device)
        _sync(device)
        t0 = time.perf_counter()
        loss = spatial_temporal_consistency_loss(
            feats[:, 0], labels[:, 0], feats[:, 1:], labels[:, 1:], 0.07, chunk_size=chunk
        )
        loss.backward()
        _sync(device)
        out["chunks"][str(chunk)] = {
            "ms": (time.perf_counter() - t0) * 1e3,
            "peak_memory_bytes": _peak(device),
            "loss": float(loss.detach()),
        }
    losses = [c["loss"] for c in out["chunks"].values()]
    out["chunk_losses_agree"] = max(losses) - min(losses) <= 1e-4 * max(abs(x) for x in losses)  # exact method
    return out


def tta(s: Sizes, device: torch.device, checkpoint: str | None) -> dict:
    from stcl.infer.multiscale import tta_from_params, tta_probs
    from stcl.models.segmentor import build_segmentor
    from stcl.plan.work import predict_frame_flops

    params = _params(s)
    if checkpoint:
        from stcl.models.checkpoints import load_model

        model = load_model(Path(checkpoint), map_location="cpu")[0]
    else:
        model = build_segmentor(params.model, 124, None, load_pretrained=False)
    model = model.to(device).eval()
    t = tta_from_params(params.infer)
    g = torch.Generator().manual_seed(0)
    image = (torch.rand((1, 3, *s.frame_hw), generator=g) * 255).to(device)
    flops = predict_frame_flops(params.model, t, *s.frame_hw)
    out, preds = {"frame_hw": list(s.frame_hw), "views": len(t.views), "flops_per_frame": flops}, {}
    for name, amp in (("bf16", True), ("fp32", False)):

        def predict(x, amp=amp):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return model.predict(x).float()

        tta_probs(predict, image, t)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(s.tta_frames):
            probs = tta_probs(predict, image, t)
        _sync(device)
        fps = s.tta_frames / (time.perf_counter() - t0)
        preds[name] = probs[0].argmax(0)
        out[name] = {"frames_per_s": fps, "achieved_tflops": fps * flops / 1e12}
    out["argmax_agreement"] = float((preds["bf16"] == preds["fp32"]).float().mean())
    out["agreement_ok"] = out["argmax_agreement"] >= 0.999
    out["weights"] = checkpoint or "random"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (the test suite runs this)")
    ap.add_argument("--checkpoint", default=None, help="a trained model.pt for the TTA agreement check")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        device, s = torch.device("cpu"), SMOKE
    elif torch.cuda.is_available():
        device, s = torch.device("cuda"), PAPER
    else:
        print("gpu_check: no CUDA device (use --cpu-smoke on a CPU)", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
    result: dict = {"device": {"name": name, "memory_bytes": memory, "torch": torch.__version__}}
    result["matmul"] = matmul_rates(s, device)
    result["train_step"] = train_step(s, device, result["matmul"]["bf16_tflops"])
    result["ddp_syncbn"] = ddp_syncbn(s, device)
    result["stcl"] = stcl_alone(s, device)
    result["tta"] = tta(s, device, args.checkpoint)
    result["seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2)
    if args.out:
        from stcl.atomic import write_text

        write_text(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
