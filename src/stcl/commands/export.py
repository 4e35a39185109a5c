"""`stcl export`: a trained model file → one ONNX file (dynamic batch, height, width), self-describing.

    stcl export results/models/train_student/model.pt --out model.onnx [--params params.yaml]

The graph maps float32 (N, 3, H, W) RGB 0..255 to (N, C, H, W) logits (normalisation inside); its metadata
holds the label space, class names, palette, the TTA defaults of ``--params`` (``params.infer``: scales,
flip, window, stride; built-in defaults when the default params.yaml is absent) and the stcl version. Run it
with ``stcl predict --engine onnxruntime --model model.onnx``. Exporter, opset and what each encoder family
needs: `stcl.models.onnx_export`. Exit codes: 0 done, 1 bad input (one line naming the file, the encoder
family or the missing package); a failed export leaves no file.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model.pt written by stcl train")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--params", default=None, help="params file whose infer TTA is recorded (default: ./params.yaml if present)")


def run(args: argparse.Namespace) -> int:
    from stcl.models.onnx_export import export_onnx
    from stcl.params import Params, load_params

    if args.params is None:
        infer = (load_params("params.yaml") if Path("params.yaml").is_file() else Params()).infer
    else:
        infer = load_params(args.params).infer
    result = export_onnx(args.model, args.out, infer)
    print(
        f"stcl export: {args.model} ({result.family}) -> {result.path} "
        f"({result.bytes / 1e6:.1f} MB, {result.seconds:.0f} s, dynamic batch/height/width)"
    )
    return 0
