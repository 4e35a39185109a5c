"""The named classes of the embedded data (`stcl synth`): the only list of their VSPW names and kinds.

Readers: `stcl.data.synthetic` (the first ``synth.num_classes`` of them, then other VSPW classes as things) and
`stcl.params` (``synth.confusable_pairs`` may name these). Kept free of numpy and of `stcl.data` so that
validating params imports neither.
"""

from __future__ import annotations

__all__ = ["SYNTH_CLASSES", "named_kinds"]

# (VSPW name, kind). The first eight exist in VSPW, COCO panoptic and ADE20K (through the mapping tables).
SYNTH_CLASSES: tuple[tuple[str, str], ...] = (
    ("sky", "stuff"),
    ("grass", "stuff"),
    ("person", "thing"),
    ("car", "thing"),
    ("road", "stuff"),
    ("wall", "stuff"),
    ("bus", "thing"),
    ("bicycle", "thing"),
    ("tree", "stuff"),
    ("building", "stuff"),
    ("dog", "thing"),
    ("horse", "thing"),
    ("water", "stuff"),
    ("mountain", "stuff"),
    ("cat", "thing"),
    ("motorcycle", "thing"),
    ("floor", "stuff"),
    ("ceiling", "stuff"),
    ("chair_or_seat", "thing"),
    ("bed", "thing"),
    ("sea", "stuff"),
    ("sand", "stuff"),
    ("airplane", "thing"),
    ("truck", "thing"),
)


def named_kinds(num_classes: int) -> dict[str, str]:
    """Name → kind ("stuff" or "thing") of the named classes among the first ``num_classes`` in use."""
    return dict(SYNTH_CLASSES[:num_classes])
