"""The recipe's claims at toy scale over enough seeds, with negative controls: paired t-tests per comparison.

For every run this runs the real workflow (`snakemake --profile local`) in its own copy of the workflow under
``--workdir``, then the negative controls as the same `stcl` stage commands the Snakefile runs (every path an
argument), and collects the val metrics of:

* ``baseline`` (ablation ``baseline_<backbone>``: VSPW only, no COCO-pre, no STCL) and ``train_nostcl``
  (COCO-pre init, no STCL): Table 2, COCO-pre vs none;
* ``train_nostcl`` vs ``train_stcl``: Table 3, STCL vs none, on mIoU, VC8 and VC16;
* ``teacher`` vs each member (``train_stcl``, ``train_ade``): Table 4;
* ``train_student`` vs ``train_stcl``: Table 4;
* ``ensemble`` (student + train_stcl + train_ade) vs ``teacher``;
* the negative controls, each expected below the real mechanism:
  (a) ``train_stcl_shuffled``: train_stcl with STCL's positives drawn from shuffled labels
      (``stcl.positives: shuffled``, the ablation of that name), vs ``train_stcl``;
  (b) ``student_untrained_teacher``: the student trained on the pseudo labels of an untrained teacher (each
      member as its iteration 0 starts: `stcl train --untrained`), vs ``train_student``;
  (c) ``ensemble_untrained_member``: the ensemble with one member (``--untrained-member``, default train_ade)
      replaced by its untrained model, vs ``ensemble``;
* with ``--class-balanced P``: the student again, trained on pseudo labels with class-balanced thresholds
  (``pseudo_label.class_balanced_portion: P``), vs the paper's fixed threshold.

Runs: ``--seeds`` sets ``train.seed`` (the data stay those of the params' ``synth.seed``), one run per seed in
``<workdir>/seed<k>``; ``--synth-seeds`` sets ``synth.seed`` (``train.seed`` stays the params'), one run per
seed in ``<workdir>/synth<k>``, reported in a table of its own (the params' own synth seed is the run
``seed<train.seed>`` when that is among ``--seeds``). Per run it also records what explains the student: the
teacher's calibration on val (expected calibration error, mean confidence vs accuracy per class), the pseudo
labels' kept fraction per class, the student's per-class IoU, and the wall time of each step
(``<run>/claims.json``).

Each comparison is the mean ± std of the paired per-run differences with a two-sided paired t-test
(Student's t with n − 1 degrees of freedom): "holds (p < 0.05)" when the paper's direction is significant,
"reversed (p < 0.05)" when the opposite is, else "not resolved". A control that does not come out worse
(p < 0.05) is named in the summary: the miniature cannot see that mechanism.

    nice -n 10 .venv/bin/python benchmarks/recipe_claims.py --workdir /tmp/claims \\
        [--seeds 0 1 ... 7] [--synth-seeds 1 2] [--length two-hours|params] [--class-balanced 0.5]
        [--set train_stcl.iters=60] [--dry-run]

The defaults are the configuration of docs/results.md: train seeds 0..7, synth seeds 1 and 2, two runs at once
on 2 cores, ``--length two-hours`` (`TWO_HOURS`: every stage 150 iterations, the student 200, val and pseudo
labels at one scale without flip) and the teacher's calibration on every 4th val frame: 10 runs in about 96
minutes. ``--length params`` trains as the params file says (about 3½ hours for the same runs).
``--jobs N`` runs N runs at once (each its own snakemake with ``--cores`` / N cores); ``--dry-run`` prints the
plan (runs, steps, the control commands) and, from the claims.json files already under the workdir (and
``--timings-from`` workdirs of the same settings), an estimate of the wall time. Each finished run leaves ``<run>/claims.json`` and is skipped by a later call;
``--summarize`` prints the tables of the runs finished so far (also written to ``<workdir>/claims.md``);
``--collect`` records each run from what its stopped run left.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stcl.roles import ENSEMBLE, EVALUATED, TEACHER, TRAIN_ADE, TRAIN_STCL, TRAIN_STUDENT

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("Snakefile", "params.yaml", "workflow", "local")
METRICS = ("mIoU", "VC8", "VC16")
ALPHA = 0.05

SHUFFLED = "train_stcl_shuffled"  # control (a): the ablation of that name (stcl.ablations)
UNTRAINED_TEACHER = "student_untrained_teacher"  # control (b)
UNTRAINED_MEMBER = "ensemble_untrained_member"  # control (c)

# (label, better, worse, metrics, kind): the paper says (or, for a control, the mechanism needs) better > worse.
COMPARISONS = [
    ("COCO-pre vs none (Table 2)", "train_nostcl", "baseline", ("mIoU",), "claim"),
    ("STCL vs none (Table 3)", TRAIN_STCL, "train_nostcl", METRICS, "claim"),
    ("teacher vs train_stcl (Table 4)", TEACHER, TRAIN_STCL, ("mIoU",), "claim"),
    ("teacher vs train_ade (Table 4)", TEACHER, TRAIN_ADE, ("mIoU",), "claim"),
    ("student vs train_stcl (Table 4)", TRAIN_STUDENT, TRAIN_STCL, ("mIoU",), "claim"),
    ("ensemble vs teacher (3.4)", ENSEMBLE, TEACHER, ("mIoU",), "claim"),
    ("class-balanced student vs train_stcl", "train_student_cb", TRAIN_STCL, ("mIoU",), "claim"),
    ("class-balanced vs fixed-threshold student", "train_student_cb", TRAIN_STUDENT, ("mIoU",), "claim"),
    ("(a) STCL vs STCL with shuffled positives", TRAIN_STCL, SHUFFLED, METRICS, "control"),
    ("(b) student vs student of an untrained teacher", TRAIN_STUDENT, UNTRAINED_TEACHER, ("mIoU",), "control"),
    ("(c) ensemble vs ensemble with an untrained member", ENSEMBLE, UNTRAINED_MEMBER, ("mIoU",), "control"),
]
# What a control that is not measurably worse says the miniature cannot see.
CONTROL_MECHANISMS = {
    SHUFFLED: "STCL's same-class pairing (positives from the labels)",
    UNTRAINED_TEACHER: "what the teacher's pseudo labels teach the student",
    UNTRAINED_MEMBER: "what the replaced member adds to the ensemble",
}
CHAIN_MODELS = EVALUATED


# -- statistics (pure) -------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes `betacf`)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    if math.isnan(t) or df < 1:
        return math.nan
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_test(better: Sequence[float], worse: Sequence[float]) -> dict[str, Any]:
    """Paired differences better − worse: n, mean, std (n − 1), t and the two-sided p of a paired t-test."""
    d = np.asarray(better, dtype=float) - np.asarray(worse, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        t = math.nan
    elif std == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "t": t, "p": t_two_sided_p(t, n - 1), "diffs": d.tolist()}


def verdict(mean: float, p: float, alpha: float = ALPHA) -> str:
    """"holds (p < 0.05)" (the expected direction, significant), "reversed (p < 0.05)", or "not resolved"."""
    if math.isnan(p) or p >= alpha:
        return "not resolved"
    return f"holds (p < {alpha:g})" if mean > 0 else f"reversed (p < {alpha:g})"


def comparison_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per comparison and metric whose two models every record holds (differences in percent)."""
    rows = []
    for label, a, b, metrics, kind in COMPARISONS:
        if not records or not all(a in r["models"] and b in r["models"] for r in records):
            continue
        for k in metrics:
            test = paired_test([100 * r["models"][a][k] for r in records], [100 * r["models"][b][k] for r in records])
            rows.append({"label": label, "better": a, "worse": b, "metric": k, "kind": kind, **test,
                         "verdict": verdict(test["mean"], test["p"])})
    return rows


