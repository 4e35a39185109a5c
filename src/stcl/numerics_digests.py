"""Fingerprints of the float32 CPU arithmetic training runs on: do two machines compute the same bits?

`stcl.numerics` caps oneDNN, MKL and ATen at their AVX2 kernels so that every x86-64 machine trains the same
weights. Whether that holds on a given machine is a question of bits, answered here in two ways:

- `op_digests`: each kernel family the default models train with (convolutions of the ResNet stem and
  blocks, linear layers, attention's batched products and softmax, batch and layer norm, activations,
  resizing, pooling, the cross-entropy with an ignore label, reductions, the AdamW and SGD updates, torch's
  seeded RNG), run forward and backward on fixed inputs at 1 and at 2 threads. The inputs come from numpy's
  PCG64 generator (the same bits on every machine), never from torch's RNG; every output and every gradient
  is hashed (the first 16 hex digits of the sha256 of its float32 bytes).
- `tensor_digests` / `weights_digest`: every tensor of a trained ``model.pt``, and one digest over all of
  them, to compare whole training runs.

Two machines with equal op digests run the same arithmetic for these kernels; the first op that differs
is where their trained weights start to part. The digests of the measured machines are committed under
``tests/data/numerics/`` and checked by ``tests/test_numerics_digests.py``. From the repository root:

    .venv/bin/python -m stcl.numerics_digests --compare tests/data/numerics/*.json
    .venv/bin/python -m stcl.numerics_digests --out this_machine.json --model results/models/*/model.pt

The pinned setting is applied (`stcl.numerics.apply`, as by every ``stcl`` command) before torch is
imported, unless the environment already sets the variables or ``STCL_PORTABLE_NUMERICS`` is off; the
JSON records which values were in effect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from stcl import numerics

__all__ = [
    "THREADS",
    "compare",
    "machine_info",
    "measure",
    "op_digests",
    "tensor_digests",
    "weights_digest",
]

THREADS = (1, 2)  # each op runs at these torch thread counts: a reduction split over more threads sums differently
_ENV_RECORDED = (*numerics.PORTABLE, numerics.ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC",
                 "MKL_ENABLE_INSTRUCTIONS")


def _array(*shape: int, seed: int, scale: float = 1.0):
    """Standard-normal float32 values from numpy's PCG64 with this seed, times ``scale``, as a torch tensor."""
    import numpy as np
    import torch

    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * np.float32(scale)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _leaf(*shape: int, seed: int, scale: float = 1.0):
    return _array(*shape, seed=seed, scale=scale).requires_grad_(True)


def _hex(t) -> str:
    """First 16 hex digits of the sha256 of a tensor's bytes."""
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:16]


def _forward_backward(out: dict[str, str], name: str, fn: Callable, inputs: list) -> None:
    """Record ``name`` (the output's digest) and ``name.gradI`` (each input's gradient) for ``fn(*inputs)``.

    The backward pass starts from a fixed upstream gradient (PCG64 seed 99, the output's shape).
    """
    y = fn(*inputs)
    y.backward(_array(max(y.numel(), 1), seed=99).reshape(y.shape))
    out[name] = _hex(y)
    for i, t in enumerate(inputs):
        if t.grad is not None:
            out[f"{name}.grad{i}"] = _hex(t.grad)


def _optimizer_steps(opt_class, seed: int, grad_seed: int, **kwargs) -> Any:
    """A 256×256 weight after three steps of ``opt_class`` with the gradients of fixed random products."""
    import torch

    w = _leaf(256, 256, seed=seed)
    opt: torch.optim.Optimizer = opt_class([w], **kwargs)
    for step in range(3):
        opt.zero_grad()
        (w * _array(256, 256, seed=grad_seed + step)).sum().backward()
        opt.step()
    return w


