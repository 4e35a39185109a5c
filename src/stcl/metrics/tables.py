"""The paper's Tables 1-4 (and the final ensemble) with this run's rows beside the reported values.

Input: the full records of `stcl evaluate --details` (one JSON per model). Output (`write_tables`):
``tables.md`` (markdown), ``tables.parquet`` (one tidy long table: table, method, dim, tau, source
(paper/ours/chance), model, backbone, split, metric, value) and ``per_class_iou.png`` (bar chart).

Which of our models fills which paper row (`paper_rows_for`):

==================  ===========================================================================
train_stcl          Table 3 "Swin-L + STCL" at the run's (dim, τ) (a new row if the paper has none), and
                    Table 4 "Swin-L" (the paper's 0.5930 is that model)
train_ade           Table 2 "Swin-L + ADE" (VSPW + ADE20K from ImageNet weights, ``init: null``); with
                    ``train_ade.init: pretrain_coco`` a row of its own, "Swin-L + COCO-pre + ADE" (not the paper's)
teacher             Table 4 "Teacher"
train_student       Table 4 "Swin-L + Pseudo"
ensemble            the final ensemble (paper Tables 5-6, test sets; ours on val)
baseline*           Table 1 row of its backbone, and Table 2 "Swin-L" (plain VSPW training)
train_coco          Table 2 "Swin-L + COCO"
train_nostcl        Table 2 "Swin-L + COCO-pre" and Table 3 "Swin-L" (COCO-pre init, no STCL)
stcl_d<dim>_t<τ>    Table 3 "Swin-L + STCL" row of that (dim, τ) (the grid of stcl.ablations)
==================  ===========================================================================

Any other model appears under "Other models". TC (VSPW_code's TC_cal.py; `stcl evaluate --flows`) is not in
the paper: it has its own section, beside VC8 and VC16 (or one line saying it was not computed). Each "ours" cell is labelled with the model and its backbone,
so a ResNet-18 run beside the paper's Swin-L row is never mistaken for a reproduction of it.

Several seeds: given one metrics folder per seed (`load_runs`), each model's figures are the mean over the
seeds, shown as ``mean ± std`` (sample standard deviation, n − 1) with the number of seeds; the paper's
tables are single runs, ours then carry error bars. Every folder must hold the same models (one line names
the folder and what it lacks). Per-class IoU is the mean (classes absent from a seed's GT are skipped).

Chance level: computed here, not in `evaluate`, from the GT class pixel counts every metrics JSON records
(so it costs nothing and old metrics files get it too). Two references per split:
* *constant*: predict the most frequent GT class k everywhere: IoU_k = N_k/N, others 0, so
  mIoU = (N_k/N)/K (K classes present), WIoU = (N_k/N)²; VC_n = 1 exactly (a constant prediction is
  perfectly consistent — VC alone rewards it, which is why it is read beside mIoU);
* *uniform random*: i.i.d. uniform over the C classes: IoU_c from expected counts,
  (G_c/C)/(G_c + N/C − G_c/C); VC_n = (1/C)^(n−1), its exact expectation per window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stcl.atomic import atomic_path, write_bytes, write_text
from stcl import roles
from stcl.metrics.paper import TABLES, TableSpec, backbone_label

__all__ = [
    "load_metrics",
    "pool_seeds",
    "load_runs",
    "paper_rows_for",
    "build_tables",
    "chance_levels",
    "per_class_frame",
    "tables_markdown",
    "tables_long_frame",
    "temporal_markdown",
    "plot_per_class",
    "write_tables",
]

METRICS = ("mIoU", "WIoU", "VC8", "VC16")


def load_metrics(metrics_dir: str | Path, params: Any | None = None) -> list[dict[str, Any]]:
    """Every ``*.json`` of ``metrics_dir`` written by `stcl evaluate` (format stcl-metrics/1), by model name.

    ``params`` (a `stcl.params.Params`), when given, fills what a metrics file lacks: the backbone, and the
    STCL dim/τ of a training stage.
    """
    folder = Path(metrics_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: metrics directory not found")
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable JSON file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != "stcl-metrics/1":
            continue  # e.g. a train_metrics.json copied here: not ours to read
        for key in ("model", "mIoU", "per_class_IoU"):
            if key not in data:
                raise ValueError(f"{path}: metrics JSON lacks the key {key!r}")
        data["_path"] = str(path)
        if params is not None:
            _fill_from_params(data, params)
        out.append(data)
    return sorted(out, key=lambda d: d["model"])


POOLED = (*METRICS, "TC", "pixel_accuracy")


def pool_seeds(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One record per model from ``[(folder, load_metrics(folder)), ...]``, one folder per seed.

    Each figure of `POOLED` becomes the mean over the seeds, with ``std[<metric>]`` (n − 1; NaN for one
    seed) and ``seeds``; per-class IoU is the NaN-skipping mean. Raises ValueError naming a folder whose
    models differ from the first folder's.
    """
    if not runs:
        raise ValueError("no metrics folders given")
    first_dir, first = runs[0]
    names = [m["model"] for m in first]
    for folder, metrics in runs[1:]:
        have = {m["model"] for m in metrics}
        missing, extra = sorted(set(names) - have), sorted(have - set(names))
        if missing or extra:
            raise ValueError(
                f"{folder}: models differ from {first_dir} (one folder per seed of the same run):"
                + (f" lacks {', '.join(missing)}" if missing else "")
                + (f" has also {', '.join(extra)}" if extra else "")
            )
    pooled = []
    for i, name in enumerate(names):
        seeds = [next(m for m in metrics if m["model"] == name) for _, metrics in runs]
        record = dict(seeds[0])
        record["seeds"] = len(seeds)
        record["std"] = {}
        for key in POOLED:
            values = [m.get(key) for m in seeds]
            if any(v is None for v in values):  # not in every seed: no mean of it
                record.pop(key, None)
                continue
            arr = np.asarray(values, dtype=np.float64)
            record[key] = float(arr.mean())
            record["std"][key] = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
        classes = list(seeds[0]["per_class_IoU"])
        iou = np.array(
            [[np.nan if m["per_class_IoU"].get(c) is None else m["per_class_IoU"][c] for c in classes] for m in seeds],
            dtype=np.float64,
        )
        present = ~np.isnan(iou).all(axis=0)
        mean = np.full(len(classes), np.nan)
        mean[present] = np.nanmean(iou[:, present], axis=0)
        record["per_class_IoU"] = {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, mean)}
        record["_path"] = [m["_path"] for m in seeds]
        pooled.append(record)
    return pooled


