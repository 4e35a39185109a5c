"""Training curves of a stage from its dvclive TSVs, with the stage's val mIoU as a point at its last step.

Input layout (`stcl.train.logging.TrainLogger`): ``<dvclive>/plots/metrics/train/<name>.tsv`` with header
``step\t<name>``; names: ``loss`` (total), the loss parts (``ce``, ``aux``, ``stcl``) and ``lr``.
One PNG per stage: loss parts over iterations (left), learning rate (middle), val mIoU (right: the point
of `stcl evaluate` on this stage's model at its final iteration; "not evaluated" when there is none).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from stcl.report.figures import pyplot, save_png

__all__ = ["read_curves", "plot_stage_curves"]

LOSS_NAMES = ("loss", "ce", "aux", "stcl")


def read_curves(dvclive_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """{name: (steps, values)} of every ``plots/metrics/train/*.tsv`` under ``dvclive_dir``.

    FileNotFoundError naming the folder if it holds no curve; ValueError naming a malformed file.
    """
    folder = Path(dvclive_dir) / "plots" / "metrics" / "train"
    files = sorted(folder.glob("*.tsv")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{folder}: no training curves (*.tsv)")
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for path in files:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t"))
        if not rows or len(rows[0]) != 2 or rows[0][0] != "step":
            raise ValueError(f"{path}: expected a header 'step<TAB>{path.stem}'")
        try:
            steps = [int(r[0]) for r in rows[1:] if r]
            values = [float(r[1]) for r in rows[1:] if r]
        except (ValueError, IndexError):
            raise ValueError(f"{path}: rows must be 'step<TAB>value'") from None
        curves[path.stem] = (steps, values)
    return curves


def plot_stage_curves(
    stage: str,
    curves: Mapping[str, tuple[list[int], list[float]]],
    path: str | Path,
    *,
    val_miou: float | None = None,
    total_iters: int | None = None,
) -> Path:
    """Write the curves of one stage as a PNG (three panels: loss parts, lr, val mIoU); returns ``path``.

    Args:
        stage: stage name (title).
        curves: `read_curves` output.
        path: the PNG to write (atomically).
        val_miou: mIoU of the stage's model on val, if evaluated (drawn at the last logged step).
        total_iters: x-axis end (default: the last logged step).
    """
    plt = pyplot()
    last = max((s[-1] for s, _ in curves.values() if s), default=0)
    end = total_iters or last or 1
    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=(12, 3.2))
    for name in [n for n in LOSS_NAMES if n in curves] + sorted(set(curves) - set(LOSS_NAMES) - {"lr"}):
        steps, values = curves[name]
        ax_loss.plot(steps, values, marker="." if len(steps) < 30 else None, label=name, lw=1.8 if name == "loss" else 1)
    ax_loss.set(title=f"{stage}: training loss", xlabel="iteration", ylabel="loss", xlim=(0, end))
    ax_loss.legend(fontsize=8)
    if "lr" in curves:
        ax_lr.plot(*curves["lr"], color="tab:purple")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_lr.set(title="learning rate", xlabel="iteration", xlim=(0, end))
    if val_miou is not None:
        ax_val.plot([last], [val_miou], "o", color="tab:red", ms=8)
        ax_val.annotate(f"{100 * val_miou:.1f}", (last, val_miou), textcoords="offset points", xytext=(6, 6))
    else:
        ax_val.text(0.5, 0.5, "not evaluated on val", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set(title="val mIoU", xlabel="iteration", xlim=(0, end * 1.05), ylim=(0, 1))
    fig.tight_layout()
    return save_png(fig, path)