def op_digests() -> dict[str, str]:
    """Digest of every op's output and gradients at torch's current thread count (names as ``conv3x3_64.grad1``)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    d: dict[str, str] = {}
    fb = lambda name, fn, *inputs: _forward_backward(d, name, fn, list(inputs))  # noqa: E731
    # convolutions as in a ResNet: 3×3 and 1×1 blocks, the 7×7 stride-2 stem, a stride-2 downsampling 3×3
    fb("conv3x3_64", lambda a, w: F.conv2d(a, w, padding=1),
       _leaf(2, 64, 24, 32, seed=1), _leaf(64, 64, 3, 3, seed=2, scale=0.05))
    fb("conv1x1_256_64", lambda a, w: F.conv2d(a, w),
       _leaf(2, 256, 24, 32, seed=3), _leaf(64, 256, 1, 1, seed=4, scale=0.05))
    fb("conv7x7_s2_stem", lambda a, w: F.conv2d(a, w, stride=2, padding=3),
       _leaf(2, 3, 96, 128, seed=5), _leaf(64, 3, 7, 7, seed=6, scale=0.1))
    fb("conv3x3_s2_128", lambda a, w: F.conv2d(a, w, stride=2, padding=1),
       _leaf(2, 64, 48, 64, seed=7), _leaf(128, 64, 3, 3, seed=8, scale=0.05))
    # 1×1 convolutions of UperNet's pyramid pooling on its pooled 1×1 and 3×3 maps: small matrix products
    # where MKL's own dispatch and its reproducible AVX2 branch (MKL_CBWR) sum differently, even on AVX2
    # (measured at 1 thread; added after the first two machines were measured)
    for size in (1, 3):
        fb(f"conv1x1_pooled_{size}", lambda a, w: F.conv2d(a, w),
           _leaf(4, 512, size, size, seed=60 + size), _leaf(64, 512, 1, 1, seed=70 + size, scale=0.05))
    # matrix products: a linear layer (MKL's sgemm) and attention's scores with their softmax
    fb("linear_512_384", lambda a, w, b: F.linear(a, w, b),
       _leaf(1024, 512, seed=9), _leaf(384, 512, seed=10, scale=0.05), _leaf(384, seed=11))
    fb("bmm_attn", lambda q, k: torch.bmm(q, k.transpose(1, 2)).softmax(-1),
       _leaf(8, 144, 32, seed=12), _leaf(8, 144, 32, seed=13))
    # normalisation and activations
    fb("batchnorm_train", lambda a, w, b: F.batch_norm(a, None, None, w, b, training=True),
       _leaf(4, 64, 24, 32, seed=14), _leaf(64, seed=15), _leaf(64, seed=16))
    fb("relu", F.relu, _leaf(4, 64, 24, 32, seed=17))
    fb("gelu", F.gelu, _leaf(4, 64, 24, 32, seed=18))
    fb("layer_norm", lambda a: F.layer_norm(a, (96,)), _leaf(4, 576, 96, seed=19))
    # resizing and pooling of the decode heads (UperNet's PPM, the logits' upsampling)
    fb("interp_up_bilinear", lambda a: F.interpolate(a, size=(96, 128), mode="bilinear", align_corners=False),
       _leaf(2, 8, 24, 32, seed=20))
    fb("interp_down_bilinear", lambda a: F.interpolate(a, size=(17, 23), mode="bilinear", align_corners=False),
       _leaf(2, 8, 48, 64, seed=21))
    fb("adaptive_avg_pool_6", lambda a: F.adaptive_avg_pool2d(a, 6), _leaf(2, 64, 24, 32, seed=22))
    fb("max_pool_3s2", lambda a: F.max_pool2d(a, 3, 2, 1), _leaf(2, 64, 48, 64, seed=23))
    # the losses: cross-entropy over 124 classes with ignored pixels, and the contrastive head's pieces
    labels = torch.from_numpy(np.random.default_rng(24).integers(0, 124, (2, 96, 128)))
    labels[:, :10] = 255
    fb("cross_entropy_ignore", lambda a: F.cross_entropy(a, labels, ignore_index=255),
       _leaf(2, 124, 96, 128, seed=25))
    fb("log_softmax", lambda a: F.log_softmax(a, 1), _leaf(2, 124, 24, 32, seed=26))
    fb("normalize_cosine", lambda a: F.normalize(a, dim=1) @ F.normalize(a, dim=1).T / 0.07, _leaf(512, 64, seed=27))
    # plain reductions and transcendental functions (no backward)
    d["sum_1M"] = _hex(_array(1 << 20, seed=28).sum().reshape(1))
    d["mean_dim"] = _hex(_array(64, 4096, seed=29).mean(1))
    d["exp_log_sqrt"] = _hex(torch.sqrt(torch.exp(_array(1 << 16, seed=30, scale=0.5)).log1p()))
    # the optimisers' updates, and torch's own seeded generator (what initialises new layers)
    d["adamw_3_steps"] = _hex(_optimizer_steps(torch.optim.AdamW, 31, 40, lr=7e-5, weight_decay=0.01))
    d["sgd_3_steps"] = _hex(_optimizer_steps(torch.optim.SGD, 32, 50, lr=0.01, momentum=0.9, weight_decay=1e-4))
    torch.manual_seed(0)
    d["torch_randn_seeded"] = _hex(torch.randn(4096))
    return d


def measure(threads: Iterable[int] = THREADS) -> dict[str, str]:
    """`op_digests` at each thread count, as ``{"conv3x3_64@2t": digest, ...}``; torch's thread count is restored."""
    import torch

    before = torch.get_num_threads()
    found: dict[str, str] = {}
    try:
        for n in threads:
            torch.set_num_threads(n)
            found.update({f"{k}@{n}t": v for k, v in op_digests().items()})
    finally:
        torch.set_num_threads(before)
    return found


