"""README command 1 on a small params override: the whole chain and its report (results/report/index.html,
and `snakemake --report` packing the figures into one HTML file, both opened in headless Chromium), a no-op
rerun, a one-knob edit. One chain run serves all of these: it is the suite's most expensive step."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
import zipfile

import pytest
import yaml

from _browser_harness import Browser
from _workflow_fixtures import REPO, SNAKEMAKE, planned_jobs, run, small_params, workflow_copy, write_params

pytestmark = pytest.mark.slow

# The evaluated models: every metrics file of dvc.yaml (generated from the Snakefile's default target).
EVAL_MODELS = [
    m.rsplit("/", 1)[1][: -len(".json")]
    for st in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
    for m in st.get("metrics", [])
]


def test_whole_chain_then_nothing_then_only_downstream(tmp_path):
    work = workflow_copy(tmp_path / "repo", small_params())
    t = time.time()
    first = run([SNAKEMAKE, "--profile", "local"], work).stdout
    print(f"chain: {time.time() - t:.0f} s")
    with zipfile.ZipFile(work / "results/test_submission.zip") as zf:
        assert any(n.endswith(".png") for n in zf.namelist())
    assert (work / "results/tables/tables.md").is_file()
    for model in EVAL_MODELS:
        assert (work / f"results/metrics/{model}.json").is_file(), model
    # no RAFT file in the embedded chain: every evaluate skips TC in one line, the rest runs
    log = (work / "results/logs/evaluate/ensemble.log").read_text()
    assert log.count("TC: skipped") == 1 and "VC16" in log
    # The summary printed at the end: where things are, job times, metrics beside chance.
    assert "results/test_submission.zip" in first and "Wall time per job" in first
    assert "chance: constant" in first and "train_student" in first
    check_report(work, tmp_path)

    t = time.time()
    second = run([SNAKEMAKE, "--profile", "local"], work).stdout
    print(f"no-op rerun: {time.time() - t:.1f} s")
    assert "Nothing to be done" in second + run([SNAKEMAKE, "--profile", "local", "-n"], work).stdout
    assert "Finished jobid" not in second

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train_ade"]["optimizer"] = {"lr": params["train"]["optimizer"]["lr"] / 2}  # train_ade's own lr
    write_params(work / "params.yaml", params)
    jobs = [j["name"] for j in planned_jobs(work)]  # what Snakemake would rerun now
    rules = {j["rule"] for j in planned_jobs(work)}
    assert "train_ade" in rules and len(EVAL_MODELS) == 5
    assert not rules & {"synth", "prepare", "pretrain_coco", "train_stcl"}, jobs
    # One inference pass per split runs every model once per frame: the val pass reruns as a whole (train_ade
    # is in it) and so do the evaluations it feeds; the test pass reruns for the ensemble.
    assert {"infer-val", "pseudo_label", "train_student", "infer-test", "tables"} <= set(jobs), jobs
    assert {"infer_init", "infer_gather", "evaluate"} <= rules
    assert {"pseudo_label_init", "pseudo_label_gather"} <= rules


def check_report(work: Path, tmp_path: Path) -> None:
    """The report page of the chain, and Snakemake's own report of it, show every figure in a real browser."""
    report_dir = work / "results" / "report"
    page = (report_dir / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    # curves of the four training stages, per-class IoU, VC per video, pseudo labels, 3 views x 2 val videos
    assert len(images) == 4 + 3 + 6 and all((report_dir / src).is_file() for src in images)
    run([SNAKEMAKE, "--report", "report.html"], cwd=work, timeout=600)
    html = (work / "report.html").read_text()
    for name in ("curves/train_stcl.png", "vc_per_video.png", "pseudo_labels.png", ".strip.png", ".anim.html", ".flicker.png"):
        assert name in html, f"{name} missing from Snakemake's report"
    with Browser(tmp_path / "profile") as browser:
        browser.open((report_dir / "index.html").as_uri())
        loaded = browser.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert len(loaded) == 13 and all(loaded)
        browser.open((work / "report.html").as_uri())
        categories = ("Training curves", "Qualitative views", "Pseudo labels", "Metrics")
        browser.wait_until(  # React renders after the load event: wait for its categories and their images
            " && ".join(f"document.body.innerText.includes({json.dumps(c)})" for c in categories)
            + " && Array.from(document.images).every(i => i.complete)"
        )
        text = browser.evaluate("document.body.innerText")
        broken = browser.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        browser.screenshot(tmp_path / "snakemake_report.png", full_page=False)
        external = [u for u in browser.requests if not u.startswith(("file://", "data:", "about:", "blob:"))]
    for category in categories:
        assert category in text, f"category {category!r} not on the Snakemake report page"
    assert broken == 0
    assert external == []