def control_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per control comparison that did not come out worse (p < 0.05)."""
    notes = []
    for row in rows:
        if row["kind"] == "control" and not row["verdict"].startswith("holds"):
            p = "n/a" if math.isnan(row["p"]) else f"{row['p']:.3g}"
            notes.append(
                f"- control {row['worse']} is not measurably worse than {row['better']} on {row['metric']} "
                f"(Δ {row['mean']:+.2f}, p = {p}, {row['verdict']}): the miniature cannot see "
                f"{CONTROL_MECHANISMS.get(row['worse'], 'that mechanism')}."
            )
    return notes


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else math.nan


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def summarize(records: list[dict[str, Any]], title: str = "train seeds") -> str:
    """Every model's val metrics (mean ± std) and each comparison's paired t-test over ``records``."""
    seeds = [r["seed"] for r in records]
    lines = [f"### {title}: {seeds} (val, percent; n = {len(records)})", "",
             "| model | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    names = [m for m in ("baseline", "train_nostcl", *CHAIN_MODELS, "train_student_cb", SHUFFLED, UNTRAINED_TEACHER,
                         UNTRAINED_MEMBER) if all(m in r["models"] for r in records)]
    for m in names:
        cells = []
        for k in METRICS:
            mu, sd = mean_std([100 * r["models"][m][k] for r in records])  # percent, as the paper
            cells.append(f"{mu:.2f} ± {sd:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison (expected: first > second) | metric | mean Δ ± std | p (paired t) | verdict | per run |",
              "|---|---|---|---|---|---|"]
    rows = comparison_rows(records)
    for row in rows:
        per = ", ".join(f"{x:+.2f}" for x in row["diffs"])
        lines.append(f"| {row['label']} | {row['metric']} | {row['mean']:+.2f} ± {row['std']:.2f} | "
                     f"{_fmt_p(row['p'])} | {row['verdict']} | {per} |")
    notes = control_notes(rows)
    if notes:
        lines += ["", "Negative controls not measurably worse than the real mechanism:", *notes]
    lines += ["", wall_time_line(records)]
    return "\n".join(lines)


def wall_time_line(records: Sequence[dict[str, Any]]) -> str:
    """Each run's wall time and the mean of each step (chain, each control, calibration, ...)."""
    secs = [sum(r["seconds"].values()) for r in records]
    steps = sorted({k for r in records for k in r["seconds"]})
    per_step = ", ".join(f"{k} {np.mean([r['seconds'][k] for r in records if k in r['seconds']]) / 60:.1f}"
                         for k in steps)
    return (f"wall time per run: {', '.join(f'{s / 60:.1f} min' for s in secs)} (total {sum(secs) / 60:.1f} min); "
            f"mean per step (min): {per_step}")


