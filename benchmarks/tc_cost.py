"""CPU time of TC per frame pair at 854×480: RAFT (the `stcl flow` stage) and the warp + count of one model.

Builds torchvision ``raft_large`` (`stcl.flow.raft.build_raft`) with random weights (the time does not
depend on the values), then times on random 854×480 frames:

* ``raft_flow``: padding to 856×480, 20 refinement iterations, the last flow (one pair at a time, float32,
  as the official TC_cal.py);
* ``warp_source``: the source map stored per pair (the official nearest-neighbour warp, on an index image);
* per model in `stcl evaluate --flows`: ``warp_labels`` + ``TCCounter.add`` on a 0..123 prediction;
* the compressed size of one pair's warp offsets (what the flows folder holds per pair) for a smooth flow
  (a 3 px pan with a 1% zoom: camera motion) and for the random-weight flow (noisy: an upper range).

It also prints the FLOPs of one pair counted on the meta device (`stcl.plan.flow.raft_pair_flops`) and the
CPU rate that implies. Usage (the machine's threads: set OMP_NUM_THREADS to compare)::

    nice -n 15 .venv/bin/python benchmarks/tc_cost.py [--pairs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs after one warm-up pair (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from stcl.flow.raft import build_raft, raft_flow
    from stcl.flow.store import encode_offsets
    from stcl.flow.warp import warp_labels, warp_source
    from stcl.metrics.tc import TCCounter
    from stcl.plan.flow import raft_pair_flops

    model = build_raft()
    g = torch.Generator().manual_seed(0)
    state = {
        k: (torch.randn(v.shape, generator=g) * 0.05 if v.is_floating_point() else v)
        for k, v in model.state_dict().items()
    }
    for k in state:
        if k.endswith("running_var"):
            state[k] = state[k].abs() + 1
    model.load_state_dict(state)

    h, w = 480, 854
    frames = torch.randint(0, 256, (args.pairs + 2, 3, h, w), generator=g, dtype=torch.uint8)
    raft_flow(model, frames[0:1], frames[1:2])  # warm-up
    t_raft, t_src, sizes, cpu_raft = [], [], [], []
    for i in range(1, args.pairs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        flow = raft_flow(model, frames[i : i + 1], frames[i + 1 : i + 2])[0]
        t1 = time.perf_counter()
        cpu_raft.append(time.process_time() - c0)
        src = warp_source(flow).numpy()
        t2 = time.perf_counter()
        t_raft.append(t1 - t0)
        t_src.append(t2 - t1)
        buf = io.BytesIO()
        np.savez_compressed(buf, offset=encode_offsets(src[None]))
        sizes.append(buf.tell())

    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    smooth = torch.stack([3 + 0.01 * (xs - w / 2), 0.01 * (ys - h / 2)])
    buf = io.BytesIO()
    np.savez_compressed(buf, offset=encode_offsets(warp_source(smooth).numpy()[None]))
    smooth_mb = buf.tell() / 1e6

    pred = np.random.default_rng(0).integers(0, 124, (h, w), dtype=np.uint8)
    counter = TCCounter()
    t0 = time.perf_counter()
    for _ in range(10):
        counter.add(pred, warp_labels(pred, src))
    t_model = (time.perf_counter() - t0) / 10

    flops = raft_pair_flops(h, w)
    raft_s = float(np.median(t_raft))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"TC cost per frame pair at {w}x{h} on CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores, "
          f"load average {load}; median of {args.pairs}):")
    cpu_s = float(np.median(cpu_raft))
    print(f"  RAFT flow (20 iterations, padded to 856x480): {raft_s:.2f} s wall, {cpu_s:.2f} s CPU time (all threads)"
          f"   ({flops / 1e9:.0f} GFLOP counted, {flops / raft_s / 1e9:.1f} GFLOP/s wall)")
    print(f"  source map (official warp on an index image): {np.median(t_src) * 1e3:.1f} ms")
    print(f"  per model (warp_labels + confusion count): {t_model * 1e3:.1f} ms")
    print(f"  stored per pair (npz compressed offsets): {smooth_mb:.2f} MB for a smooth pan + zoom, "
          f"{np.median(sizes) / 1e6:.2f} MB for the random-weight flow (raw int32 {h * w * 4 / 1e6:.2f} MB)")
    print(f"  total for the first 100 val videos (~7,043 pairs): RAFT {7043 * raft_s / 3600:.1f} h wall ({7043 * cpu_s / 3600:.1f} CPU-hours), "
          f"each model {7043 * t_model / 60:.1f} min")


if __name__ == "__main__":
    main()
