"""`stcl params`: print the validated params, the JSON schema, or check a file."""

from __future__ import annotations

import argparse
import json

import yaml

from stcl.params import load_params, params_json_schema
from stcl.presets import PRESETS, preset_params, recipe_dict


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema instead")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="print a complete params.yaml of a preset instead (e.g. `stcl params --preset paper > params.yaml`)",
    )


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(params_json_schema(), indent=2))
        return 0
    params = preset_params(args.preset) if args.preset else load_params(args.params)
    if args.preset:
        print(f"# stcl params, preset {args.preset!r} (written by `stcl params --preset {args.preset}`)")
        print("# Every key is stated, each training stage section in full: edit a stage's own keys (`train:` fills")
        print("# only the keys a hand-written stage section leaves out).")
        if args.preset == "paper":
            print("# Swin-L needs ImageNet-22K weights: set model.pretrained to a local swin_large_patch4_window12_384 file.")
        if args.preset in ("dinov2", "dinov3"):
            print(
                "# NOT the paper: its recipe on a DINO ViT-L encoder, with mmseg's BEiT-L UperNet optimizer settings "
                "(no published VSPW\n# number to match). Set model.pretrained to the official or timm weights file "
                "(`stcl weights FILE` checks it)."
            )
    print(yaml.safe_dump(recipe_dict(params), sort_keys=False, default_flow_style=None, width=110), end="")
    return 0
