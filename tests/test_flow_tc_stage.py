"""`stcl flow` then `stcl evaluate --flows`: TC end to end with a RAFT file made by the converter from random
official-layout weights (tests/data/make_raft_reference.py's seeded recipe), on a tiny VSPW root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stcl.cli import main
from stcl.flow.raft import load_raft, raft_flow
from stcl.metrics.tc import TCCounter, tc_score

from _data_fixtures import write_vspw_root
from _flow_fixtures import SIZE, VIDEOS, make_tc_root


@pytest.fixture(scope="module")
def setup(module_tmp):
    """VSPW root (frames drifting right, GT masks), predictions (label blocks moving with them), RAFT file."""
    root = module_tmp("tc")
    return (*make_tc_root(root), root)


def _tc_by_hand(vspw: Path, preds: Path, raft: Path, videos: list[str]) -> float:
    """RAFT flow per pair and the labels themselves warped by grid_sample (no source maps, no cache)."""
    model = load_raft(raft)
    counter = TCCounter()
    h, w = SIZE
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for v in videos:
        n = VIDEOS[v]
        for t in range(n - 1):
            f1, f2 = (
                torch.from_numpy(np.array(Image.open(vspw / "data" / v / "origin" / f"{i:08d}.jpg"))).permute(2, 0, 1)
                for i in (t, t + 1)
            )
            flow = raft_flow(model, f1[None], f2[None])[0]
            grid = torch.stack([2.0 * (xs + flow[0]) / (w - 1) - 1.0, 2.0 * (ys + flow[1]) / (h - 1) - 1.0], -1)
            nxt = torch.from_numpy(np.array(Image.open(preds / v / f"{t + 1:08d}.png"))).float()[None, None]
            warped = torch.nn.functional.grid_sample(nxt, grid[None], mode="nearest", align_corners=False)
            pred = np.asarray(Image.open(preds / v / f"{t:08d}.png"))
            counter.add(pred, warped[0, 0].int().numpy().astype(np.uint8))
    return tc_score(counter.confusion)[0]


def test_flow_stage_then_evaluate_gives_tc(setup, capsys):
    vspw, preds, raft, root = setup
    flows = root / "flows"
    args = ["flow", "--vspw-root", str(vspw), "--weights", str(raft), "--out", str(flows), "--videos", "2"]
    assert main(args) == 0
    assert "flow: 5 frame pairs of 2 val videos" in capsys.readouterr().out
    index = json.loads((flows / "flows.json").read_text())
    assert index["videos"] == ["vid_a", "vid_b"] and index["pairs"] == 5 and index["video_limit"] == 2
    out, details = root / "m.json", root / "d.json"
    argv = ["evaluate", "--gt-root", str(vspw), "--pred-root", str(preds), "--out", str(out), "--details", str(details)]
    assert main([*argv, "--flows", str(flows), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.read_text())
    want = _tc_by_hand(vspw, preds, raft, ["vid_a", "vid_b"])
    print(f"TC via the stage {metrics['TC']:.6f}, by hand {want:.6f}")
    assert metrics["TC"] == pytest.approx(want, abs=1e-12)
    assert 0.0 < metrics["TC"] < 1.0  # random weights: a random flow, but the same one both ways
    assert f"TC {metrics['TC']:.4f}" in printed and "over 5 frame pairs of 2 videos" in printed
    record = json.loads(details.read_text())
    assert record["tc"]["pairs"] == 5 and record["TC"] == metrics["TC"]
    # the tables put TC beside VC8/VC16; the report shows it and the view of the first video
    (root / "details").mkdir()
    (root / "details" / "ensemble.json").write_text(details.read_text().replace('"model": "d"', '"model": "ensemble"'))
    assert main(["tables", "--metrics-dir", str(root / "details"), "--out-dir", str(root / "tables")]) == 0
    md = (root / "tables" / "tables.md").read_text()
    assert "## Temporal consistency: VC8, VC16 and TC" in md and f"| {metrics['TC']:.4f} | 2 | 5 |" in md
    report = ["report", "--out-dir", str(root / "report"), "--metrics-dir", str(root / "details"), "--gt-root",
              str(vspw), "--pred-root", str(preds), "--max-videos", "0", "--flows", str(flows)]
    assert main(report) == 0
    page = (root / "report" / "index.html").read_text()
    assert "<th>TC</th>" in page and "Temporal consistency (TC) of ensemble: vid_a" in page
    assert (root / "report" / "qualitative" / "vid_a.tc.png").stat().st_size > 1000
    # without flows: TC skipped in one line, the other metrics as before
    assert main([*argv, "--workers", "1"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("TC:")]
    assert lines == ["TC: skipped (no RAFT flows: set tc.raft_weights in params.yaml to a RAFT file, or pass --flows)"]
    assert "TC" not in json.loads(out.read_text())


def test_flow_stage_errors_are_one_line(setup, tmp_path, capsys):
    vspw, _, raft, _ = setup
    out = tmp_path / "flows"
    assert main(["flow", "--vspw-root", str(vspw), "--weights", str(tmp_path / "none.pth"), "--out", str(out)]) == 1
    assert "none.pth: RAFT weights file not found" in capsys.readouterr().err
    assert main(["flow", "--vspw-root", str(vspw), "--out", str(out)]) == 1
    assert "no RAFT weights file: give --weights or set tc.raft_weights" in capsys.readouterr().err
    small = write_vspw_root(tmp_path / "small", {"v": (2, 96, 128)}, split="val")
    assert main(["flow", "--vspw-root", str(small), "--weights", str(raft), "--out", str(out)]) == 1
    assert "00000001.jpg: RAFT needs frames of at least 128x128 after padding" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".flows*"))


def test_graph_has_one_flow_job_for_every_evaluate_when_a_raft_file_is_set(tmp_path):
    """tc.raft_weights set: one `flow` job (GPU resources) whose folder every evaluate reads via --flows;
    unset (the default): no flow job and evaluate runs without --flows."""
    from _workflow_fixtures import planned_jobs, small_params, workflow_copy

    work = workflow_copy(tmp_path / "wf", small_params({"tc": {"raft_weights": "weights/raft-things.pth"}}))
    (work / "weights").mkdir()
    (work / "weights" / "raft-things.pth").write_bytes(b"x")
    jobs = planned_jobs(work, forceall=True)
    flow = [j for j in jobs if j["rule"] == "flow"]
    assert len(flow) == 1 and flow[0]["params"] == ["tc.raft_weights", "tc.videos", "tc.device"]
    assert "--weights weights/raft-things.pth --out results/flow/val" in flow[0]["shell"]
    evaluates = [j for j in jobs if j["rule"] == "evaluate"]
    assert len(evaluates) == 5 and all("--flows results/flow/val" in j["shell"] for j in evaluates)
    default = planned_jobs(forceall=True)
    assert not [j for j in default if j["rule"] == "flow"]
    assert not any("--flows" in j["shell"] for j in default if j["rule"] == "evaluate")


def test_plan_counts_raft_for_the_tc_pairs_only_when_a_raft_file_is_set(tmp_path, capsys):
    import yaml

    from stcl.params import Params
    from stcl.plan.flow import flow_plan, raft_pair_flops
    from stcl.plan.gpus import gpu_by_name

    gpu = gpu_by_name("A100-80GB")
    base = Params().model_dump(mode="json")
    base["data"].update(synthetic=False, vspw_root="nonexistent/VSPW_480p")
    base["tc"]["raft_weights"] = "raft-things.pth"
    plan = flow_plan(Params.model_validate(base), gpu)
    per_pair = raft_pair_flops(480, 854)
    assert per_pair == raft_pair_flops(480, 856)  # 854 is padded to 856 (InputPadder)
    assert plan.frames == 7143 and plan.tflop == pytest.approx(7043 * per_pair / 1e12)  # 100 videos of VSPW's mean
    assert plan.gpu_hours == pytest.approx(7043 * per_pair / gpu.rate("off", "infer") / 3600)
    base["tc"]["videos"] = "all"
    every = flow_plan(Params.model_validate(base), gpu)
    assert every.frames == 24_500 and every.tflop > 3 * plan.tflop

    # `stcl plan` has the row exactly when the graph has the job (the RAFT file need not exist yet)
    repo = Path(__file__).resolve().parents[1]
    for weights, rows in ((None, []), ("raft-things.pth", ["flow"])):
        base["tc"].update(raft_weights=weights, videos=100)
        params_file = tmp_path / "params.yaml"
        params_file.write_text(yaml.safe_dump(base, sort_keys=False))
        assert main(["plan", "--params", str(params_file), "--workflow", str(repo), "--json"]) == 0
        jobs = json.loads(capsys.readouterr().out)["jobs"]
        flow = [j for j in jobs if j["snakemake_jobs"] == ["flow-val"]]
        assert [j["name"] for j in flow] == rows
        if rows:
            assert flow[0]["snakemake_jobs"] == ["flow-val"] and flow[0]["tflop"] == pytest.approx(plan.tflop)
