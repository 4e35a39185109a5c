"""`stcl ablation NAME --out FILE`: write the complete params file of one paper ablation (Tables 1-3)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="baseline_<backbone>, train_coco, train_nostcl, stcl_d<dim>_t<tau>, or the negative control train_stcl_shuffled")
    p.add_argument("--params", default="params.yaml", help="base params file (default: params.yaml)")
    p.add_argument("--out", required=True, help="params file to write (e.g. results/ablations/NAME/params.yaml)")


def run(args: argparse.Namespace) -> int:
    from stcl.ablations import ablation, ablation_overrides, ablation_params, pretrained_note
    from stcl.params import load_params
    from stcl.presets import recipe_dict

    spec = ablation(args.name)
    base = load_params(args.params)
    params = ablation_params(base, args.name)
    note = pretrained_note(base, args.name)
    if note is not None:
        print(f"stcl ablation: note: {note}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    overrides = ablation_overrides(base, args.name)
    header = f"# ablation {spec.name}: {args.params} with overrides {overrides} (stage {spec.stage})\n"
    body = yaml.safe_dump(recipe_dict(params), sort_keys=False, default_flow_style=None, width=110)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(header + body)
    os.replace(tmp, out)
    print(f"stcl ablation: wrote {out}")
    return 0
