"""benchmarks/gpu_check.py --cpu-smoke: the GPU check's code runs end to end at tiny sizes, and its JSON
calibrates `stcl plan`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_smoke_runs_every_part_and_calibrates_the_plan(tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--cpu-smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    step = result["train_step"]
    assert step["ms_per_step"] > 0 and math.isfinite(step["loss"]) and step["flops_per_step"] > 0
    assert 0 < step["mfu_vs_matmul_bf16"] and step["achieved_tflops"] > 0
    ddp = result["ddp_syncbn"]
    assert ddp["backend"] == "gloo" and ddp["grads_finite"] and ddp["sync_bn_layers"] > 0
    stcl = result["stcl"]
    assert len(stcl["chunks"]) == 2 and stcl["chunk_losses_agree"]  # chunking is exact
    tta = result["tta"]
    assert tta["views"] == 4 and tta["flops_per_frame"] > 0
    assert tta["bf16"]["frames_per_s"] > 0 and tta["fp32"]["frames_per_s"] > 0
    assert 0.9 <= tta["argmax_agreement"] <= 1.0  # bf16 vs float32 argmax, random weights

    from stcl.plan.gpus import calibrate, gpu_by_name

    gpu = calibrate(gpu_by_name("H100"), out)
    assert gpu.rate("bf16", "train") == step["achieved_tflops"] * 1e12
    assert gpu.rate("off", "infer") == tta["fp32"]["achieved_tflops"] * 1e12
