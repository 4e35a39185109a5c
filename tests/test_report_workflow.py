"""The report as the README promises it: the chain on tiny data leaves results/report/index.html, and
`snakemake --report` packs the figures into one HTML file that opens in headless Chromium."""

from __future__ import annotations

import re

import pytest

from _browser_harness import Browser
from _workflow_fixtures import SNAKEMAKE, run, small_params, workflow_copy


@pytest.mark.slow
def test_chain_leaves_the_report_and_snakemake_report_shows_its_figures(tmp_path):
    work = workflow_copy(tmp_path / "wf", small_params())
    run([SNAKEMAKE, "--profile", "local", "--cores", "2"], cwd=work, timeout=3600)  # README command 1
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
        text = browser.evaluate(
            "new Promise(r => setTimeout(() => r(document.body.innerText), 1500))"  # let React render
        )
        broken = browser.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        browser.screenshot(tmp_path / "snakemake_report.png", full_page=False)
        external = [u for u in browser.requests if not u.startswith(("file://", "data:", "about:", "blob:"))]
    for category in ("Training curves", "Qualitative views", "Pseudo labels", "Metrics"):
        assert category in text, f"category {category!r} not on the Snakemake report page"
    assert broken == 0
    assert external == []