def split_records(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train-seed records, synth-seed records). A record without ``axis`` (earlier claims.json) is a train seed.

    The synth table holds the ``synth`` runs (keyed by their synth seed) plus the train run that shares their
    ``train_seed`` and ran the params' own synth seed (not rerun as a synth run)."""
    train = sorted((r for r in records if r.get("axis", "train") == "train"), key=lambda r: r["seed"])
    synth = [r for r in records if r.get("axis") == "synth"]
    if synth:
        t0 = synth[0].get("train_seed")
        have = {r["seed"] for r in synth}
        for r in train:
            if r.get("train_seed", r["seed"]) == t0 and r.get("synth_seed") is not None and r["synth_seed"] not in have:
                synth.append({**r, "seed": r["synth_seed"], "axis": "synth"})
    return train, sorted(synth, key=lambda r: r["seed"])


# -- runs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One run: ``axis`` "train" sets train.seed, "synth" sets synth.seed, to ``seed``, in ``path``."""

    axis: str
    seed: int
    path: Path


def plan_runs(workdir: Path, seeds: Sequence[int], synth_seeds: Sequence[int], base: dict[str, Any]) -> list[RunSpec]:
    """The runs of the benchmark: one per train seed, one per synth seed (the params' own synth seed is the
    run of the params' train seed when that is a train seed: not run twice)."""
    runs = [RunSpec("train", s, workdir / f"seed{s}") for s in dict.fromkeys(seeds)]
    t0, s0 = _get(base, "train.seed", 0), _get(base, "synth.seed", 0)
    for s in dict.fromkeys(synth_seeds):
        if s == s0 and t0 in seeds:
            continue
        runs.append(RunSpec("synth", s, workdir / f"synth{s}"))
    return runs


