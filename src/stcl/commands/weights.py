"""`stcl weights FILE`: which format a weights file is in, which backbones it fits, and whether it loads.

    stcl weights swin_large_patch4_window12_384_22k.pth --params params.yaml --stage pretrain_coco

Reads the file safely (never runs pickled code), names its format (official Swin / CSWin / DINOv2 / DINOv3
release, timm, mmseg model zoo, a model file of this project), the backbone family and window / stripe size, lists the
``model.backbone`` names whose shapes it fits, then checks a strict load into the model that ``model:`` of
the params file builds for ``--stage`` (its class count and projection dim), exactly as ``model.pretrained``
or a stage's init would load it; nothing is trained or written. A RAFT file (official ``raft-things.pth`` or
torchvision's ``raft_large``, for the TC metric) is named as such and loaded strictly into ``raft_large``.
Exit 0: it loads; 1: it does not, or the
file is unreadable (the reason in one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="weights file (.pth, .pt, .bin, .safetensors)")
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    p.add_argument(
        "--stage",
        default="pretrain_coco",
        help="training stage whose class count and projection dim the model gets (default: pretrain_coco)",
    )


def _fitting_backbones(wf) -> list[str]:  # noqa: ANN001 - a stcl.models.files.WeightsFile
    """Encoder names (on the meta device) into which the file's backbone part would load strictly."""
    from stcl.families import BACKBONES
    from stcl.models.encoders import build_encoder
    from stcl.models.loading import load_encoder_weights

    fits = []
    for name in BACKBONES:
        try:
            load_encoder_weights(build_encoder(name, device="meta"), wf, dry_run=True)
        except ValueError:
            continue
        fits.append(name)
    return fits


def _describe_raft(path: Path) -> bool:
    """A RAFT file (the TC metric's flow, `stcl.flow.raft`): print its format and load it strictly; else False."""
    from stcl.flow.raft import detect_raft_format, load_raft
    from stcl.models.files import read_weights_file, unwrap_state

    fmt = detect_raft_format(unwrap_state(read_weights_file(path), path)[0])
    if fmt is None:
        return False
    model = load_raft(path)  # raises one line naming the file and keys
    n = sum(v.numel() for v in model.parameters())
    print(f"file:     {path}")
    layout = "VSPW_code / princeton-vl raft-things layout" if fmt == "raft-official" else "torchvision raft_large"
    print(f"format:   {fmt}: RAFT for the TC metric ({layout})")
    print(f"result:   loads strictly into torchvision raft_large ({n:,} parameters); use it as params tc.raft_weights")
    return True


def run(args: argparse.Namespace) -> int:
    from stcl.data.classes import class_names
    from stcl.families import FORMATS
    from stcl.models.files import open_weights
    from stcl.models.loading import load_segmentor_weights
    from stcl.models.segmentor import build_segmentor
    from stcl.params import load_params

    try:
        wf = open_weights(args.file)
    except ValueError:
        if _describe_raft(args.file):  # not a segmentation layout: the TC metric's RAFT, or the error stands
            return 0
        raise
    n = sum(v.numel() for v in wf.state.values())
    print(f"file:     {wf.path}")
    print(f"format:   {wf.format}: {FORMATS[wf.format]}; {len(wf.state)} tensors, {n:,} values")
    detail = f", window {wf.window}" if wf.window else ""
    heads = "with decode/auxiliary heads" if wf.heads else "backbone only"
    print(f"backbone: {wf.backbone or 'unknown'}{detail} ({heads})")
    fits = _fitting_backbones(wf)
    print(f"fits:     {', '.join(fits) if fits else 'no model.backbone of this version'}")

    params = load_params(args.params)
    stage = params.stage(args.stage)
    num_classes = len(class_names(stage.label_space))
    proj_dim = stage.stcl.dim if stage.stcl.enabled else None
    model = build_segmentor(params.model, num_classes, proj_dim, device="meta")
    where = f"{args.params} model.backbone={params.model.backbone}, stage {args.stage}: {num_classes} classes"
    try:
        report = load_segmentor_weights(model, wf, exclude=params.model.load_exclude, dry_run=True)
    except ValueError as err:
        print(f"into:     {where}\nresult:   does NOT load: {err}")
        return 1
    print(f"into:     {where}\nresult:   loads strictly: {report}")
    return 0
