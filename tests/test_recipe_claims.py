"""The claims benchmark's machinery (benchmarks/recipe_claims.py) on made-up records: the paired t-test,
the verdicts, the control notes, the train/synth tables, the plan of runs and steps, the time estimate."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("recipe_claims", ROOT / "benchmarks" / "recipe_claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rc = _load()


@pytest.mark.parametrize(
    ("t", "df", "p"),
    [  # two-sided Student-t tail probabilities (reference values from scipy.stats.t.sf, closed forms where known)
        (1.0, 1, 0.5),  # Cauchy: 1 - 2/π·atan(1)
        (2.0, 2, 1 - 2 / math.sqrt(6)),  # df 2: 1 - t/√(2 + t²)
        (2.5, 3, 0.08770664700806556),
        (0.7, 7, 0.5065175521956),
        (3.1, 7, 0.017322289425497513),
        (-2.0, 5, 0.10193947882985835),
        (12.0, 4, 0.000276428548502973),
        (1e-3, 9, 0.9992239303259733),
        (2.364624251592785, 7, 0.05),  # t_{0.975, 7}
    ],
)
def test_student_t_two_sided_p_matches_known_values(t, df, p):
    assert rc.t_two_sided_p(t, df) == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_regularized_incomplete_beta_edges_and_symmetry():
    assert rc.betainc(2.0, 3.0, 0.0) == 0.0 and rc.betainc(2.0, 3.0, 1.0) == 1.0
    assert rc.betainc(1.0, 1.0, 0.3) == pytest.approx(0.3)  # uniform
    assert rc.betainc(2.5, 0.5, 0.4) == pytest.approx(1 - rc.betainc(0.5, 2.5, 0.6), abs=1e-12)


def test_paired_test_is_scipys_ttest_rel():
    better = [1.2, 0.3, 2.5, 1.1, 0.4, 1.9, 0.8, 1.5]
    worse = [0.9, 0.5, 1.1, 0.2, 0.1, 1.0, 0.7, 0.3]
    res = rc.paired_test(better, worse)
    assert res["n"] == 8 and res["t"] == pytest.approx(3.056536021603847)
    assert res["p"] == pytest.approx(0.018412982360048416, rel=1e-9)  # scipy.stats.ttest_rel
    assert res["diffs"] == pytest.approx([b - w for b, w in zip(better, worse)])
    assert math.isnan(rc.paired_test([1.0], [0.0])["p"])  # one run: no test
    same = rc.paired_test([2.0, 3.0], [1.0, 2.0])  # identical differences: no spread
    assert same["p"] == 0.0 and same["t"] == math.inf
    assert rc.paired_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0


@pytest.mark.parametrize(
    ("mean", "p", "expected"),
    [(1.0, 0.01, "holds (p < 0.05)"), (-1.0, 0.01, "reversed (p < 0.05)"), (1.0, 0.05, "not resolved"),
     (-3.0, 0.2, "not resolved"), (0.5, math.nan, "not resolved")],
)
def test_verdicts(mean, p, expected):
    assert rc.verdict(mean, p) == expected


def _models(**miou):
    return {m: {"mIoU": v, "VC8": v, "VC16": v, "per_class_IoU": {}} for m, v in miou.items()}


def _record(seed, shift, axis="train", train_seed=None, synth_seed=0, **extra):
    """A made-up run: train_stcl beats its shuffled control by ~2 points, the student its untrained-teacher
    control by nothing (noise), the ensemble its untrained-member control by less than it (reversed)."""
    noise = 0.01 * ((seed * 7) % 5 - 2)
    models = _models(
        baseline=0.50, train_nostcl=0.52 + noise, train_stcl=0.55 + shift, train_ade=0.54, teacher=0.56,
        train_student=0.58, ensemble=0.57 + noise / 3, train_stcl_shuffled=0.53 + shift + noise / 4,
        student_untrained_teacher=0.58 + noise, ensemble_untrained_member=0.60 + noise / 3,
    )
    return {"seed": seed, "models": models, "seconds": {"chain": 600.0, "calibration": 30.0, **extra},
            "axis": axis, "train_seed": seed if train_seed is None else train_seed, "synth_seed": synth_seed}


def test_comparison_rows_and_control_notes():
    records = [_record(s, 0.001 * s) for s in range(8)]
    rows = {(r["label"], r["metric"]): r for r in rc.comparison_rows(records)}
    shuffled = rows[("(a) STCL vs STCL with shuffled positives", "mIoU")]
    assert shuffled["kind"] == "control" and shuffled["n"] == 8 and shuffled["verdict"] == "holds (p < 0.05)"
    assert shuffled["mean"] == pytest.approx(2.0, abs=0.1)
    assert rows[("(b) student vs student of an untrained teacher", "mIoU")]["verdict"] == "not resolved"
    assert rows[("(c) ensemble vs ensemble with an untrained member", "mIoU")]["verdict"] == "reversed (p < 0.05)"
    assert not any(r["label"].startswith("class-balanced") for r in rows.values())  # no train_student_cb: no row
    notes = "\n".join(rc.control_notes(list(rows.values())))
    assert "student_untrained_teacher" in notes and "ensemble_untrained_member" in notes
    assert "train_stcl_shuffled" not in notes and "cannot see" in notes
    text = rc.summarize(records)
    assert "| (a) STCL vs STCL with shuffled positives | mIoU | +2.0" in text and "holds (p < 0.05)" in text
    assert "cannot see what the teacher's pseudo labels teach the student" in text
    assert "total 84.0 min" in text  # 8 runs × 10.5 min


def test_earlier_records_without_controls_still_summarize():
    """claims.json of the earlier format (no axis, no controls, no cores): the claims, no control row."""
    records = [_record(s, 0.0) for s in range(3)]
    for r in records:
        for key in ("axis", "train_seed", "synth_seed"):
            del r[key]
        for m in ("train_stcl_shuffled", "student_untrained_teacher", "ensemble_untrained_member"):
            del r["models"][m]
    train, synth = rc.split_records(records)
    assert [r["seed"] for r in train] == [0, 1, 2] and synth == []
    text = rc.summarize(train)
    assert "STCL vs none (Table 3)" in text and "(a)" not in text and "cannot see" not in text


def test_synth_table_takes_the_train_run_of_the_params_synth_seed():
    train_runs = [_record(s, 0.0) for s in range(3)]  # synth.seed 0
    synth_runs = [_record(s, 0.0, axis="synth", train_seed=0, synth_seed=s) for s in (1, 2)]
    train, synth = rc.split_records(train_runs + synth_runs)
    assert [r["seed"] for r in train] == [0, 1, 2]
    assert [r["seed"] for r in synth] == [0, 1, 2]  # synth seed 0 is the run seed0 (train.seed 0)
    assert synth[0]["models"] == train_runs[0]["models"] and synth[0]["axis"] == "synth"


def test_plan_runs_each_seed_once():
    base = {"train": {"seed": 0}, "synth": {"seed": 0}}
    runs = rc.plan_runs(Path("/w"), [0, 1, 1, 2], [0, 3], base)
    assert [(r.axis, r.seed, r.path.name) for r in runs] == [
        ("train", 0, "seed0"), ("train", 1, "seed1"), ("train", 2, "seed2"), ("synth", 3, "synth3")]
    assert rc.run_params(base, runs[-1]) == {"train": {"seed": 0}, "synth": {"seed": 3}}
    assert rc.run_params(base, runs[1]) == {"train": {"seed": 1}, "synth": {"seed": 0}}
    assert base == {"train": {"seed": 0}, "synth": {"seed": 0}}  # not modified
    only_synth = rc.plan_runs(Path("/w"), [], [0, 1], base)  # seed0 not run as a train seed: synth0 is run
    assert [r.path.name for r in only_synth] == ["synth0", "synth1"]


def _args(**kw):
    defaults = {"controls": True, "untrained_member": "train_ade", "class_balanced": None}
    return argparse.Namespace(**{**defaults, **kw})


def test_steps_chain_the_controls_as_stage_commands():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    steps = dict(rc.run_steps(params, _args(), 1))
    assert list(steps) == ["chain", "control_shuffled_positives", "calibration", "untrained_models",
                           "control_untrained_teacher", "control_untrained_member"]
    assert "results/ablations/metrics/train_stcl_shuffled.json" in steps["control_shuffled_positives"][0]
    untrained = steps["untrained_models"]
    assert len(untrained) == 2 and all("--untrained" in c for c in untrained)  # train_ade, train_stcl
    assert "--init results/models/pretrain_coco/model.pt" in untrained[1] and "--stage train_stcl" in untrained[1]
    b = steps["control_untrained_teacher"]
    n = params["pseudo_label"]["shards"]
    assert sum(" pseudo_label " in c and "--shard" in c for c in b) == n
    assert any("--gather" in c and "--stats controls/untrained_teacher/stats.json" in c for c in b)
    assert any("--checkpoint=train_ade=controls/untrained/train_ade/model.pt" in c for c in b)
    assert any("--stage train_student" in c and "--pseudo controls/untrained_teacher/VSPW_pseudo" in c for c in b)
    assert b[-1].split()[1:3] == ["evaluate", "--params"] and "--model student_untrained_teacher" in b[-1]
    c = steps["control_untrained_member"]
    assert "--checkpoint=train_ade=controls/untrained/train_ade/model.pt" in c[0]
    assert "--checkpoint=train_stcl=results/models/train_stcl/model.pt" in c[0]
    assert "--output=ensemble_untrained_member=train_student,train_stcl,train_ade=" in c[0]
    assert "class_balanced" in dict(rc.run_steps(params, _args(class_balanced=0.5), 1))
    assert list(dict(rc.run_steps(params, _args(controls=False), 1))) == ["chain", "calibration"]
    with pytest.raises(ValueError, match="untrained-member"):
        rc.control_steps(params, "pretrain_coco")


def test_estimate_scales_earlier_step_times():
    earlier = [{"seconds": {"chain": 1200.0, "calibration": 60.0}, "cores": 1},
               {"seconds": {"chain": 1000.0, "calibration": 40.0}}]  # no cores recorded: taken as the plan's
    text = rc.estimate(earlier, ["chain", "calibration", "untrained_models"], 1, 4, 2)
    # chain (1200 + 1000)/2 = 1100 s, calibration 50 s: 19.2 min per run; 4 runs 2 at once: 2 waves
    assert "19.2 min per run" in text and "about 0.64 h wall" in text and "no timing yet for: untrained_models" in text
    assert rc.estimate([], ["chain"], 1, 4, 2) is None
    two_cores = [{"seconds": {"chain": 600.0}, "cores": 2}]  # measured with 2 cores, planned with 1: twice as long
    assert "20.0 min per run" in rc.estimate(two_cores, ["chain"], 1, 1, 1)


def test_dry_run_prints_the_plan_and_an_estimate_and_writes_nothing(tmp_path, capsys):
    earlier = tmp_path / "earlier" / "seed0"
    earlier.mkdir(parents=True)
    (earlier / "claims.json").write_text('{"seed": 0, "models": {}, "seconds": {"chain": 600.0}, "cores": 1}')
    work = tmp_path / "work"
    rc.main(["--workdir", str(work), "--seeds", "0", "1", "--synth-seeds", "0", "5", "--jobs", "2",
             "--timings-from", str(tmp_path / "earlier"), "--set", "train.iters=10", "--dry-run"])
    out = capsys.readouterr().out
    assert "plan: 3 run(s)" in out and "2 at once, 1 core(s) each" in out
    assert "seed0: train.seed = 0" in out and "synth5: synth.seed = 5" in out and "synth0" not in out
    assert "stcl train --params params.yaml --stage train_ade" in out and "--untrained" in out
    assert "10.0 min per run at 1 core(s)" in out and "no timing yet for: control_shuffled_positives" in out
    assert not work.exists()