def load_runs(metrics_dirs: Sequence[str | Path], params: Any | None = None) -> list[dict[str, Any]]:
    """`load_metrics` of one folder, or the seeds of several folders pooled by `pool_seeds`."""
    dirs = [metrics_dirs] if isinstance(metrics_dirs, (str, Path)) else list(metrics_dirs)
    if len(dirs) == 1:
        return load_metrics(dirs[0], params)
    return pool_seeds([(str(d), load_metrics(d, params)) for d in dirs])


def _ours(metrics: dict[str, Any], key: str) -> Any:
    """A cell of ours: the value, or ``"mean ± std"`` when pooled over seeds."""
    value = metrics.get(key)
    std = (metrics.get("std") or {}).get(key)
    if value is None or std is None or math.isnan(std):
        return value
    return f"{_fmt(value)} ± {_fmt(std)}"


def _fill_from_params(data: dict[str, Any], params: Any) -> None:
    """Fill what a metrics file lacks of its model's recipe from params (`stcl.roles.model_info`)."""
    info = data.get("model_info") or {}
    data["model_info"] = info
    data.setdefault("backbone", params.model.backbone)
    for key, value in roles.model_info(params, data["model"]).items():
        info.setdefault(key, value)
    info["backbone"] = info.get("backbone") or data["backbone"]


