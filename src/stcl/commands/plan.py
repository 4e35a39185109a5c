"""`stcl plan`: work, projected GPU time, wall time and memory of every job of the workflow at the given params.

    stcl plan [--params params.yaml | --preset paper] [--workflow .] [--gpu A100-80GB] [--gpus 8]
              [--utilisation 0.35] [--calibration gpu_check.json] [--nodes 1,2,4] [--link-gbit 100,400]
              [--json] [--strict]

The jobs are Snakemake's: the DAG of the default target of the workflow in ``--workflow`` (the folder of
the Snakefile, default the current one), built with the params file as ``--configfile``, every job as
``snakemake -n --forceall`` lists it (`stcl.plan.graph`). The dataset roots need not exist yet.
``--nodes`` adds the training stages on each node count (`stcl.plan.nodes`: layout, compute, gradient
all-reduce over the inter-node link); with ``cluster.train.nodes > 1`` in params that count is shown.
``--nodes`` and ``--link-gbit`` take comma-separated numbers > 0, each planned once; an empty list or item
(``''``, ``1,,2``) is a usage error (exit 2).
Exit status 0; with ``--strict`` 1 when there are warnings (for scripts that must not submit then).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stcl.plan.gpus import GPUS

    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--preset", default=None, help="plan a preset (e.g. paper) instead of --params")
    p.add_argument("--workflow", type=Path, default=Path("."), help="folder of the Snakefile (default: .)")
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
    """Comma-separated positive numbers, each once in the order given (``2,2,4`` → (2, 4)); an empty list or
    item (``''``, ``1,,2``) is refused."""

    def parse(text: str) -> tuple:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            values = []
        if not values or not all(0 < v < float("inf") for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0 such as 1,2,4, got {text!r}")
        return tuple(dict.fromkeys(values))

    return parse


def graph_jobs(params, params_file: Path | None, workflow: Path):
    """The jobs of the workflow's default target at ``params`` (written to a scratch file when a preset)."""
    import tempfile

    import yaml

    from stcl.plan.graph import graph_workdir, snakemake_jobs

    if not (workflow / "Snakefile").is_file():
        raise FileNotFoundError(f"{workflow / 'Snakefile'}: no Snakefile (give --workflow, the repository folder)")
    data = params.data
    roots = [] if data.synthetic else [Path(data.vspw_root), Path(data.coco_root), Path(data.ade_root)]
    if data.unlabeled.source == "folder" and data.unlabeled.folder is not None:
        roots.append(Path(data.unlabeled.folder))
    if params.tc.raft_weights is not None:
        roots.append(Path(params.tc.raft_weights))  # the `flow` job's input
    with tempfile.TemporaryDirectory(prefix="stcl-plan-params-") as tmp:
        if params_file is None:
            params_file = Path(tmp) / "params.yaml"
            params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        with graph_workdir(roots) as workdir:
            return snakemake_jobs(workflow.resolve(), configfile=params_file.resolve(), workdir=workdir)


def run(args: argparse.Namespace) -> int:
    from stcl.params import load_params
    from stcl.presets import preset_params
    from stcl.plan.gpus import calibrate, gpu_by_name
    from stcl.plan.jobs import graph_specs, plan_jobs
    from stcl.plan.nodes import LINKS_GBIT, nodes_dict, nodes_table, plan_nodes
    from stcl.plan.report import plan_dict, plan_table

    params = preset_params(args.preset) if args.preset else load_params(args.params)
    gpu = gpu_by_name(args.gpu, args.utilisation)
    if args.calibration:
        gpu = calibrate(gpu, args.calibration)
    jobs = graph_jobs(params, None if args.preset else Path(args.params), args.workflow)
    plans = plan_jobs(params, graph_specs(params, jobs), gpu, args.gpus)
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
