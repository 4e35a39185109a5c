"""`stcl synth`: write the embedded mini datasets (VSPW, COCO panoptic, ADE20K formats) into --out."""

from __future__ import annotations

import argparse
import json
import sys
import time

from stcl.params import load_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder; writes VSPW_480p/, coco/, ADEChallengeData2016/")
    p.add_argument("--params", default="params.yaml", help="params file; reads the `synth` section (default: params.yaml)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from stcl.data.synthetic import write_all

    params = load_params(args.params).synth
    total = sum(params.videos.model_dump().values()) + sum(params.coco_images.model_dump().values()) + sum(
        params.ade_images.model_dump().values()
    )
    start = time.perf_counter()
    with tqdm(total=total, desc="synth", unit="item", disable=not sys.stderr.isatty()) as bar:
        report = write_all(args.out, params, progress=bar.update)
    print(json.dumps({"out": str(args.out), "written": report, "seconds": round(time.perf_counter() - start, 2)}))
    return 0
