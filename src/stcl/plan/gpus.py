"""Per-GPU peak rates and memory, the utilisation applied to them, and calibration from benchmarks/gpu_check.py.

Peak dense tensor rates (TFLOP/s, no sparsity) from NVIDIA's data sheets: H100 SXM5 80GB (bf16 989.4,
fp32 66.9), A100 SXM4 80GB and 40GB (bf16 312, fp32 19.5), V100 SXM2 32GB (fp16 125, fp32 15.7; no
bf16 tensor cores: bf16 runs at the fp32 rate there). "fp32" is plain float32: PyTorch keeps TF32
matmuls off by default (``torch.backends.cuda.matmul.allow_tf32 = False``) and Swin-L is matmul-bound.

A projection multiplies the peak by ``utilisation`` (model FLOP utilisation, MFU). The default 0.35 is a
stated assumption for Swin-L UperNet (window attention and many small kernels keep it well below matmul
peak); `calibrate` replaces the table rate with what `benchmarks/gpu_check.py` measured on a real GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["GPU", "GPUS", "DEFAULT_UTILISATION", "gpu_by_name", "calibrate"]

DEFAULT_UTILISATION = 0.35
GIB = 1024**3


@dataclass(frozen=True)
class GPU:
    """One GPU model: memory (bytes) and achieved rates (FLOP/s) per autocast mode ("off", "bf16", "fp16")."""

    name: str
    memory: int
    peak: dict[str, float]  # TFLOP/s per amp mode, dense
    utilisation: float = DEFAULT_UTILISATION
    measured: dict[str, float] | None = None  # FLOP/s per (kind, amp) key "train/bf16", "infer/off", ...

    def rate(self, amp: str, kind: str = "train") -> float:
        """FLOP/s one GPU sustains for ``kind`` ("train" or "infer") work in autocast mode ``amp``."""
        if self.measured and f"{kind}/{amp}" in self.measured:
            return self.measured[f"{kind}/{amp}"]
        return self.peak[amp] * 1e12 * self.utilisation


def _gpu(name: str, gib: int, bf16: float, fp16: float, fp32: float) -> GPU:
    return GPU(name, gib * GIB, {"bf16": bf16, "fp16": fp16, "off": fp32})


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        _gpu("H100", 80, 989.4, 989.4, 66.9),
        _gpu("A100-80GB", 80, 312.0, 312.0, 19.5),
        _gpu("A100-40GB", 40, 312.0, 312.0, 19.5),
        _gpu("V100", 32, 15.7, 125.0, 15.7),
    )
}


def gpu_by_name(name: str, utilisation: float | None = None) -> GPU:
    """The table entry ``name`` (ValueError listing the valid names), optionally at another utilisation."""
    if name not in GPUS:
        raise ValueError(f"--gpu must be one of {', '.join(GPUS)}, got {name!r}")
    if utilisation is not None and not 0 < utilisation <= 1:
        raise ValueError(f"--utilisation must be in (0, 1], got {utilisation}")
    gpu = GPUS[name]
    return gpu if utilisation is None else replace(gpu, utilisation=utilisation)


def calibrate(gpu: GPU, check_json: str | Path) -> GPU:
    """``gpu`` with the rates and memory that benchmarks/gpu_check.py measured (its JSON file).

    Uses ``train_step.achieved_tflops`` (bf16 training), ``tta.bf16.achieved_tflops`` and
    ``tta.fp32.achieved_tflops`` (inference) and ``device.memory_bytes``; ValueError naming the file if the
    JSON lacks them.
    """
    path = Path(check_json)
    try:
        data = json.loads(path.read_text())
        measured = {
            "train/bf16": data["train_step"]["achieved_tflops"] * 1e12,
            "infer/bf16": data["tta"]["bf16"]["achieved_tflops"] * 1e12,
            "infer/off": data["tta"]["fp32"]["achieved_tflops"] * 1e12,
        }
        memory = int(data["device"]["memory_bytes"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a gpu_check.py result ({type(err).__name__}: {err})") from None
    return replace(gpu, name=f"{data['device'].get('name', gpu.name)} (measured)", memory=memory, measured=measured)
