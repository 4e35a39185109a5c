"""`stcl infer`: sliding-window, multi-scale + flip inference of a split with a model ensemble.

    stcl infer --checkpoints results/models/train_student/model.pt [B.pt ...] --root data/VSPW_480p \
        --split val --out results/predictions/ensemble/val [--weights 2 1 1] [--save-probs]

Scales, flip, window, stride and windows per batch come from ``params.infer``. Writes
``<out>/<video>/<frame>.png`` (palette PNG, class ids 0..123, frame size), one video folder at a time,
atomically; a rerun skips the videos already complete.

One pass, many outputs (`stcl.infer.outputs`): each named model runs once per frame and every output is
written from its probabilities; ``--shard i/n`` does ``sorted(videos)[i::n]`` and writes ``--record``;
``--gather`` checks the records and the outputs and writes ``--manifest``::

    stcl infer --split val --checkpoint stcl=S.pt --checkpoint ade=A.pt --checkpoint student=T.pt \
        --output teacher=ade,stcl=results/predictions/teacher/val \
        --output ensemble=student,stcl,ade:2,1,1=results/predictions/ensemble/val \
        --shard 0/4 --record results/infer/val/0-of-4.json
    stcl infer --split val --gather --record R0 R1 R2 R3 --output ... --manifest results/infer/val.json

``params.infer.amp`` (bf16 in the paper preset) applies on CUDA; CPU inference is float32.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", nargs="+", metavar="MODEL_PT", help="model.pt files (one ensemble output, --out)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="a named model (repeat)")
    p.add_argument(
        "--output", action="append", default=[], metavar="NAME=M1,M2[:W1,W2]=DIR", help="an output of named models"
    )
    p.add_argument("--shard", default=None, metavar="I/N", help="only videos sorted(videos)[I::N]")
    p.add_argument("--record", nargs="+", default=None, help="shard record to write (with --gather: all to check)")
    p.add_argument("--gather", action="store_true", help="check the shard records and outputs, write --manifest")
    p.add_argument("--manifest", default=None, help="with --gather: the manifest JSON to write")
    p.add_argument("--split", required=True, choices=("train", "val", "test"), help="split of the VSPW root")
    p.add_argument("--out", default=None, help="output folder of --checkpoints: <out>/<video>/<frame>.png")
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--root", required=True, help="VSPW root: its <split>.txt lists the videos to predict")
    p.add_argument(
        "--weights", nargs="+", type=float, default=None, help="one ensemble weight per checkpoint (default: equal)"
    )
    p.add_argument(
        "--save-probs",
        "--probs",
        dest="save_probs",
        action="store_true",
        help="also write <frame>.npy float16 (C, H, W) probabilities",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    if args.checkpoint or args.output or args.gather:
        from stcl.infer.outputs import run_command

        return run_command(args)
    if not args.checkpoints or not args.out:
        raise ValueError("stcl infer: give --checkpoints and --out, or --checkpoint NAME=PATH and --output")
    import torch

    from stcl.data.vspw import read_split
    from stcl.infer.ensemble import load_members
    from stcl.infer.multiscale import TTA
    from stcl.infer.outputs import inference_amp
    from stcl.infer.predict import predict_videos
    from stcl.infer.sliding import Window
    from stcl.params import load_params

    params = load_params(args.params)
    root = args.root
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    members = load_members(args.checkpoints, args.weights, device=device, amp=inference_amp(params.infer.amp, device))
    tta = TTA(
        scales=params.infer.scales,
        flip=params.infer.flip,
        window=Window(params.infer.crop_size, params.infer.stride),
        batch_size=params.infer.batch_size,
    )
    videos = read_split(root, args.split)
    summary = predict_videos(
        members,
        tta,
        root,
        videos,
        args.out,
        device=device,
        save_probs=args.save_probs,
        workers=params.infer.workers,
        progress=sys.stderr.isatty(),
    )
    print(
        f"stcl infer: {len(summary.computed)} videos ({summary.frames} frames) predicted, "
        f"{len(summary.skipped)} already complete -> {args.out}"
    )
    return 0
