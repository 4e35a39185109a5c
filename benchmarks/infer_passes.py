"""Model passes of the chain's inference, before and after the one-pass design, counted and timed.

Count: (model, frame, view) forward passes from params — frames per split × TTA views × models per job.
Before, val inference was five jobs (train_stcl, train_ade, train_student alone, the teacher of 2 models,
the ensemble of 3: 8 model passes per frame); after, one job per shard computes each of the 3 models once
per frame and writes all five outputs (`stcl.infer.outputs`). Test (3-model ensemble) and the pseudo
labels (2-model teacher on the unlabeled pool) are one pass already.

Timing (``--time``): in a temporary workspace, the embedded val split (`stcl synth`) and three randomly
initialised checkpoints of the params' model; the five separate ``stcl infer`` runs against one
``stcl infer --checkpoint … --output …`` run, wall seconds of each on this machine.

    .venv/bin/python benchmarks/infer_passes.py                      # counts, default (tiny) params
    .venv/bin/python benchmarks/infer_passes.py --preset paper       # counts at paper scale
    .venv/bin/python benchmarks/infer_passes.py --time               # + wall time of the val inference
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def counts(params) -> dict[str, dict[str, int]]:
    from stcl.infer.multiscale import pseudo_label_tta
    from stcl.plan.vspw_sizes import split_frames

    views = len(params.infer.scales) * (2 if params.infer.flip else 1)
    pviews = len(pseudo_label_tta(params).views)
    val, test = split_frames(params, "val"), split_frames(params, "test")
    pool = sum(split_frames(params, s) for s in params.data.unlabeled.splits)
    teacher, ens = len(params.teacher.members), len(params.infer.models)
    from stcl.roles import ENSEMBLE, TEACHER, outputs, split_members

    singles = len(set(outputs(params)) - {TEACHER, ENSEMBLE})  # the trained models evaluated alone
    val_after = len(split_members(params, "val"))
    before = {
        "val": val * views * (singles + teacher + ens),
        "test": test * views * ens,
        "pseudo": pool * pviews * teacher,
    }
    after = {"val": val * views * val_after, "test": test * views * ens, "pseudo": pool * pviews * teacher}
    return {"before": before, "after": after}


def time_val(params_path: Path | None) -> tuple[float, float]:
    import torch
    import yaml

    from stcl.cli import main as stcl
    from stcl.data.classes import VSPW_CLASSES
    from stcl.models import build_segmentor, save_model
    from stcl.params import load_params
    from stcl.roles import ENSEMBLE, TEACHER, split_members

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="stcl_passes_") as tmp:
        os.chdir(tmp)
        try:
            if params_path:
                Path("params.yaml").write_text(Path(params_path).read_text())
            else:
                from stcl.params import Params

                Path("params.yaml").write_text(yaml.safe_dump(Params().model_dump(mode="json")))
            p = load_params("params.yaml")
            assert stcl(["synth", "--out", "data"]) == 0
            ck = {}
            for i, name in enumerate(split_members(p, "val")):
                torch.manual_seed(i)
                model = build_segmentor(p.model, 124, load_pretrained=False)
                ck[name] = save_model(
                    Path(f"m/{name}.pt"),
                    model,
                    model_params=p.model,
                    num_classes=124,
                    proj_dim=None,
                    label_space="vspw",
                    class_names=VSPW_CLASSES,
                )
            base = ["infer", "--split", "val", "--device", "cpu"]
            jobs = {n: [n] for n in ck} | {TEACHER: list(p.teacher.members), ENSEMBLE: list(p.infer.models)}
            t0 = time.perf_counter()
            for name, members in jobs.items():
                models = [x for m in members for x in ("--checkpoint", f"{m}={ck[m]}")]
                assert stcl([*base, *models, "--output", f"{name}={','.join(members)}=sep/{name}"]) == 0
            separate = time.perf_counter() - t0
            outs = [f"{n}={n}=one/{n}" for n in ck]
            outs += [
                f"{TEACHER}={','.join(p.teacher.members)}=one/{TEACHER}",
                f"{ENSEMBLE}={','.join(p.infer.models)}=one/{ENSEMBLE}",
            ]
            t0 = time.perf_counter()
            argv = [
                *base,
                *(x for n in ck for x in ("--checkpoint", f"{n}={ck[n]}")),
                *(x for o in outs for x in ("--output", o)),
            ]
            assert stcl(argv) == 0
            one = time.perf_counter() - t0
            for name in jobs:
                a = sorted(Path(f"sep/{name}").glob("*/*.png"))
                assert a and [f.read_bytes() for f in a] == [Path("one", *f.parts[1:]).read_bytes() for f in a], name
        finally:
            os.chdir(cwd)
    return separate, one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=None, help="params file (default: the tiny defaults)")
    ap.add_argument("--preset", default=None, help="count a preset instead (e.g. paper)")
    ap.add_argument("--time", action="store_true", help="also time val inference, separate runs vs one pass")
    args = ap.parse_args()
    from stcl.params import Params, load_params, preset_params

    params = preset_params(args.preset) if args.preset else load_params(args.params) if args.params else Params()
    c = counts(params)
    for when in ("before", "after"):
        total = sum(c[when].values())
        print(
            f"{when:<7} (model, frame, view) passes: "
            + ", ".join(f"{k} {v:,}" for k, v in c[when].items())
            + f"; total {total:,}"
        )
    if args.time:
        separate, one = time_val(Path(args.params) if args.params else None)
        print(f"val inference wall: 5 separate runs {separate:.1f} s, one pass {one:.1f} s (same PNGs)")


if __name__ == "__main__":
    main()
