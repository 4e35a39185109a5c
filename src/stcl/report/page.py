"""The figures and tables of a run in one folder, and a static HTML page that shows them (`stcl report`).

``build_report`` writes into ``out_dir``::

    index.html                    the page: headline metrics, curves, per-class IoU, VC per video,
                                  pseudo labels, qualitative views (plain HTML + CSS, no script, nothing
                                  fetched from the network; images by relative path)
    curves/<stage>.png            `stcl.report.curves`
    per_class_iou.png             per-class val IoU of every model (`stcl.metrics.tables.plot_per_class`)
    vc_per_video.png              VC8 / VC16 of every val video for the qualitative model
    pseudo_labels.png             per class: the fraction of its teacher pixels kept as pseudo labels
    qualitative/<video>.{strip.png,anim.gif,flicker.png}   `stcl.report.qualitative`
    qualitative/<video>.tc.png    with a `stcl flow` folder: prediction t against the warped prediction
                                  t+1 of the flows' first video (`stcl.report.tc_view`), TC in the metrics

The same figures go into Snakemake's report (``snakemake --report``, workflow/rules/report.smk).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stcl.atomic import write_text
from stcl.report.figures import pyplot, save_png

__all__ = ["VideoVC", "video_consistency", "plot_vc_per_video", "plot_pseudo_kept", "ReportInputs", "build_report"]


@dataclass(frozen=True)
class VideoVC:
    """VC_n of one video (official definition, `stcl.metrics.consistency`); NaN without a full window."""

    video: str
    frames: int
    vc: dict[int, float]


def video_consistency(
    gt_root: str | Path, pred_root: str | Path, videos: Sequence[str], lengths=(8, 16), progress: bool = False
) -> list[VideoVC]:
    """VC_n per video, from the GT masks and the predictions (`stcl.metrics.evaluate.evaluate_video_files`)."""
    from stcl.metrics.consistency import pooled_vc
    from stcl.metrics.evaluate import evaluate_video_files

    out = []
    for video in tqdm(videos, desc="VC per video", unit="video", disable=not progress):
        stats = evaluate_video_files(gt_root, pred_root, video, vc_lengths=lengths)
        out.append(VideoVC(video, stats.frames, {n: pooled_vc([stats.windows[n]])[0] for n in lengths}))
    return out


def plot_vc_per_video(rows: Sequence[VideoVC], path: str | Path, model: str) -> Path:
    """Grouped bars of VC8 and VC16 per video (in split order); written atomically."""
    plt = pyplot()
    lengths = sorted(rows[0].vc) if rows else []
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rows) + 2), 3.4))
    x = np.arange(len(rows))
    width = 0.8 / max(len(lengths), 1)
    for i, n in enumerate(lengths):
        ax.bar(x + i * width, [r.vc[n] if not math.isnan(r.vc[n]) else 0 for r in rows], width, label=f"VC{n}")
    ax.set_xticks(x + 0.4 - width / 2, [r.video for r in rows], rotation=60, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="consistency", title=f"Video consistency per val video ({model})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_pseudo_kept(stats: Mapping[str, Any], path: str | Path) -> Path:
    """Per class the teacher predicted (most pixels first): the fraction of its pixels kept (max prob above
    the threshold), the overall kept fraction in the title and as a dashed line."""
    plt = pyplot()
    per_class = {k: v for k, v in stats["per_class"].items() if v["argmax_pixels"] > 0}
    names = sorted(per_class, key=lambda k: -per_class[k]["argmax_pixels"])
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.2 * max(len(names), 1)))
    y = np.arange(len(names))[::-1]
    ax.barh(y, [per_class[k]["kept_fraction"] for k in names], color="tab:green")
    ax.axvline(stats["kept_fraction"], color="k", linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{k} ({per_class[k]['argmax_pixels']:,} px)" for k in names], fontsize=7)
    ax.set(xlabel="fraction of the class's teacher pixels kept", xlim=(0, 1))
    ax.set_title(
        f"Pseudo labels: {100 * stats['kept_fraction']:.1f}% of {stats['pixels']:,} pixels kept "
        f"(max prob > {stats['threshold']}); kept fraction per class", fontsize=9
    )
    fig.tight_layout()
    return save_png(fig, path)


def _fmt(v: Any) -> str:
    """A fraction as a percent with one decimal; "–" for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{100 * v:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" loading="eager">'


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:.2em .6em}
td{text-align:right}td:first-child{text-align:left}th{background:#f0f0f0}img{max-width:100%;display:block;margin:.4em 0}
.note{color:#555;font-size:.9em}details{margin:.5em 0}"""


@dataclass
class ReportInputs:
    """Everything `build_report` reads; any part may be absent (its section then says so)."""

    metrics_dir: Path | None = None
    train_logs: dict[str, Path] = field(default_factory=dict)  # stage → dvclive folder
    gt_root: Path | None = None
    split: str = "val"
    pred_root: Path | None = None
    pred_model: str = "ensemble"
    pseudo_stats: Path | None = None
    max_videos: int = 8
    title: str = "stcl run report"
    flows: Path | None = None  # a `stcl flow` folder: the TC view of its first video (needs gt_root, pred_root)


def _checked_flows(inputs: ReportInputs) -> dict:
    """The flows index, refused in one line unless computed from the frames of ``gt_root``."""
    from stcl.flow.store import check_flows_inputs, read_flows_index

    index = read_flows_index(inputs.flows)
    check_flows_inputs(inputs.flows, index, inputs.gt_root, index["split"])
    return index


def _tc_section(inputs: ReportInputs, index: dict, out: Path) -> str:
    """The TC view of the first video of the flows folder with a frame pair (`stcl.report.tc_view`)."""
    from stcl.report.tc_view import write_tc_view

    video = next((v for v in index["videos"] if index["per_video"][v]["frames"] > 1), None)
    if video is None:
        return "<h2>Temporal consistency (TC)</h2><p>No video of the flows has two frames.</p>"
    png, agree = write_tc_view(inputs.gt_root, inputs.pred_root, inputs.flows, video, out / "qualitative" / f"{video}.tc.png")
    return (f"<h2>Temporal consistency (TC) of {html.escape(inputs.pred_model)}: {html.escape(video)}</h2>"
            + _img(png.relative_to(out).as_posix(), f"{video}: prediction against the warped next prediction")
            + f'<p class="note">{100 * agree:.1f}% of the shown pixels agree. Magenta: prediction t differs from '
            "prediction t+1 warped back along RAFT's flow (what lowers TC); slate blue: the warp reads outside the "
            "frame, which TC_cal.py counts as class 0 (always the last row and column).</p>")


def build_report(inputs: ReportInputs, out_dir: str | Path, progress: bool = False) -> Path:
    """Write the figures and ``index.html`` into ``out_dir`` (see the module docstring); returns the page's path."""
    from stcl.data.vspw import read_split
    from stcl.metrics.tables import METRICS, load_metrics, per_class_frame, plot_per_class
    from stcl.report.curves import plot_stage_curves, read_curves
    from stcl.report.qualitative import write_video_views

    with_tc = inputs.flows is not None and inputs.gt_root is not None and inputs.pred_root is not None
    flows_index = _checked_flows(inputs) if with_tc else None  # before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    metrics = load_metrics(inputs.metrics_dir) if inputs.metrics_dir is not None else []
    by_model = {m["model"]: m for m in metrics}

    shown_metrics = (*METRICS, "TC") if any("TC" in m for m in metrics) else METRICS
    rows = [[m["model"], *(_fmt(m.get(k)) for k in shown_metrics)] for m in metrics]
    sections.append("<h2>Val metrics</h2>" + (_table(["model", *shown_metrics], rows) if rows else "<p>No metrics.</p>")
                    + '<p class="note">Percent; official VSPW definitions (mIoU over one confusion matrix, VC_n pooled over windows'
                    + ("; TC as VSPW_code's TC_cal.py: prediction t against prediction t+1 warped along RAFT's flow, first "
                       "videos of val" if "TC" in shown_metrics else "; TC not computed: no RAFT file (params tc.raft_weights)")
                    + ").</p>")

    curves_html = []
    for stage, folder in inputs.train_logs.items():
        png = plot_stage_curves(stage, read_curves(folder), out / "curves" / f"{stage}.png",
                                val_miou=by_model.get(stage, {}).get("mIoU"))
        curves_html.append(_img(png.relative_to(out).as_posix(), f"training curves of {stage}"))
    sections.append("<h2>Training curves</h2>" + ("".join(curves_html) or "<p>No training logs given.</p>"))

    if metrics:
        plot_per_class(metrics, out / "per_class_iou.png")
        frame = per_class_frame(metrics).dropna(how="all")
        table = _table(["class", *frame.columns], [[name, *(_fmt(v) for v in row)] for name, row in zip(frame.index, frame.to_numpy())])
        sections.append("<h2>Per-class IoU</h2>" + _img("per_class_iou.png", "per-class IoU")
                        + f"<details open><summary>table (classes present in the val GT)</summary>{table}</details>")

    if inputs.gt_root is not None and inputs.pred_root is not None:
        videos = read_split(inputs.gt_root, inputs.split)
        vcs = video_consistency(inputs.gt_root, inputs.pred_root, videos, progress=progress)
        plot_vc_per_video(vcs, out / "vc_per_video.png", inputs.pred_model)
        table = _table(["video", "frames", "VC8", "VC16"], [[r.video, str(r.frames), _fmt(r.vc[8]), _fmt(r.vc[16])] for r in vcs])
        sections.append(f"<h2>Video consistency per {html.escape(inputs.split)} video ({html.escape(inputs.pred_model)})</h2>"
                        + _img("vc_per_video.png", "VC8 and VC16 per video") + table
                        + '<p class="note">– : the video has no full window of that length.</p>')
        shown = videos[: inputs.max_videos]
        blocks = []
        for video in tqdm(shown, desc="qualitative", unit="video", disable=not progress):
            views = write_video_views(inputs.gt_root, inputs.pred_root, video, out / "qualitative")
            rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
            blocks.append(f"<h3>{html.escape(video)}</h3>" + _img(rel(views.strip), f"{video} strip")
                          + _img(rel(views.gif), f"{video} animation") + _img(rel(views.flicker), f"{video} flicker"))
        sections.append(
            f"<h2>Qualitative views ({html.escape(inputs.pred_model)}, {len(shown)} of {len(videos)} videos)</h2>"
            '<p class="note">Columns: frame | ground truth | prediction | error (red: wrong, slate: void GT) | '
            "flicker (magenta: GT equal over the last 8 frames, prediction not: what VC8 does not count).</p>"
            + "".join(blocks)
        )

    if flows_index is not None:
        sections.append(_tc_section(inputs, flows_index, out))

    if inputs.pseudo_stats is not None:
        try:
            stats = json.loads(Path(inputs.pseudo_stats).read_text(encoding="utf-8"))
            per_class = stats["per_class"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{inputs.pseudo_stats}: not a pseudo-label statistics file ({err})") from None
        plot_pseudo_kept(stats, out / "pseudo_labels.png")
        seen = sorted(((k, v) for k, v in per_class.items() if v["argmax_pixels"] > 0), key=lambda kv: -kv[1]["argmax_pixels"])
        table = _table(
            ["class", "teacher pixels", "kept pixels", "kept (%)", "share of kept (%)"],
            [[k, f"{v['argmax_pixels']:,}", f"{v['kept_pixels']:,}", _fmt(v["kept_fraction"]), _fmt(v["share_of_kept"])] for k, v in seen],
        )
        sections.append("<h2>Pseudo labels</h2>" + _img("pseudo_labels.png", "pseudo-label kept fraction per class")
                        + f"<p>{_fmt(stats['kept_fraction'])}% of {stats['pixels']:,} pixels kept "
                        f"({html.escape(str(stats.get('rule', '')))}).</p>" + table)

    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(inputs.title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(inputs.title)}</h1>{''.join(sections)}</body></html>\n")
    index = out / "index.html"
    write_text(index, page)
    return index
