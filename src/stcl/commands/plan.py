"""`stcl plan`: work, projected GPU time, wall time and memory of every job at the current params.

    stcl plan [--params params.yaml] [--gpu A100-80GB] [--gpus 8] [--utilisation 0.35]
              [--calibration gpu_check.json] [--nodes 1,2,4] [--link-gbit 100,400] [--json] [--strict]

``--nodes`` adds the training stages on each node count (`stcl.plan.nodes`: layout, compute, gradient
all-reduce over the inter-node link); with ``cluster.train.nodes > 1`` in params that count is shown.

Exit status 0; with ``--strict`` 1 when there are warnings (for scripts that must not submit then).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stcl.plan.gpus import GPUS

    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--preset", default=None, help="plan a preset (e.g. paper) instead of --params")
    p.add_argument("--gpu", default="A100-80GB", choices=sorted(GPUS), help="GPU model (default: A100-80GB)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs available to the workflow (default: 8)")
    p.add_argument("--utilisation", type=float, default=None, help="fraction of peak sustained (default: 0.35)")
    p.add_argument("--calibration", default=None, help="JSON of benchmarks/gpu_check.py: use its measured rates")
    p.add_argument("--nodes", type=_counts(int), default=None, help="node counts to plan training on, e.g. 1,2,4")
    p.add_argument(
        "--link-gbit", type=_counts(float), default=None, help="inter-node link speeds in Gb/s (default: 100,400)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")


def _counts(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return parse


def run(args: argparse.Namespace) -> int:
    from stcl.params import load_params, preset_params
    from stcl.plan.gpus import calibrate, gpu_by_name
    from stcl.plan.flow import flow_plans
    from stcl.plan.jobs import pipeline_jobs, plan_jobs
    from stcl.plan.nodes import LINKS_GBIT, nodes_dict, nodes_table, plan_nodes
    from stcl.plan.report import plan_dict, plan_table

    params = preset_params(args.preset) if args.preset else load_params(args.params)
    gpu = gpu_by_name(args.gpu, args.utilisation)
    if args.calibration:
        gpu = calibrate(gpu, args.calibration)
    plans = plan_jobs(params, pipeline_jobs(params), gpu, args.gpus)
    plans += flow_plans(params, gpu)  # RAFT for TC, when tc.raft_weights is set
    node_counts = args.nodes or ((params.cluster.train.nodes,) if params.cluster.train.nodes > 1 else ())
    rows = plan_nodes(params, gpu, node_counts, args.link_gbit or LINKS_GBIT) if node_counts else []
    if args.json:
        out = plan_dict(plans, gpu, args.gpus)
        if rows:
            out["nodes"] = nodes_dict(rows)
        print(json.dumps(out, indent=2))
    else:
        print(plan_table(plans, gpu, args.gpus))
        if rows:
            print(nodes_table(rows, gpu))
    warned = any(p.warnings for p in plans) or any(r.warnings for r in rows)
    return 1 if args.strict and warned else 0
