"""`stcl export`: a model file → one self-describing ONNX file with dynamic batch, height and width.

Exporter: PyTorch's maintained exporter, ``torch.onnx.export(..., dynamo=True)`` (the default since
PyTorch 2.9; the TorchScript exporter is deprecated). It traces the model with `torch.export` on symbolic
sizes (``Dim.DYNAMIC`` for batch, height and width) and translates it with onnxscript's torchlib, so it needs
the ``onnxscript`` package (and ``onnx``) beside torch; nothing is downloaded at export time. Opset 18:
torchlib's own opset (no version conversion pass), and it has everything the graph needs (Resize with
antialias, LayerNormalization); onnxruntime ≥ 1.14 and TensorRT ≥ 8.6 run it.

The graph is the segmentor's ``predict`` (normalisation, encoder, UperNet with its PPM, logits resized to the
input): ``images`` float32 (N, 3, H, W) RGB 0..255 → ``logits`` float32 (N, C, H, W). The operations whose
decomposition would freeze the export size are written shape-generically while exporting
(`stcl.models.dynamic_shapes`); the example input is large enough that no window grid or pooled map of the
trace is 1 (the exporter would specialise a 1).

Metadata (``metadata_props``, all strings; JSON where structured): ``stcl.format`` (`FORMAT`),
``stcl.version``, ``stcl.label_space``, ``stcl.num_classes``, ``stcl.class_names``, ``stcl.palette`` (one
RGB triple per class, the label PNGs' palette), ``stcl.tta`` (scales, flip, crop_size, stride of the params
it is exported with), ``stcl.backbone``, ``stcl.model_params``, ``stcl.source`` (the model file's name and
sha256) and ``stcl.io``.

The file is written atomically (`stcl.atomic`): a failed export leaves no ``.onnx`` behind.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from stcl.atomic import atomic_path

if TYPE_CHECKING:
    from stcl.params import InferParams

__all__ = ["FORMAT", "OPSET", "EXPORTABLE", "ExportResult", "require", "export_onnx", "export_segmentor", "export_size"]

FORMAT = "stcl-onnx/1"
OPSET = 18
#: encoder families (`stcl.models.encoder_base.Encoder.family`) whose graph is correct at any size
EXPORTABLE = ("resnet", "resnest", "swin", "cswin", "dinov2", "dinov3")
INSTALL = "pip install 'stcl[export]' (or: pip install onnx onnxscript onnxruntime)"


def require(*modules: str) -> None:
    """Import ``modules`` or raise one OSError line naming the first missing one and how to install it."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise OSError(f"{name} is not installed: {INSTALL}") from None


class _Logits(nn.Module):
    """The exported function: (N, 3, H, W) RGB 0..255 → (N, C, H, W) logits (`Segmentor.predict`)."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.segmentor.predict(images)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    bytes: int
    seconds: float
    family: str
    example: tuple[int, int, int, int]


def export_size(segmentor: nn.Module) -> tuple[int, int]:
    """(H, W) of the trace's example: every stage's map spans at least two windows / stripes / pooled bins
    (a size of 1 would be specialised), H ≠ W and neither a multiple of 32 (no pad is optimised away)."""
    window = int(getattr(segmentor.backbone, "window_size", 0) or 0)
    splits = getattr(segmentor.backbone, "split_sizes", (1,))
    cells = max(window, *splits, 6) * 2 + 1  # ≥ two windows and ≥ the PPM's 6 bins at stride 32
    h = 32 * cells + 5
    return h, h + 40


def _metadata(meta: dict[str, Any], infer: InferParams) -> dict[str, str]:
    from stcl import __version__
    from stcl.data.palette import label_palette

    n = int(meta["num_classes"])
    pal = label_palette()
    return {
        "stcl.format": FORMAT,
        "stcl.version": __version__,
        "stcl.label_space": str(meta.get("label_space", "")),
        "stcl.num_classes": str(n),
        "stcl.class_names": json.dumps(list(meta.get("class_names") or [])),
        "stcl.palette": json.dumps([pal[3 * c : 3 * c + 3] for c in range(n)]),
        "stcl.tta": json.dumps(
            {"scales": list(infer.scales), "flip": bool(infer.flip), "crop_size": list(infer.crop_size),
             "stride": list(infer.stride)}
        ),
        "stcl.backbone": str(meta["model_params"].get("backbone", "")),
        "stcl.model_params": json.dumps(meta["model_params"]),
        "stcl.source": json.dumps(meta.get("source", {})),
        "stcl.io": "images: float32 (N, 3, H, W) RGB 0..255 -> logits: float32 (N, C, H, W)",
    }


def _name_dims(model: Any) -> None:  # noqa: ANN401 - an onnx.ModelProto
    """Call the input's symbolic dims batch, height, width (the exporter names them s0, s1, …) everywhere."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    names = {dims[0].dim_param: "batch", dims[2].dim_param: "height", dims[3].dim_param: "width"}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in names:
                d.dim_param = names[d.dim_param]


def export_onnx(model_file: str | Path, out: str | Path, infer: InferParams) -> ExportResult:
    """Export the segmentor of ``model_file`` (a ``stcl-model/1`` file) to ``out``; see the module doc.

    Errors (one line): not a model file (naming it), an encoder family that cannot export, onnx / onnxscript
    missing (naming the package and how to install it).
    """
    from stcl.models.checkpoints import load_model

    model_file = Path(model_file)
    require("onnx", "onnxscript")
    model, meta = load_model(model_file)  # ValueError naming the file when it is not an stcl model
    meta = {**meta, "source": {"name": model_file.name, "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}}
    return export_segmentor(model, meta, out, infer, what=str(model_file))


def export_segmentor(
    model: nn.Module, meta: dict[str, Any], out: str | Path, infer: InferParams, *, what: str = "model"
) -> ExportResult:
    """Export a `Segmentor` with the metadata ``meta`` of its model file (num_classes, label_space,
    class_names, model_params, source) to ``out`` (atomically)."""
    require("onnx", "onnxscript")
    import onnx

    out = Path(out)
    family = str(getattr(model.backbone, "family", ""))
    if family not in EXPORTABLE:
        raise ValueError(
            f"{what}: encoder family {family!r} ({meta['model_params'].get('backbone')}) cannot be exported "
            f"to ONNX yet; exportable: {', '.join(EXPORTABLE)}"
        )
    model = model.eval()
    h, w = export_size(model)
    example = torch.rand(2, 3, h, w) * 255
    dyn = torch.export.Dim.DYNAMIC
    start = time.perf_counter()
    program = torch.onnx.export(
        _Logits(model).eval(),
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"images": {0: dyn, 2: dyn, 3: dyn}},
        opset_version=OPSET,
        optimize=True,
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    _name_dims(proto)
    for key, value in _metadata(meta, infer).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    seconds = time.perf_counter() - start
    return ExportResult(out, out.stat().st_size, seconds, family, (2, 3, h, w))
