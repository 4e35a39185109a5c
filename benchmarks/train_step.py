"""Training speed: iterations/s of the default (tiny) stages on CPU; Swin-L UperNet + STCL at 768² on a GPU.

CPU part: in a temporary workspace (``stcl synth`` + ``stcl prepare``), each training stage of the given
params runs ``--iters`` iterations through the real engine (`stcl.train.loop.train`: data loading, model,
loss, optimiser, checkpointing); the first ``--warmup`` iterations are excluded from the rate. Init weights
are not read (``init`` is cleared), which does not change the step cost.

GPU part (only where CUDA exists; prints "no GPU" otherwise): the paper's model, Swin-L UperNet with the
STCL projection head (dim 512), 2 clips of 1 + 3 frames per GPU at 768², bf16 autocast, AdamW step, on
random inputs (no data loading): ms/step, peak memory, model FLOPs per step (torch's FlopCounterMode) and
model FLOP utilisation against the bf16 matmul rate measured on the same GPU.

Usage::

    .venv/bin/python benchmarks/train_step.py [--params params.yaml] [--iters 20] [--warmup 3] [--stages ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `stcl train` does (see stcl/commands/train.py)

import torch  # noqa: E402
import yaml  # noqa: E402

from stcl.cli import main as stcl_main  # noqa: E402
from stcl.params import TRAIN_STAGES, load_params, parse_params  # noqa: E402


def cpu_stage_rates(params_file: Path, stages: list[str], iters: int, warmup: int) -> dict[str, float]:
    """it/s of each stage on CPU (after `warmup` iterations), in a throwaway workspace."""
    from stcl.train.distributed import DistContext
    from stcl.train.loop import train
    from stcl.data.clips import DataPaths
    from stcl.train.stage import build_job

    data = yaml.safe_load(params_file.read_text())
    for stage in TRAIN_STAGES:
        data[stage].update(init=None, iters=iters, checkpoint_every=iters, log_every=iters)
    rates = {}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="stcl_bench_") as tmp:
        os.chdir(tmp)
        try:
            Path("params.yaml").write_text(yaml.safe_dump(data))
            assert stcl_main(["synth", "--out", "data"]) == 0 and stcl_main(["prepare", "--out", "prepare"]) == 0
            params = parse_params(data, "benchmark params")
            # train_student's pseudo-labelled set has the VSPW layout: the synthetic VSPW train split stands in
            paths = DataPaths(
                vspw=params.data.vspw_root,
                coco=params.data.coco_root,
                coco_semantic=Path("prepare/coco_semantic"),
                ade=params.data.ade_root,
                pseudo=params.data.vspw_root,
            )
            for stage in stages:
                stamps: list[float] = []
                job = build_job(params, stage, Path("out") / stage, paths)
                train(job, DistContext(), callbacks=[lambda it: stamps.append(time.perf_counter())])
                timed = stamps[warmup - 1 :] if warmup > 0 else stamps
                rates[stage] = (len(timed) - 1) / (timed[-1] - timed[0])
        finally:
            os.chdir(cwd)
    return rates


def bf16_matmul_tflops(n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


def gpu_paper_step(steps: int = 10, warmup: int = 3, crop: int = 768, batch: int = 2) -> dict[str, float]:
    """Swin-L UperNet + STCL (dim 512) train step at `crop`², `batch` clips of 1 + 3 frames, bf16 autocast."""
    from torch.utils.flop_counter import FlopCounterMode

    from stcl.losses import segmentor_loss
    from stcl.models import build_segmentor
    from stcl.params import preset_params
    from stcl.train.optim import build_optimizer

    paper = preset_params("paper")
    stage = paper.train_stcl
    model = build_segmentor(paper.model, 124, stage.stcl.dim, load_pretrained=False).cuda().train()
    opt = build_optimizer(model, stage.optimizer)
    frames = 1 + len(paper.clips.reference_offsets)  # query + references (-9, -6, -3)
    images = torch.rand(batch, frames, 3, crop, crop, device="cuda") * 255
    labels = torch.randint(0, 124, (batch, frames, crop, crop), device="cuda")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(images)
            loss, _ = segmentor_loss(out, labels, stage.aux_weight, stage.stcl)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) / steps * 1e3
    peak = bf16_matmul_tflops()
    achieved = flops / (ms / 1e3) / 1e12
    return {
        "ms_per_step": ms,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        "tflop_per_step": flops / 1e12,
        "achieved_tflops": achieved,
        "bf16_matmul_tflops": peak,
        "mfu": achieved / peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--stages", nargs="+", default=list(TRAIN_STAGES), choices=TRAIN_STAGES)
    ap.add_argument("--skip-cpu", action="store_true")
    args = ap.parse_args()
    if args.warmup >= args.iters - 1:
        raise SystemExit("--warmup must be smaller than --iters - 1")
    params_file = args.params.resolve()
    load_params(params_file)  # validate early
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_cpu:
        for stage, rate in cpu_stage_rates(params_file, args.stages, args.iters, args.warmup).items():
            print(f"cpu  {stage:<14} {rate:6.2f} it/s  ({1e3 / rate:7.1f} ms/it)")
    if not torch.cuda.is_available():
        print("no GPU: Swin-L 768² figures skipped")
        return
    r = gpu_paper_step()
    print(
        f"gpu  {torch.cuda.get_device_name()}: Swin-L UperNet + STCL 768², 2 clips × 4 frames, bf16: "
        f"{r['ms_per_step']:.0f} ms/step, peak {r['peak_mem_gib']:.1f} GiB, {r['tflop_per_step']:.2f} TFLOP/step, "
        f"{r['achieved_tflops']:.0f} TFLOP/s of {r['bf16_matmul_tflops']:.0f} measured bf16 matmul → MFU {r['mfu']:.0%}"
    )


if __name__ == "__main__":
    main()
