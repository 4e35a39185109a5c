"""The numbers the paper reports (paper.txt, Tables 1-6), as data, and which of our models fills which row.

All values are fractions as printed in the paper. Tables 1-3 and Table 4's first column are on the VSPW val
set; Table 4's other columns are on the challenge's test part 1 (development) and Tables 5-6 on test part 1
and the final test set, which have no public GT: our rows there are on val and say so.

(The paper's text of section 3.3 quotes Table 2's numbers for the teacher and student on test part 1; the
tables below use the tables' own values.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PaperRow", "Column", "TableSpec", "TABLES", "BACKBONE_NAMES", "backbone_label"]


@dataclass(frozen=True)
class PaperRow:
    method: str
    values: dict[str, float] = field(default_factory=dict)  # paper metric key → value
    dim: int | None = None
    tau: float | None = None


@dataclass(frozen=True)
class Column:
    """One metric column: the paper's value under ``paper`` and ours under ``ours`` (either may be None)."""

    label: str
    paper: str | None
    ours: str | None


@dataclass(frozen=True)
class TableSpec:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[PaperRow, ...]
    has_dim_tau: bool = False


_VAL = (
    Column("mIoU", "mIoU", "mIoU"),
    Column("WIoU", None, "WIoU"),
    Column("VC8", "VC8", "VC8"),
    Column("VC16", "VC16", "VC16"),
)


def _r(method: str, miou: float, vc8: float, vc16: float, **kw) -> PaperRow:
    return PaperRow(method, {"mIoU": miou, "VC8": vc8, "VC16": vc16}, **kw)


def _test(prefix: str, miou: float, wiou: float, vc8: float, vc16: float) -> dict[str, float]:
    return {f"{prefix}_mIoU": miou, f"{prefix}_WIoU": wiou, f"{prefix}_VC8": vc8, f"{prefix}_VC16": vc16}


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "table1",
        "Table 1. Backbones (UperNet decoder), VSPW val",
        _VAL,
        (
            _r("ResNet-50", 0.3430, 0.8050, 0.7450),
            _r("ResNest-101", 0.3758, 0.8430, 0.7920),
            _r("Cswin-L", 0.5530, 0.8860, 0.8467),
            _r("Swin-L", 0.5627, 0.8864, 0.8539),
        ),
    ),
    TableSpec(
        "table2",
        "Table 2. Extra data, VSPW val",
        _VAL,
        (
            _r("Swin-L", 0.5627, 0.8864, 0.8539),
            _r("Swin-L + ADE", 0.5670, 0.8792, 0.8451),
            _r("Swin-L + COCO", 0.5704, 0.8906, 0.8578),
            _r("Swin-L + COCO-pre", 0.5803, 0.8916, 0.8611),
        ),
    ),
    TableSpec(
        "table3",
        "Table 3. Spatial-temporal consistency loss (projection dim, temperature τ), VSPW val",
        _VAL,
        (
            _r("Swin-L", 0.5803, 0.8916, 0.8611),
            _r("Swin-L + STCL", 0.5930, 0.9007, 0.8687, dim=512, tau=0.07),
            _r("Swin-L + STCL", 0.5876, 0.8989, 0.8649, dim=512, tau=0.05),
            _r("Swin-L + STCL", 0.5872, 0.8986, 0.8651, dim=256, tau=0.07),
        ),
        has_dim_tau=True,
    ),
    TableSpec(
        "table4",
        "Table 4. Auto labelling; val mIoU, and test part 1 (paper only: no public GT)",
        (
            Column("val mIoU", "val_mIoU", "mIoU"),
            Column("val WIoU", None, "WIoU"),
            Column("val VC8", None, "VC8"),
            Column("val VC16", None, "VC16"),
            Column("test-1 mIoU", "test1_mIoU", None),
            Column("test-1 VC8", "test1_VC8", None),
            Column("test-1 VC16", "test1_VC16", None),
        ),
        (
            PaperRow("Swin-L", {"val_mIoU": 0.5930}),
            PaperRow("Teacher", {"val_mIoU": 0.6085, "test1_mIoU": 0.5638, "test1_VC8": 0.9120, "test1_VC16": 0.8769}),
            PaperRow(
                "Swin-L + Pseudo", {"val_mIoU": 0.6006, "test1_mIoU": 0.5743, "test1_VC8": 0.9253, "test1_VC16": 0.8989}
            ),
        ),
    ),
    TableSpec(
        "final",
        "Final 3-model ensemble (paper Tables 5-6: CASIA_IVA on test part 1 and the final test; ours on val)",
        (
            Column("val mIoU", None, "mIoU"),
            Column("val WIoU", None, "WIoU"),
            Column("val VC8", None, "VC8"),
            Column("val VC16", None, "VC16"),
            Column("test-1 mIoU", "test1_mIoU", None),
            Column("test-1 WIoU", "test1_WIoU", None),
            Column("test-1 VC8", "test1_VC8", None),
            Column("test-1 VC16", "test1_VC16", None),
            Column("final mIoU", "final_mIoU", None),
            Column("final WIoU", "final_WIoU", None),
            Column("final VC8", "final_VC8", None),
            Column("final VC16", "final_VC16", None),
        ),
        (
            PaperRow(
                "Ensemble (CASIA_IVA)",
                {**_test("test1", 0.5984, 0.7307, 0.9451, 0.9222), **_test("final", 0.5885, 0.7178, 0.9477, 0.9259)},
            ),
        ),
    ),
)

# timm / params backbone name → the paper's label (rows of Table 1)
BACKBONE_NAMES: dict[str, str] = {
    "swin_large_patch4_window12_384": "Swin-L",
    "swin_large_patch4_window7_224": "Swin-L",
    "resnet50": "ResNet-50",
    "resnet50c": "ResNet-50",
    "resnet50d": "ResNet-50",
    "resnest101e": "ResNest-101",
    "cswin_large": "Cswin-L",
    "cswin_large_224": "Cswin-L",
    "cswin_large_384": "Cswin-L",
    "resnet18": "ResNet-18",
    "dinov2_vitl14": "DINOv2-L/14",
    "dinov2_vitl14_reg4": "DINOv2-L/14 reg4",
    "dinov3_vitl16": "DINOv3-L/16",
}


def backbone_label(name: str | None) -> str:
    """The paper's label of a backbone name (its own name when the paper has none)."""
    if not name:
        return "?"
    return BACKBONE_NAMES.get(name, name)