def paper_rows_for(metrics: dict[str, Any]) -> list[tuple[str, str, int | None, float | None]]:
    """(table key, paper method, dim, τ) rows this model fills (see the module docstring)."""
    model = metrics["model"]
    stcl = (metrics.get("model_info") or {}).get("stcl") or {}
    if model == roles.TRAIN_STCL:
        return [("table3", "Swin-L + STCL", stcl.get("dim"), stcl.get("tau")), ("table4", "Swin-L", None, None)]
    if model == roles.TRAIN_ADE:
        from_coco = (metrics.get("model_info") or {}).get("init") is not None
        return [("table2", "Swin-L + COCO-pre + ADE" if from_coco else "Swin-L + ADE", None, None)]
    if model == roles.TEACHER:
        return [("table4", "Teacher", None, None)]
    if model == roles.TRAIN_STUDENT:
        return [("table4", "Swin-L + Pseudo", None, None)]
    if model == roles.ENSEMBLE:
        return [("final", "Ensemble (CASIA_IVA)", None, None)]
    if model.startswith("baseline"):
        return [("table1", backbone_label(metrics.get("backbone")), None, None), ("table2", "Swin-L", None, None)]
    if model == "train_coco":
        return [("table2", "Swin-L + COCO", None, None)]
    if model == "train_nostcl":
        return [("table2", "Swin-L + COCO-pre", None, None), ("table3", "Swin-L", None, None)]
    grid = _stcl_grid_point(model)
    if grid is not None:
        return [("table3", "Swin-L + STCL", *grid)]
    return []


def _stcl_grid_point(model: str) -> tuple[int, float] | None:
    """(dim, τ) of a Table 3 grid run named ``stcl_d<dim>_t<τ>`` (stcl.ablations), else None."""
    if not model.startswith("stcl_d"):
        return None
    dim, _, tau = model[len("stcl_d") :].partition("_t")
    try:
        return int(dim), float(tau)
    except ValueError:
        return None


@dataclass
class Row:
    method: str
    dim: int | None = None
    tau: float | None = None
    paper: dict[str, float] = field(default_factory=dict)
    ours: dict[str, Any] | None = None  # a metrics JSON

    @property
    def ours_label(self) -> str:
        if self.ours is None:
            return "—"
        seeds = f", {self.ours['seeds']} seeds" if self.ours.get("seeds", 1) > 1 else ""
        return f"{self.ours['model']} ({backbone_label(self.ours.get('backbone'))}, {self.ours.get('split', '?')}{seeds})"


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9))


def build_tables(metrics: Sequence[dict[str, Any]]) -> dict[str, tuple[TableSpec, list[Row]]]:
    """Paper rows in paper order, each with the run's matching model; unmatched runs as extra rows."""
    tables = {spec.key: (spec, [Row(r.method, r.dim, r.tau, dict(r.values)) for r in spec.rows]) for spec in TABLES}
    other = TableSpec("other", "Other models of this run (no paper row)", tuple(TABLES[0].columns), ())
    tables["other"] = (other, [])
    for m in metrics:
        targets = paper_rows_for(m)
        if not targets:
            tables["other"][1].append(Row(m["model"], ours=m))
        for key, method, dim, tau in targets:
            rows = tables[key][1]
            match = next(
                (r for r in rows if r.method == method and _same(r.dim, dim) and _same(r.tau, tau) and r.ours is None),
                None,
            )
            if match is None:
                rows.append(Row(method, dim, tau, ours=m))
            else:
                match.ours = m
    return tables


