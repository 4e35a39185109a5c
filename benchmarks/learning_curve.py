"""Learning curve of one training stage: val mIoU / VC8 after separate runs of several lengths.

Each length is its own `stcl train` run (the poly schedule ends at that length, as a run of that length
would), started from the same init and seed as the stage in the chain; each model is then scored on the
val split with the teacher's TTA (the pseudo-label views, ``pseudo_label.scales`` × flip) or, with
``--tta infer``, the evaluation TTA (``infer.scales`` × flip). Use it to pick ``train.iters`` and the
stages' own lengths: a stage is near convergence where doubling its length changes val mIoU by less than
the seeds' spread.

Run it in a chain's working directory (one that README command 1 has filled: ``data/`` and, for stages
that start from COCO-pre, ``results/models/pretrain_coco/model.pt``):

    nice -n 10 .venv/bin/python benchmarks/learning_curve.py --workdir . --stage train_stcl \\
        --iters 100 200 400 800 --out results/learning_curve_train_stcl.json

Each finished length is kept under ``<workdir>/learning_curve/<stage>_<iters>/``; a rerun skips the lengths
already scored. The table (iters, wall seconds, val mIoU, VC8, final training loss) is printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from recipe_claims import train_data_args  # the stage's data and init arguments, as the workflow passes them

BIN = Path(sys.executable).parent


def train(workdir: Path, params: dict[str, Any], stage: str, iters: int, out: Path) -> float:
    """One `stcl train` run of ``stage`` with ``iters`` iterations into ``out``; returns its wall seconds."""
    run = json.loads(json.dumps(params))
    run.setdefault(stage, {})["iters"] = iters
    out.mkdir(parents=True, exist_ok=True)
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump(run, sort_keys=False))
    cmd = [str(BIN / "stcl"), "train", "--params", str(params_file), "--stage", stage,
           *train_data_args(run, stage), "--out", str(out)]  # data paths relative to the workdir (the cwd)
    start = time.monotonic()
    with open(out / "train.log", "w") as log:
        done = subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}); see {out / 'train.log'}")
    return time.monotonic() - start


def score(workdir: Path, params: dict[str, Any], model: Path, tta_kind: str) -> dict[str, float]:
    """val mIoU, VC8 and VC16 (percent) of one model."""
    from stcl.data import vspw
    from stcl.infer.ensemble import load_models
    from stcl.infer.frames import frame_probs, to_class_ids
    from stcl.infer.multiscale import pseudo_label_tta, tta_from_params
    from stcl.metrics.evaluate import evaluate_arrays
    from stcl.params import Params

    typed = Params.model_validate(params)
    tta = pseudo_label_tta(typed) if tta_kind == "teacher" else tta_from_params(typed.infer)
    models = load_models({"m": model})
    root = workdir / params["data"]["vspw_root"]
    videos, classes = {}, 0
    for video in vspw.read_split(root, "val"):
        stems = vspw.list_masks(root, video)
        frames = ((s, vspw.load_image(vspw.frame_path(root, video, s))) for s in stems)
        preds = []
        for _, _, probs in frame_probs(models, tta, frames, "cpu"):
            classes = probs["m"].shape[0]
            preds.append(to_class_ids(probs["m"]))
        gts = [vspw.load_train_ids(vspw.mask_path(root, video, s)) for s in stems]
        videos[video] = (gts, preds)
    result = evaluate_arrays(videos, num_classes=classes)
    return {"mIoU": 100 * result.mIoU, "VC8": 100 * result.vc[8], "VC16": 100 * result.vc[16]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("."))
    ap.add_argument("--params", type=Path, default=None, help="default: <workdir>/params.yaml")
    ap.add_argument("--stage", default="train_stcl")
    ap.add_argument("--iters", type=int, nargs="+", required=True)
    ap.add_argument("--tta", choices=("teacher", "infer"), default="teacher")
    ap.add_argument("--out", type=Path, required=True, help="JSON of the curve")
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    params = yaml.safe_load((args.params or workdir / "params.yaml").read_text())
    rows = []
    for iters in args.iters:
        out = workdir / "learning_curve" / f"{args.stage}_{iters}"
        record = out / "curve_point.json"
        if record.exists():
            rows.append(json.loads(record.read_text()))
            continue
        seconds = train(workdir, params, args.stage, iters, out)
        metrics = json.loads((out / "train_metrics.json").read_text())
        row = {"iters": iters, "seconds": seconds, **score(workdir, params, out / "model.pt", args.tta),
               "final_window_loss": metrics.get("final_window_loss")}
        tmp = record.with_name(record.name + ".tmp")
        tmp.write_text(json.dumps(row, indent=1))
        os.replace(tmp, record)
        rows.append(row)
        print(f"{args.stage} {iters} iters: mIoU {row['mIoU']:.2f}, VC8 {row['VC8']:.2f} ({seconds:.0f} s)", flush=True)
    lines = [f"{args.stage}, val, {args.tta} TTA", "", "| iters | train s | mIoU | VC8 | VC16 | final loss |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['iters']} | {r['seconds']:.0f} | {r['mIoU']:.2f} | {r['VC8']:.2f} | {r['VC16']:.2f} | "
              f"{r['final_window_loss']:.3f} |" for r in rows]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps({"stage": args.stage, "tta": args.tta, "rows": rows}, indent=1))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
