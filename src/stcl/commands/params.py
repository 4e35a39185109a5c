"""`stcl params`: print the validated params, the JSON schema, or check a file."""

from __future__ import annotations

import argparse
import json

import yaml

from stcl.params import load_params, params_json_schema


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--schema", action="store_true", help="print the JSON schema instead")


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(params_json_schema(), indent=2))
        return 0
    params = load_params(args.params)
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), end="")
    return 0