def chance_levels(metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chance-level rows per split (from the GT class pixel counts of the metrics file with most frames)."""
    best: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if "gt_class_pixels" in m and m.get("frames", 0) >= best.get(m.get("split", "?"), {}).get("frames", -1):
            best[m.get("split", "?")] = m
    out = []
    for split, m in sorted(best.items()):
        names = list(m["gt_class_pixels"])
        g = np.array([m["gt_class_pixels"][n] for n in names], dtype=np.float64)
        n_total, c = g.sum(), len(g)
        if n_total == 0:
            continue
        present = g > 0
        freq = g / n_total
        k = int(np.argmax(g))
        windows = {n: (m.get("vc_counts", {}).get(f"VC{n}", {}).get("windows", 0)) for n in (8, 16)}
        const = {
            "mIoU": freq[k] / present.sum(),
            "WIoU": freq[k] ** 2,
            **{f"VC{n}": (1.0 if windows[n] else float("nan")) for n in (8, 16)},
        }
        iou = (g / c) / (g + n_total / c - g / c)
        rand = {
            "mIoU": float(iou[present].mean()),
            "WIoU": float((freq[present] * iou[present]).sum()),
            **{f"VC{n}": ((1.0 / c) ** (n - 1) if windows[n] else float("nan")) for n in (8, 16)},
        }
        out.append({"split": split, "method": f"constant: most frequent GT class ({names[k]})", "values": const})
        out.append({"split": split, "method": f"uniform random over {c} classes (expected)", "values": rand})
    return out


def per_class_frame(metrics: Sequence[dict[str, Any]]):
    """pandas DataFrame: index class name (GT order), one column of IoU per model (NaN: class absent from GT)."""
    import pandas as pd

    if not metrics:
        return pd.DataFrame()
    columns = {m["model"]: pd.Series(m["per_class_IoU"], dtype="float64") for m in metrics}
    return pd.DataFrame(columns).reindex(list(metrics[0]["per_class_IoU"]))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.1e}" if 0 < abs(v) < 1e-4 else f"{v:.4f}"
    return str(v)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def tables_markdown(metrics: Sequence[dict[str, Any]]) -> str:
    """All tables as one markdown document."""
    parts = [
        "# Results beside the paper",
        "",
        "Paper values from paper.txt; *ours* from the `stcl evaluate` records (official VSPW "
        "definitions). The *ours* column names the model, its backbone and split. — = not reported / not run.",
    ]
    seeds = {m.get("seeds", 1) for m in metrics}
    if max(seeds, default=1) > 1:
        parts += [
            "",
            f"Ours: mean ± sample std (n − 1) over {max(seeds)} seeds (one metrics folder each); the paper's rows "
            "are single runs. Per-class IoU: the mean.",
        ]
    for spec, rows in build_tables(metrics).values():
        if spec.key == "other" and not rows:
            continue
        header = ["Method"] + (["dim", "τ"] if spec.has_dim_tau else []) + ["ours: model (backbone, split)"]
        for col in spec.columns:
            if col.paper:
                header.append(f"{col.label} paper")
            if col.ours:
                header.append(f"{col.label} ours")
        body = []
        for r in rows:
            tau = None if r.tau is None else f"{r.tau:g}"
            line: list[Any] = [r.method] + ([r.dim, tau] if spec.has_dim_tau else []) + [r.ours_label]
            for col in spec.columns:
                if col.paper:
                    line.append(r.paper.get(col.paper))
                if col.ours:
                    line.append(None if r.ours is None else _ours(r.ours, col.ours))
            body.append(line)
        parts += ["", f"## {spec.title}", "", _md_table(header, body)]
    chance = chance_levels(metrics)
    if chance:
        parts += ["", "## Chance level (from this run's GT class frequencies; see stcl.metrics.tables)", ""]
        parts.append(
            _md_table(
                ["split", "Method", *METRICS],
                [[c["split"], c["method"], *(c["values"][k] for k in METRICS)] for c in chance],
            )
        )
    parts += ["", *temporal_markdown(metrics)]
    frame = per_class_frame(metrics)
    if not frame.empty:
        shown = frame.dropna(how="all")
        parts += ["", f"## Per-class IoU ({len(shown)} of {len(frame)} classes occur in the GT)", ""]
        parts.append(
            _md_table(
                ["class", *frame.columns], [[name, *row] for name, row in zip(shown.index, shown.to_numpy().tolist())]
            )
        )
    return "\n".join(parts) + "\n"


def temporal_markdown(metrics: Sequence[dict[str, Any]]) -> list[str]:
    """Lines of the section with TC (VSPW_code TC_cal.py, not in the paper) beside VC8 and VC16, per model."""
    head = "## Temporal consistency: VC8, VC16 and TC (VSPW_code TC_cal.py; the paper reports no TC)"
    with_tc = [m for m in metrics if m.get("TC") is not None]
    if not with_tc:
        return [head, "", "TC not computed: no RAFT file (params tc.raft_weights; `stcl flow`)."]
    rows = []
    for m in metrics:
        tc = m.get("tc") or {}
        rows.append([m["model"], _ours(m, "VC8"), _ours(m, "VC16"), _ours(m, "TC"), tc.get("videos"), tc.get("pairs")])
    return [head, "", _md_table(["model", "VC8", "VC16", "TC", "TC videos", "TC frame pairs"], rows)]


def tables_long_frame(metrics: Sequence[dict[str, Any]]):
    """Everything in one tidy pandas DataFrame (the parquet file)."""
    import pandas as pd

    recs: list[dict[str, Any]] = []

    def add(
        table, method, source, metric, value, dim=None, tau=None, model=None, backbone=None, split=None, of=None
    ):
        pooled = of is not None and of.get("seeds", 1) > 1
        recs.append(
            dict(
                std=(of.get("std") or {}).get(metric) if pooled else None,
                seeds=of.get("seeds", 1) if of is not None else None,
                table=table,
                method=method,
                dim=dim,
                tau=tau,
                source=source,
                model=model,
                backbone=backbone,
                split=split,
                metric=metric,
                value=value,
            )
        )

    for spec, rows in build_tables(metrics).values():
        for r in rows:
            for key, value in r.paper.items():
                split = key.split("_")[0] if "_" in key else "val"
                add(spec.key, r.method, "paper", key.split("_")[-1], value, r.dim, r.tau, split=split)
            if r.ours is not None:
                for metric in METRICS:
                    add(
                        spec.key,
                        r.method,
                        "ours",
                        metric,
                        r.ours.get(metric),
                        r.dim,
                        r.tau,
                        r.ours["model"],
                        r.ours.get("backbone"),
                        r.ours.get("split"),
                        of=r.ours,
                    )
    for m in metrics:
        if m.get("TC") is not None:
            add("temporal", m["model"], "ours", "TC", m["TC"], model=m["model"], backbone=m.get("backbone"),
                split=m.get("split"), of=m)
    for c in chance_levels(metrics):
        for metric in METRICS:
            add("chance", c["method"], "chance", metric, c["values"][metric], split=c["split"])
    for m in metrics:
        for name, value in m["per_class_IoU"].items():
            add(
                "per_class_IoU",
                name,
                "ours",
                "IoU",
                value,
                model=m["model"],
                backbone=m.get("backbone"),
                split=m.get("split"),
                of={"seeds": m.get("seeds", 1)},
            )
    frame = pd.DataFrame.from_records(
        recs,
        columns=[
            "table", "method", "dim", "tau", "source", "model", "backbone", "split", "metric", "value", "std", "seeds"
        ],
    )
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["std"] = pd.to_numeric(frame["std"], errors="coerce").astype("float64")
    frame["seeds"] = frame["seeds"].astype("Int64")
    frame["dim"] = frame["dim"].astype("Int64")
    frame["tau"] = pd.to_numeric(frame["tau"]).astype("float64")
    return frame


def plot_per_class(metrics: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Horizontal grouped bar chart of per-class IoU (classes present in the GT), one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = per_class_frame(metrics).dropna(how="all")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_cls, n_mod = max(len(frame), 1), max(len(frame.columns), 1)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.18 * n_cls * max(1, n_mod / 2)))
    if frame.empty:
        ax.text(0.5, 0.5, "no metrics", ha="center", va="center")
    else:
        frame = frame.iloc[::-1]
        y = np.arange(len(frame))
        height = 0.8 / n_mod
        for i, model in enumerate(frame.columns):
            ax.barh(y + i * height, frame[model].fillna(0).to_numpy(), height=height, label=model)
        ax.set_yticks(y + 0.4 - height / 2, frame.index, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("IoU")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.set_title("Per-class IoU (classes present in the GT)")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def write_tables(
    metrics_dir: str | Path | Sequence[str | Path], out_dir: str | Path, params: Any | None = None
) -> dict[str, Path]:
    """Write tables.md, tables.parquet and per_class_iou.png into ``out_dir``; returns their paths.

    ``metrics_dir``: one folder of `stcl evaluate` records, or several (one per seed: `load_runs`).
    """
    import io

    metrics = load_runs(metrics_dir, params)
    out = Path(out_dir)
    paths = {"markdown": out / "tables.md", "parquet": out / "tables.parquet", "chart": out / "per_class_iou.png"}
    write_text(paths["markdown"], tables_markdown(metrics))
    buf = io.BytesIO()
    tables_long_frame(metrics).to_parquet(buf, index=False)
    write_bytes(paths["parquet"], buf.getvalue())
    plot_per_class(metrics, paths["chart"])
    return paths
