"""STCL: naive N×(N+M) matrix vs our chunked, checkpointed implementation — time and peak memory.

Each case runs in a fresh Python process, so peak memory is that case's alone: on CPU the process's peak
RSS (``resource.getrusage``) minus its RSS just before the loss call; on CUDA ``max_memory_allocated``
minus the memory allocated before the call. Inputs: one query frame of N = h·w pixels and one reference
frame of M = N pixels, D-dim features, random labels over ``--classes`` classes (no ignored pixels).
"forward" builds the graph as training does (inputs require grad); "fwd+bwd" also runs backward.
Cases whose estimated memory exceeds ``--max-gb`` are skipped with the estimate printed, not run.

    .venv/bin/python benchmarks/stcl_memory.py                       # CPU table, N = M ∈ {1024, 4096, 16384}
    .venv/bin/python benchmarks/stcl_memory.py --device cuda --crop 768 --refs 2   # one 768² crop, stride 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

DEFAULT_SIZES = (1024, 4096, 16384)


def naive_stcl(query, query_labels, references, reference_labels, tau: float):
    """Eq. 1-2 with the full anchor × key matrix (ContrastiveSeg style), for B = 1 and no ignored pixels."""
    import torch
    import torch.nn.functional as F

    d = query.shape[1]
    anchors = F.normalize(query[0], dim=0).flatten(1).T  # (N,D)
    refs = F.normalize(references[0], dim=1).permute(0, 2, 3, 1).reshape(-1, d)  # (M,D)
    keys = torch.cat([anchors, refs])
    a_lab = query_labels[0].flatten()
    k_lab = torch.cat([a_lab, reference_labels[0].flatten()])
    logits = anchors @ keys.T / tau  # (N,N+M)
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    same = (a_lab[:, None] == k_lab[None, :]).float()
    pos = same.clone()
    pos[torch.arange(len(anchors)), torch.arange(len(anchors))] = 0.0  # the anchor itself
    exp = torch.exp(logits)
    neg_sum = (exp * (1.0 - same)).sum(dim=1, keepdim=True)
    log_prob = logits - torch.log(exp + neg_sum)
    num_pos = pos.sum(dim=1)
    has = num_pos > 0
    per_anchor = -(pos * log_prob).sum(dim=1)[has] / num_pos[has]
    return per_anchor.mean()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_case(
    impl: str, n: int, dim: int, classes: int, refs: int, mode: str, device: str, chunk: int, threads: int
) -> dict:
    """One measurement in this process; returns a JSON-able dict."""
    import torch

    from stcl.losses import spatial_temporal_consistency_loss

    torch.set_num_threads(threads)
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"--sizes: {n} is not a square number of pixels")

    def inputs(s: int):
        g = torch.Generator().manual_seed(0)
        q = torch.randn(1, dim, s, s, generator=g).to(device).requires_grad_(True)
        r = torch.randn(1, refs, dim, s, s, generator=g).to(device).requires_grad_(True)
        ql = torch.randint(0, classes, (1, s, s), generator=g).to(device)
        rl = torch.randint(0, classes, (1, refs, s, s), generator=g).to(device)
        return q, ql, r, rl

    def fn(q, ql, r, rl):
        if impl == "naive":
            return naive_stcl(q, ql, r, rl, 0.07)
        return spatial_temporal_consistency_loss(q, ql, r, rl, 0.07, chunk_size=chunk)

    fn(*inputs(4)).backward()  # warm-up: lazy imports and kernels are not the case's cost
    q, ql, r, rl = inputs(side)

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    start = time.perf_counter()
    loss = fn(q, ql, r, rl)
    if mode == "fwd+bwd":
        loss.backward()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"impl": impl, "n": n, "mode": mode, "seconds": elapsed, "peak_bytes": peak, "loss": float(loss)}


def _spawn(args: argparse.Namespace, impl: str, n: int, mode: str) -> dict:
    case = [impl, str(n), mode]
    cmd = [sys.executable, os.path.abspath(__file__), "--case", *case]
    cmd += ["--dim", str(args.dim), "--classes", str(args.classes), "--refs", str(args.refs)]
    cmd += ["--device", args.device, "--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"impl": impl, "n": n, "mode": mode, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_gb(b: float) -> str:
    return f"{b / 2**30:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="N = M pixels per frame")
    p.add_argument("--crop", type=int, default=None, help="one crop of this side at stride 4 (overrides --sizes)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--refs", type=int, default=1, help="reference frames (M = refs · N)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-gb", type=float, default=8.0, help="skip cases estimated above this (shared machines)")
    p.add_argument("--case", nargs=3, metavar=("IMPL", "N", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.case:
        impl, n, mode = args.case
        res = run_case(
            impl, int(n), args.dim, args.classes, args.refs, mode, args.device, args.chunk_size, args.threads
        )
        print(json.dumps(res))
        return 0

    sizes = [(args.crop // 4) ** 2] if args.crop else args.sizes
    print(
        f"# STCL benchmark: D={args.dim}, {args.classes} classes, M={args.refs}·N, device={args.device}, "
        f"threads={args.threads}, our chunk_size={args.chunk_size}; each case a fresh process"
    )
    print("| N | M | mode | naive time | naive peak | ours time | ours peak | time ratio | |Δloss| |")
    print("|---|---|---|---|---|---|---|---|---|")
    naive_bytes_per_entry: dict[str, float] = {}
    for n in sizes:
        k = n * (1 + args.refs)
        for mode in ("forward", "fwd+bwd"):
            per_entry = naive_bytes_per_entry.get(mode)
            estimate = per_entry * n * k if per_entry else 4.0 * 4 * n * k
            if estimate > args.max_gb * 2**30:
                naive = {"skipped": f"skipped (est. {_fmt_gb(estimate)})"}
            else:
                naive = _spawn(args, "naive", n, mode)
                if "peak_bytes" in naive:  # the largest size measured so far extrapolates best
                    naive_bytes_per_entry[mode] = naive["peak_bytes"] / (n * k)
            ours = _spawn(args, "ours", n, mode)
            cells = [str(n), str(n * args.refs), mode]
            for res in (naive, ours):
                if "skipped" in res:
                    cells += [res["skipped"], "—"]
                elif "error" in res:
                    cells += [f"error: {res['error']}", "—"]
                else:
                    cells += [f"{res['seconds']:.3f} s", _fmt_gb(res["peak_bytes"])]
            both = all("seconds" in x for x in (naive, ours))
            cells.append(f"{ours['seconds'] / naive['seconds']:.2f}×" if both else "—")
            cells.append(
                f"{abs(ours['loss'] - naive['loss']):.1e}"
                if both
                else f"ours loss {ours.get('loss', float('nan')):.6f}"
            )
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