def run_params(base: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    params = json.loads(json.dumps(base))
    _set(params, "train.seed" if spec.axis == "train" else "synth.seed", spec.seed)
    return params


def _get(data: dict[str, Any], dotted: str, default: Any) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


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


def _env(cores: int) -> dict[str, str]:
    """The environment of a step: .venv/bin first, and the thread count Snakemake gives its jobs."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cores)
    return env


def snakemake_cmd(targets: Sequence[str], cores: int) -> list[str]:
    return [str(BIN / "snakemake"), "--profile", "local", "--cores", str(cores), *targets]


def run_cmd(cwd: Path, cmd: Sequence[str], cores: int, log: Path | None = None) -> float:
    """Run one command in ``cwd``; returns its wall time in seconds (raises with the output's tail on failure)."""
    start = time.monotonic()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"} if cmd[0].endswith("snakemake") \
        else _env(cores)
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {shlex.join(cmd)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} in {cwd} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - start


def snakemake(cwd: Path, targets: list[str], cores: int) -> float:
    """Run the targets; returns the wall time in seconds (raises with the log tail on failure)."""
    return run_cmd(cwd, snakemake_cmd(targets, cores), cores)


def chain_targets(params: dict[str, Any]) -> list[str]:
    backbone = params["model"]["backbone"]
    return [f"results/metrics/{m}.json" for m in CHAIN_MODELS] + [
        f"results/ablations/metrics/baseline_{backbone}.json", "results/ablations/metrics/train_nostcl.json"]


# -- the negative controls' commands (the workflow's stage commands, every path an argument) ------------------

CONTROLS = "controls"  # under the run's folder, beside the workflow's results/


def train_data_args(params: dict[str, Any], stage: str, pseudo: str | None = None) -> list[str]:
    """`stcl train` data and init arguments of ``stage`` (as common.smk's train_args gives them)."""
    from stcl.params import parse_params

    p = parse_params(params)
    spec, args = p.stage(stage), []
    for mix in spec.datasets:
        if mix.name == "vspw":
            args += ["--vspw", str(p.data.vspw_root)]
        elif mix.name == "coco":
            args += ["--coco", str(p.data.coco_root), "--coco-semantic", "results/prepare/coco_semantic"]
        elif mix.name == "ade":
            args += ["--ade", str(p.data.ade_root)]
        elif mix.name == "pseudo":
            args += ["--pseudo", pseudo or "results/pseudo/VSPW_pseudo"]
    if spec.init is not None:
        args += ["--init", f"results/models/{spec.init}/model.pt"]
    return args


def control_steps(params: dict[str, Any], replaced: str = TRAIN_ADE) -> list[tuple[str, str, list[list[str]], str]]:
    """The controls (b) and (c) as steps (name, the file that marks it done, its commands, the metrics JSON or
    ''), paths relative to the run's folder; run after the chain, whose outputs they read."""
    from stcl.params import parse_params

    p = parse_params(params)
    if replaced not in p.infer.models:
        raise ValueError(f"--untrained-member {replaced}: not a member of infer.models {list(p.infer.models)}")
    stcl = str(BIN / "stcl")
    untrained = f"{CONTROLS}/untrained"
    members = list(dict.fromkeys([*p.teacher.members, replaced]))
    steps = [("untrained_models", f"{untrained}/{members[-1]}/model.pt", [
        [stcl, "train", "--params", "params.yaml", "--stage", m, *train_data_args(params, m), "--out",
         f"{untrained}/{m}", "--untrained"] for m in members], "")]

    vspw = str(p.data.vspw_root)
    frames = str(p.data.unlabeled.folder) if p.data.unlabeled.source == "folder" else vspw
    b = f"{CONTROLS}/untrained_teacher"
    n = p.pseudo_label.shards
    ckpts = [f"--checkpoint={m}={untrained}/{m}/model.pt" for m in p.teacher.members]
    records = [f"{b}/shards/{i}-of-{n}.json" for i in range(n)]
    pseudo = [[stcl, "pseudo_label", "--params", "params.yaml", "--root", frames, *ckpts, "--shard", f"{i}/{n}",
               "--unlabeled", "results/prepare/unlabeled.txt", "--dataset", f"{b}/VSPW_pseudo", "--record", records[i]]
              for i in range(n)]
    gather = [stcl, "pseudo_label", "--params", "params.yaml", "--gather", "--unlabeled", "results/prepare/unlabeled.txt",
              "--dataset", f"{b}/VSPW_pseudo", "--record", *records, "--stats", f"{b}/stats.json"]
    student = [stcl, "train", "--params", "params.yaml", "--stage", TRAIN_STUDENT,
               *train_data_args(params, TRAIN_STUDENT, pseudo=f"{b}/VSPW_pseudo"), "--out", f"{b}/{TRAIN_STUDENT}"]
    steps.append(("control_untrained_teacher", f"{CONTROLS}/metrics/{UNTRAINED_TEACHER}.json", [
        ["mkdir", "-p", f"{b}/VSPW_pseudo/data"], *pseudo, gather, student,
        *_predict_and_evaluate(p, UNTRAINED_TEACHER, {TRAIN_STUDENT: f"{b}/{TRAIN_STUDENT}/model.pt"},
                               [TRAIN_STUDENT], None)], f"{CONTROLS}/evaluate/{UNTRAINED_TEACHER}.json"))

    models = {m: (f"{untrained}/{m}/model.pt" if m == replaced else f"results/models/{m}/model.pt")
              for m in p.infer.models}
    steps.append(("control_untrained_member", f"{CONTROLS}/metrics/{UNTRAINED_MEMBER}.json",
                  _predict_and_evaluate(p, UNTRAINED_MEMBER, models, list(p.infer.models), p.infer.weights),
                  f"{CONTROLS}/evaluate/{UNTRAINED_MEMBER}.json"))
    return steps


def _predict_and_evaluate(p: Any, name: str, models: dict[str, str], members: list[str],
                          weights: Sequence[float] | None) -> list[list[str]]:
    """`stcl infer` of one output on val (as the ablations' infer rule: every video, no shard) and `stcl evaluate`."""
    stcl, vspw = str(BIN / "stcl"), str(p.data.vspw_root)
    pred = f"{CONTROLS}/predictions/val/{name}"
    spec = ",".join(members) + (":" + ",".join(str(w) for w in weights) if weights else "")
    infer = [stcl, "infer", "--params", "params.yaml", "--root", vspw, "--split", "val",
             *(f"--checkpoint={m}={path}" for m, path in models.items()), f"--output={name}={spec}={pred}"]
    evaluate = [stcl, "evaluate", "--params", "params.yaml", "--gt-root", vspw, "--pred-root", pred, "--split", "val",
                "--model", name, "--out", f"{CONTROLS}/metrics/{name}.json", "--details",
                f"{CONTROLS}/evaluate/{name}.json"]
    return [infer, evaluate]


def run_controls(cwd: Path, params: dict[str, Any], rec: dict[str, Any], cores: int, replaced: str,
                 collect_only: bool) -> None:
    """Controls (b) and (c) in the run's folder (each step skipped when its output exists); their metrics into
    ``rec["models"]``, the untrained teacher's pseudo-label stats into ``rec["pseudo_stats_untrained_teacher"]``."""
    for name, done, commands, details in control_steps(params, replaced):
        if not collect_only and not (cwd / done).exists():
            start = time.monotonic()
            for i, cmd in enumerate(commands):
                run_cmd(cwd, cmd, cores, cwd / CONTROLS / "logs" / f"{name}-{i}.log")
            rec["seconds"][name] = time.monotonic() - start
        if details and (cwd / details).exists():
            model = Path(details).stem
            rec["models"][model] = read_metrics(cwd / details)
            shutil.copyfile(cwd / details, cwd / "claims_evaluate" / f"{model}.json")
    stats = cwd / CONTROLS / "untrained_teacher" / "stats.json"
    if stats.exists():
        rec["pseudo_stats_untrained_teacher"] = json.loads(stats.read_text())


# -- one run -----------------------------------------------------------------------------------------------


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


def student_evidence(records: list[dict[str, Any]], names: list[str]) -> str:
    """Per class: teacher confidence/precision on val, pseudo kept fraction, student vs train_stcl IoU."""
    lines = ["", "| class | teacher mean conf | teacher precision | kept % (0.5) | kept % (class-bal.) "
             "| kept % (untrained teacher) | train_stcl IoU | student IoU | class-bal. student IoU |",
             "|---|---|---|---|---|---|---|---|---|"]
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
                     f"{kept('pseudo_stats_untrained_teacher')} | "
                     f"{iou('train_stcl')} | {iou('train_student')} | {iou('train_student_cb')} |")
    ece = mean_std([r["teacher_calibration"]["ece"] for r in records])
    conf = mean_std([r["teacher_calibration"]["mean_conf"] for r in records])
    acc = mean_std([r["teacher_calibration"]["accuracy"] for r in records])
    lines.append(f"\nteacher on val: ECE {ece[0]:.3f} ± {ece[1]:.3f}, mean confidence {conf[0]:.3f} ± {conf[1]:.3f}, "
                 f"pixel accuracy {acc[0]:.3f} ± {acc[1]:.3f}")
    return "\n".join(lines)


def collect(cwd: Path, params: dict[str, Any], seed: int, seconds: dict[str, float], frame_step: int = 1
            ) -> dict[str, Any]:
    """The record of one run from the files its chain wrote (the fixed-threshold student's metrics)."""
    backbone = params["model"]["backbone"]
    rec: dict[str, Any] = {"seed": seed, "models": {}, "seconds": seconds}
    for m in CHAIN_MODELS:
        rec["models"][m] = read_metrics(cwd / "results" / "evaluate" / f"{m}.json")
    ablations = cwd / "results" / "ablations" / "evaluate"
    rec["models"]["baseline"] = read_metrics(ablations / f"baseline_{backbone}.json")
    rec["models"]["train_nostcl"] = read_metrics(ablations / "train_nostcl.json")
    if (ablations / f"{SHUFFLED}.json").exists():
        rec["models"][SHUFFLED] = read_metrics(ablations / f"{SHUFFLED}.json")
    rec["pseudo_stats"] = json.loads((cwd / "results" / "pseudo" / "stats.json").read_text())
    keep = cwd / "claims_evaluate"  # this run's records for `stcl tables` over seeds (the class-balanced step
    keep.mkdir(exist_ok=True)  # rewrites results/evaluate/train_student.json)
    for f in [*(cwd / "results" / "evaluate").glob("*.json"), *ablations.glob("*.json")]:
        shutil.copyfile(f, keep / f.name)
    if rec["pseudo_stats"].get("class_balanced_portion") is not None:
        raise RuntimeError(f"{cwd}: the class-balanced step has replaced the fixed-threshold pseudo labels")
    start = time.monotonic()
    rec["teacher_calibration"] = teacher_calibration(cwd, params, frame_step)
    seconds["calibration"] = time.monotonic() - start
    return rec


def run_one(spec: RunSpec, args: argparse.Namespace, base: dict[str, Any], cores: int) -> dict[str, Any]:
    """The chain, control (a), the record, controls (b) and (c), then the class-balanced student, of one run."""
    import torch

    torch.set_num_threads(cores)  # the calibration runs in this process
    params = run_params(base, spec)
    cwd = spec.path
    seconds: dict[str, float] = {}
    start = time.monotonic()
    if not args.collect:
        prepare_workdir(cwd, params)
        seconds["chain"] = snakemake(cwd, chain_targets(params), cores)
        if args.controls:
            seconds["control_shuffled_positives"] = snakemake(
                cwd, [f"results/ablations/metrics/{SHUFFLED}.json"], cores)
    rec = collect(cwd, params, spec.seed, seconds, args.calibration_frame_step)
    rec.update(axis=spec.axis, train_seed=_get(params, "train.seed", 0), synth_seed=_get(params, "synth.seed", 0),
               cores=cores)
    if args.controls:
        run_controls(cwd, params, rec, cores, args.untrained_member, args.collect)
    if args.class_balanced is not None:
        _set(params, "pseudo_label.class_balanced_portion", args.class_balanced)
        if not args.collect:
            prepare_workdir(cwd, params)
            seconds["class_balanced"] = snakemake(cwd, ["results/metrics/train_student.json"], cores)
            rec["models"]["train_student_cb"] = read_metrics(cwd / "results" / "evaluate" / "train_student.json")
            rec["pseudo_stats_cb"] = json.loads((cwd / "results" / "pseudo" / "stats.json").read_text())
    rec["wall_seconds"] = time.monotonic() - start
    return rec


def run_seed(seed: int, args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """One train seed (the earlier entry point)."""
    return run_one(RunSpec("train", seed, args.workdir / f"seed{seed}"), args, base, args.cores)


def _run_and_write(spec: RunSpec, args: argparse.Namespace, base: dict[str, Any], cores: int) -> str:
    out = spec.path / "claims.json"
    record = run_one(spec, args, base, cores)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)
    return f"{spec.path.name}: {record['wall_seconds'] / 60:.1f} min"


# -- the plan and its estimate -----------------------------------------------------------------------------


def run_steps(params: dict[str, Any], args: argparse.Namespace, cores: int) -> list[tuple[str, list[str]]]:
    """Every step of one run in order: (step name as claims.json's ``seconds`` key, its command lines)."""
    steps = [("chain", [shlex.join(snakemake_cmd(chain_targets(params), cores))])]
    if args.controls:
        steps.append(("control_shuffled_positives",
                      [shlex.join(snakemake_cmd([f"results/ablations/metrics/{SHUFFLED}.json"], cores))]))
    steps.append(("calibration", ["(in this process: the teacher's calibration on val)"]))
    if args.controls:
        steps += [(name, [shlex.join(c) for c in cmds]) for name, _, cmds, _ in
                  control_steps(params, args.untrained_member)]
    if args.class_balanced is not None:
        steps.append(("class_balanced", [f"params pseudo_label.class_balanced_portion: {args.class_balanced}; "
                                         + shlex.join(snakemake_cmd(["results/metrics/train_student.json"], cores))]))
    return steps


def estimate(earlier: Sequence[dict[str, Any]], steps: Sequence[str], cores: int, runs: int, jobs: int
             ) -> str | None:
    """Wall time of ``runs`` runs, ``jobs`` at once with ``cores`` each, from earlier records' step times
    (each scaled by its record's cores / ``cores``: compute-bound steps on a machine to themselves)."""
    per_step: dict[str, list[float]] = {}
    for r in earlier:
        scale = r.get("cores", cores) / cores
        for k, v in r.get("seconds", {}).items():
            per_step.setdefault(k, []).append(v * scale)
    known = [s for s in steps if s in per_step]
    if not known or not runs:
        return None
    run = sum(float(np.mean(per_step[s])) for s in known)
    missing = [s for s in steps if s not in per_step]
    waves = math.ceil(runs / jobs)
    text = (f"estimate from {len(earlier)} earlier claims.json: {run / 60:.1f} min per run at {cores} core(s) "
            f"({', '.join(f'{s} {np.mean(per_step[s]) / 60:.1f}' for s in known)}); {runs} run(s), {jobs} at once: "
            f"about {waves * run / 3600:.2f} h wall")
    return text + (f" (no timing yet for: {', '.join(missing)})" if missing else "")


def print_plan(runs: Sequence[RunSpec], args: argparse.Namespace, base: dict[str, Any], cores: int) -> None:
    pending = [r for r in runs if not (r.path / "claims.json").exists()]
    print(f"plan: {len(runs)} run(s) under {args.workdir}, {len(pending)} to run; {args.jobs} at once, "
          f"{cores} core(s) each (--cores {args.cores})")
    for r in runs:
        state = "done" if r not in pending else "to run"
        key = "train.seed" if r.axis == "train" else "synth.seed"
        print(f"  {r.path.name}: {key} = {r.seed} ({state})")
    if not pending:
        return
    params = run_params(base, pending[0])
    steps = run_steps(params, args, cores)
    print(f"steps of each run (commands of {pending[0].path.name}, in its folder):")
    for name, cmds in steps:
        print(f"  {name}:")
        for c in cmds:
            print(f"    {c}")
    folders = [args.workdir, *args.timings_from]
    earlier = [json.loads(p.read_text()) for d in folders for p in sorted(Path(d).glob("*/claims.json"))]
    text = estimate(earlier, [s for s, _ in steps], cores, len(pending), args.jobs)
    print(text or "estimate: no earlier claims.json with step timings (under the workdir or --timings-from)")


# -- main --------------------------------------------------------------------------------------------------


def write_summary(workdir: Path) -> None:
    found = [json.loads(p.read_text()) for p in workdir.glob("*/claims.json")]
    if not found:
        sys.exit(f"{workdir}: no finished run yet (*/claims.json)")
    train, synth = split_records(found)
    from stcl.data.classes import VSPW_CLASSES

    parts = []
    if train:
        parts += [summarize(train, "train seeds (train.seed varies, synth.seed fixed)")]
        if all("teacher_calibration" in r for r in train):
            parts += [student_evidence(train, list(VSPW_CLASSES))]
    if synth:
        parts += ["", summarize(synth, f"synth seeds (synth.seed varies, train.seed {synth[0].get('train_seed')})")]
    total = sum(r.get("wall_seconds", sum(r["seconds"].values())) for r in found)
    parts += ["", f"total wall time of the {len(found)} run(s), one after another: {total / 3600:.2f} h"]
    text = "\n".join(parts) + "\n"
    (workdir / "claims.md").write_text(text)
    print(text, end="")
    folders = [workdir / f"seed{r['seed']}" / "claims_evaluate" for r in train]
    if folders and all(f.is_dir() for f in folders):  # the paper's tables with mean ± std over the seeds
        from stcl.metrics.tables import write_tables

        try:
            paths = write_tables(folders, workdir / "tables")
        except ValueError as err:  # e.g. earlier runs without the controls' records
            print(f"\nthe paper's tables over the seeds were not written: {err}")
        else:
            print(f"\nthe paper's tables over {len(folders)} seeds (mean ± std): {paths['markdown']}")


# `--length two-hours` (the default): what fits the 8 train seeds, 2 synth seeds and the controls into about two
# hours on 2 cores (two runs at once): half the default chain's training length and val/pseudo labels at one
# scale without flip (docs/results.md gives the reasons and the measured 96 minutes).
TWO_HOURS = ("train.iters=150", "train_student.iters=200", "infer.scales=[1.0]", "infer.flip=false",
             "pseudo_label.flip=false")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(8)), help="train.seed values (default 0..7)")
    ap.add_argument("--synth-seeds", type=int, nargs="*", default=[1, 2],
                    help="synth.seed values, train.seed fixed (default: 1 2), reported in a table of their own")
    ap.add_argument("--length", choices=("two-hours", "params"), default="two-hours",
                    help="two-hours (default): " + " ".join(TWO_HOURS) + " before any --set; params: the params "
                    "file as it is (the default chain's length: about 27 min per run on 2 cores)")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=REPO / "params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="override, e.g. infer.flip=false")
    ap.add_argument("--class-balanced", type=float, default=None, metavar="PORTION")
    ap.add_argument("--no-controls", dest="controls", action="store_false", help="skip the negative controls")
    ap.add_argument("--untrained-member", default=TRAIN_ADE, help="control (c): the ensemble member replaced "
                    "by its untrained model (default: train_ade)")
    ap.add_argument("--cores", type=int, default=2, help="cores in all (default 2)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, each with --cores / N cores (default 2)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs, their steps and a time estimate")
    ap.add_argument("--timings-from", type=Path, nargs="*", default=[], metavar="WORKDIR",
                    help="--dry-run: also estimate from the claims.json of these workdirs (runs of the same settings)")
    ap.add_argument("--summarize", action="store_true", help="only print the tables of the finished runs")
    ap.add_argument("--calibration-frame-step", type=int, default=4, metavar="K",
                    help="teacher calibration on every K-th val frame (default 4; 1: all)")
    ap.add_argument("--collect", action="store_true",
                    help="record each run from the files its run left (no snakemake; e.g. after stopping a run)")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.cores < 1:
        ap.error("--jobs and --cores must be >= 1")
    if not args.summarize:
        base = yaml.safe_load(args.params.read_text())
        for item in (TWO_HOURS if args.length == "two-hours" else ()) + tuple(args.set):
            key, _, value = item.partition("=")
            _set(base, key, yaml.safe_load(value))
        cores = max(1, args.cores // args.jobs)
        runs = plan_runs(args.workdir, args.seeds, args.synth_seeds, base)
        if args.dry_run:
            print_plan(runs, args, base, cores)
            return
        args.workdir.mkdir(parents=True, exist_ok=True)
        pending = [r for r in runs if not (r.path / "claims.json").exists()]
        start = time.monotonic()
        if args.jobs == 1:
            for r in pending:
                print(_run_and_write(r, args, base, cores), flush=True)
        else:
            with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
                for line in pool.map(_run_and_write, pending, [args] * len(pending), [base] * len(pending),
                                     [cores] * len(pending)):
                    print(line, flush=True)
        if pending:
            print(f"{len(pending)} run(s) in {(time.monotonic() - start) / 60:.1f} min wall", flush=True)
    write_summary(args.workdir)


if __name__ == "__main__":
    main()
