"""The recipe's claims at toy scale over several seeds: mean ± std of each comparison the paper makes.

For every seed this runs the real workflow (`snakemake --profile local`) in its own copy of the workflow
under ``--workdir``, with ``train.seed`` set to the seed (the data stay those of ``synth.seed``), and
collects the val metrics of:

* ``baseline`` (ablation ``baseline_<backbone>``: VSPW only, no COCO-pre, no STCL) and ``train_nostcl``
  (COCO-pre init, no STCL): Table 2, COCO-pre vs none;
* ``train_nostcl`` vs ``train_stcl``: Table 3, STCL vs none, on mIoU, VC8 and VC16;
* ``teacher`` vs each member (``train_stcl``, ``train_ade``): Table 4;
* ``train_student`` vs ``train_stcl``: Table 4;
* ``ensemble`` (student + train_stcl + train_ade) vs ``teacher``;
* with ``--class-balanced P``: the student again, trained on pseudo labels with class-balanced thresholds
  (``pseudo_label.class_balanced_portion: P``), vs the paper's fixed threshold.

Per seed it also records what explains the student: the teacher's calibration on val (expected calibration
error, mean confidence vs accuracy per class), the pseudo labels' kept fraction per class and the student's
per-class IoU (``<workdir>/seed<k>/claims.json``). A claim "holds beyond the spread" when the mean difference
exceeds two standard errors of the paired per-seed differences (a paired t-like margin; with 3 seeds it
is a rough screen, not a test).

    nice -n 15 .venv/bin/python benchmarks/recipe_claims.py --seeds 0 1 2 --workdir /tmp/claims \\
        --class-balanced 0.5 [--params params.yaml] [--set infer.scales=[1.0]]

Each finished seed leaves ``<workdir>/seed<k>/claims.json``; seeds may run as separate processes at once (one
``--seeds k`` each, same ``--workdir``). ``--summarize`` prints the table of the seeds finished so far (also
written to ``<workdir>/claims.md``); ``--collect`` records a seed from what its stopped run left.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stcl.roles import ENSEMBLE, EVALUATED, TEACHER, TRAIN_ADE, TRAIN_STCL, TRAIN_STUDENT

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "params.yaml", "workflow", "local")
METRICS = ("mIoU", "VC8", "VC16")

# (label, better, worse, metrics, paper's direction): "better" should beat "worse" per the paper.
COMPARISONS = [
    ("COCO-pre vs none (Table 2)", "train_nostcl", "baseline", ("mIoU",)),
    ("STCL vs none (Table 3)", TRAIN_STCL, "train_nostcl", METRICS),
    ("teacher vs train_stcl (Table 4)", TEACHER, TRAIN_STCL, ("mIoU",)),
    ("teacher vs train_ade (Table 4)", TEACHER, TRAIN_ADE, ("mIoU",)),
    ("student vs train_stcl (Table 4)", TRAIN_STUDENT, TRAIN_STCL, ("mIoU",)),
    ("ensemble vs teacher (3.4)", ENSEMBLE, TEACHER, ("mIoU",)),
    ("class-balanced student vs train_stcl", "train_student_cb", TRAIN_STCL, ("mIoU",)),
    ("class-balanced vs fixed-threshold student", "train_student_cb", TRAIN_STUDENT, ("mIoU",)),
]
CHAIN_MODELS = EVALUATED


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for key in path:
        data = data.setdefault(key, {})
    data[last] = value


def prepare_workdir(dest: Path, params: dict[str, Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if (dest / name).exists() or (dest / name).is_symlink():
            continue
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=110))


def snakemake(cwd: Path, targets: list[str], cores: int) -> float:
    """Run the targets; returns the wall time in seconds (raises with the log tail on failure)."""
    start = time.monotonic()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(BIN / "snakemake"), "--profile", "local", "--cores", str(cores), *targets]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {cwd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - start


def read_metrics(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return {k: data.get(k) for k in ("mIoU", "WIoU", "VC8", "VC16", "per_class_IoU")}


def teacher_calibration(cwd: Path, params: dict[str, Any], frame_step: int = 1, bins: int = 10) -> dict[str, Any]:
    """ECE and per-class mean confidence / accuracy of the teacher on val (its own TTA = pseudo-label TTA),
    on every ``frame_step``-th labelled frame of each val video."""
    import torch

    from stcl.data import vspw
    from stcl.infer.ensemble import load_models, normalized_weights
    from stcl.infer.frames import blend, frame_probs
    from stcl.infer.multiscale import tta_from_params
    from stcl.params import Params

    members = params["teacher"]["members"]
    models = load_models({m: cwd / "results" / "models" / m / "model.pt" for m in members})
    weights = normalized_weights(len(members), params["teacher"].get("weights"))
    pl = params["pseudo_label"]
    tta = tta_from_params(Params.model_validate(params).infer, scales=tuple(pl["scales"]), flip=pl["flip"])
    root = cwd / params["data"]["vspw_root"]
    conf_all, correct_all, pred_all, gt_all = [], [], [], []
    with torch.no_grad():
        for video in vspw.read_split(root, "val"):
            stems = vspw.list_masks(root, video)[::frame_step]
            images = ((s, vspw.load_image(vspw.frame_path(root, video, s))) for s in stems)
            for stem, _, probs in frame_probs(models, tta, images, "cpu"):
                gt = vspw.load_train_ids(vspw.mask_path(root, video, stem))
                conf, pred = blend(probs, members, weights).max(0)
                valid = gt != 255
                conf_all.append(conf.numpy()[valid])
                pred_all.append(pred.numpy()[valid])
                gt_all.append(gt[valid])
    conf, pred, gt = np.concatenate(conf_all), np.concatenate(pred_all), np.concatenate(gt_all)
    correct = pred == gt
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    ece = sum(abs(conf[which == b].mean() - correct[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    per_class = {}
    for c in np.unique(gt):
        mine = pred == c
        per_class[int(c)] = {
            "gt_pixels": int((gt == c).sum()),
            "mean_conf_of_predicted": float(conf[mine].mean()) if mine.any() else None,
            "precision": float(correct[mine].mean()) if mine.any() else None,
            "share_above_0.5": float((conf[mine] > 0.5).mean()) if mine.any() else None,
        }
    return {"ece": float(ece), "mean_conf": float(conf.mean()), "accuracy": float(correct.mean()),
            "per_class": per_class}


def run_seed(seed: int, args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """Run the chain and the two ablations of one seed (then the class-balanced student) and collect them."""
    params = json.loads(json.dumps(base))
    _set(params, "train.seed", seed)
    cwd = args.workdir / f"seed{seed}"
    seconds: dict[str, float] = {}
    if not args.collect:
        prepare_workdir(cwd, params)
        seconds["chain"] = snakemake(cwd, _targets(params), args.cores)
    rec = collect(cwd, params, seed, seconds, args.calibration_frame_step)
    if args.class_balanced is not None:
        _set(params, "pseudo_label.class_balanced_portion", args.class_balanced)
        if not args.collect:
            prepare_workdir(cwd, params)
            seconds["class_balanced"] = snakemake(cwd, ["results/metrics/train_student.json"], args.cores)
        if not args.collect:
            rec["models"]["train_student_cb"] = read_metrics(cwd / "results" / "evaluate" / "train_student.json")
            rec["pseudo_stats_cb"] = json.loads((cwd / "results" / "pseudo" / "stats.json").read_text())
    return rec


def _targets(params: dict[str, Any]) -> list[str]:
    backbone = params["model"]["backbone"]
    return [f"results/metrics/{m}.json" for m in CHAIN_MODELS] + [
        f"results/ablations/metrics/baseline_{backbone}.json", "results/ablations/metrics/train_nostcl.json"]


def collect(cwd: Path, params: dict[str, Any], seed: int, seconds: dict[str, float], frame_step: int = 1
            ) -> dict[str, Any]:
    """The record of one seed from the files its chain wrote (the fixed-threshold student's metrics)."""
    backbone = params["model"]["backbone"]
    rec: dict[str, Any] = {"seed": seed, "models": {}, "seconds": seconds}
    for m in CHAIN_MODELS:
        rec["models"][m] = read_metrics(cwd / "results" / "evaluate" / f"{m}.json")
    rec["models"]["baseline"] = read_metrics(cwd / "results" / "ablations" / "evaluate" / f"baseline_{backbone}.json")
    rec["models"]["train_nostcl"] = read_metrics(cwd / "results" / "ablations" / "evaluate" / "train_nostcl.json")
    rec["pseudo_stats"] = json.loads((cwd / "results" / "pseudo" / "stats.json").read_text())
    keep = cwd / "claims_evaluate"  # this seed's records for `stcl tables` over seeds (the class-balanced step
    keep.mkdir(exist_ok=True)  # rewrites results/evaluate/train_student.json)
    for f in [*(cwd / "results" / "evaluate").glob("*.json"), *(cwd / "results" / "ablations" / "evaluate").glob("*.json")]:
        shutil.copyfile(f, keep / f.name)
    if rec["pseudo_stats"].get("class_balanced_portion") is not None:
        raise RuntimeError(f"{cwd}: the class-balanced step has replaced the fixed-threshold pseudo labels")
    start = time.monotonic()
    rec["teacher_calibration"] = teacher_calibration(cwd, params, frame_step)
    seconds["calibration"] = time.monotonic() - start
    return rec


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def summarize(records: list[dict[str, Any]]) -> str:
    lines = [f"seeds: {[r['seed'] for r in records]} (val, percent)", "", "| model | " + " | ".join(METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    names = [m for m in ("baseline", "train_nostcl", *CHAIN_MODELS, "train_student_cb")
             if all(m in r["models"] for r in records)]
    for m in names:
        cells = []
        for k in METRICS:
            mu, sd = mean_std([100 * r["models"][m][k] for r in records])  # percent, as the paper
            cells.append(f"{mu:.2f} ± {sd:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| claim (paper: first > second) | metric | mean Δ ± std | per seed | holds beyond the spread |",
              "|---|---|---|---|---|"]
    for label, a, b, metrics in COMPARISONS:
        if not all(a in r["models"] and b in r["models"] for r in records):
            continue
        for k in metrics:
            d = [100 * (r["models"][a][k] - r["models"][b][k]) for r in records]
            mu, sd = mean_std(d)
            margin = 2 * sd / math.sqrt(len(d)) if len(d) > 1 else math.inf
            verdict = "yes" if mu > margin else ("reversed" if mu < -margin else "no (within spread)")
            lines.append(f"| {label} | {k} | {mu:+.2f} ± {sd:.2f} | {', '.join(f'{x:+.2f}' for x in d)} | {verdict} |")
    secs = [sum(r["seconds"].values()) for r in records]
    lines += ["", f"wall time per seed: {', '.join(f'{s / 60:.1f} min' for s in secs)} "
              f"(total {sum(secs) / 60:.1f} min)"]
    return "\n".join(lines)


def student_evidence(records: list[dict[str, Any]], names: list[str]) -> str:
    """Per class: teacher confidence/precision on val, pseudo kept fraction, student vs train_stcl IoU."""
    lines = ["", "| class | teacher mean conf | teacher precision | kept % (0.5) | kept % (class-bal.) "
             "| train_stcl IoU | student IoU | class-bal. student IoU |", "|---|---|---|---|---|---|---|---|"]
    classes = sorted({int(c) for r in records for c in r["teacher_calibration"]["per_class"]})

    def avg(values: list[Any]) -> str:
        vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return f"{np.mean(vals):.2f}" if vals else "-"

    for c in classes:
        cal = [r["teacher_calibration"]["per_class"].get(str(c), r["teacher_calibration"]["per_class"].get(c, {}))
               for r in records]

        name = names[c] if c < len(names) else str(c)

        def kept(key: str) -> str:
            out = []
            for r in records:
                row = (r.get(key) or {}).get("per_class", {}).get(name)
                if row and row["argmax_pixels"]:
                    out.append(100 * row["kept_pixels"] / row["argmax_pixels"])
            return avg(out)

        def iou(model: str) -> str:
            return avg([100 * v for r in records if model in r["models"]
                        if (v := r["models"][model]["per_class_IoU"].get(name)) is not None])

        lines.append(f"| {name} | {avg([x.get('mean_conf_of_predicted') for x in cal])} | "
                     f"{avg([x.get('precision') for x in cal])} | {kept('pseudo_stats')} | {kept('pseudo_stats_cb')} | "
                     f"{iou('train_stcl')} | {iou('train_student')} | {iou('train_student_cb')} |")
    ece = mean_std([r["teacher_calibration"]["ece"] for r in records])
    conf = mean_std([r["teacher_calibration"]["mean_conf"] for r in records])
    acc = mean_std([r["teacher_calibration"]["accuracy"] for r in records])
    lines.append(f"\nteacher on val: ECE {ece[0]:.3f} ± {ece[1]:.3f}, mean confidence {conf[0]:.3f} ± {conf[1]:.3f}, "
                 f"pixel accuracy {acc[0]:.3f} ± {acc[1]:.3f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override, e.g. infer.flip=false")
    ap.add_argument("--class-balanced", type=float, default=None, metavar="PORTION")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--summarize", action="store_true", help="only print the table of the finished seeds")
    ap.add_argument("--calibration-frame-step", type=int, default=1, metavar="K",
                    help="teacher calibration on every K-th val frame (default: all)")
    ap.add_argument("--collect", action="store_true",
                    help="record each seed from the files its run left (no snakemake; e.g. after stopping a run)")
    args = ap.parse_args()
    if not args.summarize:
        base = yaml.safe_load(args.params.read_text())
        for item in args.set:
            key, _, value = item.partition("=")
            _set(base, key, yaml.safe_load(value))
        args.workdir.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            out = args.workdir / f"seed{seed}" / "claims.json"
            if out.exists():
                continue
            start = time.monotonic()
            record = run_seed(seed, args, base)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, out)
            print(f"seed {seed}: {(time.monotonic() - start) / 60:.1f} min", flush=True)
    # every finished seed under the workdir (seeds may run as separate processes at once)
    found = args.workdir.glob("seed*/claims.json")
    records = sorted((json.loads(p.read_text()) for p in found), key=lambda r: r["seed"])
    if not records:
        sys.exit(f"{args.workdir}: no finished seed yet (seed*/claims.json)")
    from stcl.data.classes import VSPW_CLASSES

    text = summarize(records) + "\n" + student_evidence(records, list(VSPW_CLASSES)) + "\n"
    (args.workdir / "claims.md").write_text(text)
    print(text, end="")
    folders = [args.workdir / f"seed{r['seed']}" / "claims_evaluate" for r in records]
    if all(f.is_dir() for f in folders):  # the paper's tables with mean ± std over the seeds (`stcl tables`)
        from stcl.metrics.tables import write_tables

        paths = write_tables(folders, args.workdir / "tables")
        print(f"\nthe paper's tables over {len(folders)} seeds (mean ± std): {paths['markdown']}")


if __name__ == "__main__":
    main()