def tensor_digests(path: Path) -> dict[str, str]:
    """The digest of every tensor of a ``model.pt`` (its ``state_dict``), by name; integer tensors as float32."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    return {k: _hex(v.float()) for k, v in state.items() if isinstance(v, torch.Tensor)}


def weights_digest(tensors: Mapping[str, str]) -> str:
    """One digest over a model's tensor digests (`tensor_digests`), in name order: equal iff every tensor is."""
    lines = "".join(f"{k} {v}\n" for k, v in sorted(tensors.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def _library_version(pattern: str) -> str | None:
    """A version from torch's build description (``torch.__config__.show()``), or None."""
    import torch

    found = re.search(pattern, torch.__config__.show())
    return found.group(1) if found else None


def machine_info() -> dict[str, Any]:
    """What identifies the arithmetic: CPU model and vector flags, torch and its libraries, the settings."""
    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []

    def first(field: str) -> str | None:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.split(":")[0].strip() == field), None)

    flags = (first("flags") or "").split()
    return {
        "cpu": first("model name") or platform.processor(),
        "cpu_family_model_stepping": [first("cpu family"), first("model"), first("stepping")],
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma"))),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "onednn": _library_version(r"MKL-DNN v(\S+)"),
        "mkl": _library_version(r"Math Kernel Library Version (\S+)"),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ.get(k) for k in _ENV_RECORDED},
    }


def compare(mine: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """The names of ``mine`` whose digest differs in ``theirs`` (or that ``theirs`` lacks), in ``mine``'s order."""
    return [k for k in mine if theirs.get(k) != mine[k]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stcl.numerics_digests", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write this machine's digests here (JSON; '-' for stdout)")
    ap.add_argument("--compare", type=Path, nargs="+", default=[], metavar="JSON",
                    help="digests of other machines (this tool's JSON): print the ops and tensors that differ")
    ap.add_argument("--model", type=Path, nargs="*", default=[], metavar="MODEL_PT",
                    help="model.pt files whose tensors to hash too (compared by the path as given)")
    ap.add_argument("--threads", type=int, nargs="+", default=list(THREADS), metavar="N",
                    help=f"torch thread counts to run the ops at (default: {' '.join(map(str, THREADS))})")
    args = ap.parse_args(argv)
    try:
        numerics.apply()  # before torch is imported (below, by measure)
    except numerics.NumericsError as err:
        print(f"{ap.prog}: error: {err}", file=sys.stderr)
        return 1
    ops = measure(args.threads)
    models = {str(p): tensor_digests(p) for p in args.model}
    result = {
        "info": machine_info(),
        "digests": ops,
        "models": models,
        "model_digests": {k: weights_digest(v) for k, v in models.items()},
    }
    if args.out is not None:
        text = json.dumps(result, indent=1) + "\n"
        sys.stdout.write(text) if str(args.out) == "-" else args.out.write_text(text)
    info = result["info"]
    for other_path in args.compare:
        other = json.loads(other_path.read_text())
        differ = compare(ops, other["digests"])
        print(f"{other_path}: this machine {info['cpu']} ({info['aten_capability']}, torch {info['torch']}), "
              f"that one {other['info']['cpu']} ({other['info'].get('aten_capability')}, "
              f"torch {other['info'].get('torch')})")
        print(f"  {len(ops) - len(differ)} of {len(ops)} op digests equal; "
              f"differ: {', '.join(differ) if differ else 'none'}")
        for name, tensors in models.items():
            theirs = other.get("models", {}).get(name)
            if theirs is None:  # a file with one digest per model (tests/data/numerics/) only
                whole = other.get("model_digests", {}).get(name)
                verdict = "not in that file" if whole is None else (
                    "every tensor equal" if whole == weights_digest(tensors) else "differs (weights digest)")
                print(f"  {name}: {verdict}")
                continue
            parted = compare(tensors, theirs)
            print(f"  {name}: {len(tensors) - len(parted)} of {len(tensors)} tensors equal"
                  + (f"; first that differs: {parted[0]}" if parted else ""))
    if args.out is None and not args.compare:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
