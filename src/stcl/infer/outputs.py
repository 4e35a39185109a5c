"""One pass over a split, many outputs: each model's TTA probabilities per frame are computed once.

A split's inference jobs in the chain ask for several predictions of the same frames: each member alone
(Tables 2-4), the teacher (a weighted subset, Table 4) and the final ensemble (paper 3.4). Run as separate
jobs they push every frame through the same model several times (val in the default chain: 8 model passes
where 3 suffice). Here one job loads the named models once and, for every frame, runs each model that some
unfinished output needs through the multi-scale + flip TTA *once*; every output is then a weighted mean of
those (C, H, W) probabilities::

    probs_out = Σ_{m ∈ members(out)} w_m · probs_m / Σ w_m

which equals what `stcl.infer.ensemble.ensemble_probs` computes for that output alone (same TTA, same
order of operations per model), so the predictions are the same as separate runs.

Sharding (as the pseudo labels, `stcl.infer.pseudo_labels.shard_videos`): shard ``i`` of ``n`` takes
``sorted(videos)[i::n]``; each shard is a separate GPU job writing into the same output folders. Each
``<out>/<video>/`` folder appears atomically; a rerun skips the videos complete in every output, and for a
video complete in only some outputs runs only the models the missing outputs need. A shard ends by writing
its record (JSON, atomically); `gather` checks the records of all ``n`` shards and that every video of the
split is complete in every output, then writes one manifest (atomically).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from stcl.atomic import atomic_dir, remove_stale_tmp, write_json
from stcl.hold import hold
from stcl.infer.ensemble import load_members, normalized_weights
from stcl.infer.io import save_label_png
from stcl.infer.multiscale import TTA, tta_probs
from stcl.infer.predict import image_tensor, prefetch, to_class_ids, video_complete
from stcl.infer.sliding import Predictor

__all__ = [
    "RECORD_FORMAT",
    "OutputSpec",
    "parse_checkpoint_arg",
    "parse_output_arg",
    "inference_amp",
    "load_predictors",
    "OutputsSummary",
    "predict_outputs",
    "shard_record",
    "gather_outputs",
]

RECORD_FORMAT = "stcl-infer-shard/1"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class OutputSpec:
    """One requested prediction: the weighted mean of ``members``' probabilities, written under ``out``.

    ``weights`` are normalised to sum 1 (equal when not given); ``save_probs`` also writes
    ``<frame>.npy`` float16 (C, H, W) probabilities.
    """

    name: str
    members: tuple[str, ...]
    out: Path
    weights: tuple[float, ...] | None = None
    save_probs: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"output name must be letters, digits, '_', '-', '.', got {self.name!r}")
        if not self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"output {self.name!r}: members must be distinct and non-empty, got {self.members}")
        object.__setattr__(self, "weights", tuple(normalized_weights(len(self.members), self.weights)))

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (".png", ".npy") if self.save_probs else (".png",)


def parse_checkpoint_arg(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` → (name, path); ValueError naming ``--checkpoint`` otherwise."""
    name, sep, path = text.partition("=")
    if not sep or not _NAME.fullmatch(name) or not path:
        raise ValueError(
            f"--checkpoint must be NAME=PATH (e.g. train_stcl=results/models/train_stcl/model.pt), got {text!r}"
        )
    return name, Path(path)


def parse_output_arg(text: str, save_probs: bool = False) -> OutputSpec:
    """``NAME=M1,M2[:W1,W2]=DIR`` → `OutputSpec`; ValueError naming ``--output`` otherwise.

    Example: ``teacher=train_ade,train_stcl:1,1=results/predictions/teacher/val``.
    """
    parts = text.split("=", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"--output must be NAME=MEMBERS[:WEIGHTS]=DIR (e.g. ensemble=a,b,c=out/), got {text!r}")
    name, members_text, out = parts
    members_part, _, weights_part = members_text.partition(":")
    members = tuple(m for m in members_part.split(","))
    if any(not _NAME.fullmatch(m) for m in members):
        raise ValueError(f"--output {text!r}: members must be comma-separated checkpoint names")
    weights = None
    if weights_part:
        try:
            weights = tuple(float(w) for w in weights_part.split(","))
        except ValueError:
            raise ValueError(f"--output {text!r}: weights must be comma-separated numbers") from None
    try:
        return OutputSpec(name, members, Path(out), weights, save_probs)
    except ValueError as err:
        raise ValueError(f"--output {text!r}: {err}") from None


def inference_amp(amp: str, device: torch.device) -> str:
    """The autocast actually used: ``amp`` on CUDA, "off" (float32) on any other device.

    CPU bf16 autocast is slower than float32 on most CPUs and is not what the GPU runs, so CPU inference
    (tests, the embedded chain) stays float32 whatever the preset says.
    """
    if amp not in ("off", "bf16", "fp16"):
        raise ValueError(f"amp must be 'off', 'bf16' or 'fp16', got {amp!r}")
    return amp if torch.device(device).type == "cuda" else "off"


def load_predictors(checkpoints: Mapping[str, str | Path], device: torch.device, amp: str) -> dict[str, Predictor]:
    """Load each named model.pt once (same checks as `load_members`); name → autocast predictor."""
    names = list(checkpoints)
    members = load_members([checkpoints[n] for n in names], None, device=device, amp=amp)
    return {n: m.predict for n, m in zip(names, members)}


@dataclass
class OutputsSummary:
    """What `predict_outputs` did. ``model_frames`` counts (model, frame) TTA runs; × views = forward passes."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    frames: int = 0
    model_frames: int = 0
    views: int = 0

    @property
    def forward_passes(self) -> int:
        """(model, frame, view) passes (each view is one or more sliding windows)."""
        return self.model_frames * self.views


def _check_outputs(models: Mapping[str, Any], outputs: Sequence[OutputSpec]) -> None:
    if not outputs:
        raise ValueError("outputs: at least one output is needed")
    seen: dict[Path, str] = {}
    for o in outputs:
        missing = [m for m in o.members if m not in models]
        if missing:
            raise ValueError(f"output {o.name!r}: no checkpoint named {', '.join(missing)} (have {', '.join(models)})")
        key = o.out.resolve()
        if key in seen:
            raise ValueError(f"outputs {seen[key]!r} and {o.name!r} write to the same folder {o.out}")
        seen[key] = o.name


def predict_outputs(
    models: Mapping[str, Predictor],
    outputs: Sequence[OutputSpec],
    tta: TTA,
    root: str | Path,
    videos: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = True,
) -> OutputsSummary:
    """Predict ``videos`` of the VSPW root once per model and write every output from the same probabilities.

    Args:
        models: name → predictor ``(B, 3, h, w) float 0..255 → (B, C, h, w)`` logits.
        outputs: what to write (members refer to ``models`` by name).
        tta: scales, flips, sliding window, windows per batch.
        root: VSPW layout root (frames at ``data/<video>/origin/*.jpg``).
        videos: the videos to do (e.g. one shard of a split).
        device: where frames go (the models' device).
        workers: frame-decoding threads ahead of the models.
        progress: tqdm bar over frames.
    """
    from stcl.data.vspw import frame_path, list_frames, load_image

    _check_outputs(models, outputs)
    for o in outputs:
        o.out.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(o.out, set(videos))
    summary = OutputsSummary(views=len(tta.views))
    frames = {v: list_frames(root, v) for v in videos}
    todo: list[tuple[str, list[OutputSpec]]] = []
    for v in videos:
        missing = [o for o in outputs if not video_complete(o.out / v, frames[v], o.suffixes)]
        (todo.append((v, missing)) if missing else summary.skipped.append(v))
    bar = tqdm(total=sum(len(frames[v]) for v, _ in todo), unit="frame", desc="infer", disable=not progress)
    with bar:
        for video, missing in todo:
            needed = [n for n in models if any(n in o.members for o in missing)]  # models' order, each once
            stems = frames[video]
            images = prefetch(load_image, [frame_path(root, video, s) for s in stems], workers)
            with ExitStack() as stack:
                tmps = [stack.enter_context(atomic_dir(o.out / video)) for o in missing]
                for stem, image in zip(stems, images):
                    _write_frame(models, needed, missing, tmps, stem, image_tensor(image, device), tta)
                    summary.model_frames += len(needed)
                    bar.update(1)
            summary.computed.append(video)
            summary.frames += len(stems)
            hold(f"infer.video_done.{video}")  # tests: stop here on request (stcl.hold)
    return summary


@torch.inference_mode()
def _write_frame(
    models: Mapping[str, Predictor],
    needed: Sequence[str],
    outputs: Sequence[OutputSpec],
    tmps: Sequence[Path],
    stem: str,
    image: Tensor,
    tta: TTA,
) -> None:
    """Each needed model's (C, H, W) TTA probabilities once, then every output's weighted mean."""
    probs = {n: tta_probs(models[n], image, tta) for n in needed}
    classes = {n: p.shape[0] for n, p in probs.items()}
    if len(set(classes.values())) > 1:
        raise ValueError(f"models predict different numbers of classes: {classes}")
    for o, tmp in zip(outputs, tmps):
        total: Tensor | None = None
        for m, w in zip(o.members, o.weights or ()):
            total = probs[m] * w if total is None else total.add_(probs[m], alpha=w)
        assert total is not None  # members are non-empty (OutputSpec)
        save_label_png(tmp / f"{stem}.png", to_class_ids(total))
        if o.save_probs:
            np.save(tmp / f"{stem}.npy", total.to(torch.float16).cpu().numpy())


def shard_record(
    summary: OutputsSummary, outputs: Sequence[OutputSpec], split: str, index: int, count: int, videos: Sequence[str]
) -> dict[str, Any]:
    """The JSON a finished shard writes (its videos, outputs and pass counts)."""
    return {
        "format": RECORD_FORMAT,
        "split": split,
        "shard": [index, count],
        "videos": sorted(videos),
        "outputs": {
            o.name: {"members": list(o.members), "weights": list(o.weights or ()), "out": str(o.out)} for o in outputs
        },
        "computed": summary.computed,
        "skipped": summary.skipped,
        "frames_computed": summary.frames,
        "model_frames": summary.model_frames,
        "forward_passes": summary.forward_passes,
    }


def gather_outputs(
    records: Sequence[str | Path],
    outputs: Sequence[OutputSpec],
    root: str | Path,
    videos: Sequence[str],
    manifest: str | Path,
) -> dict[str, Any]:
    """Check that the ``n`` shard records cover ``videos`` and every output holds every frame; write ``manifest``.

    Raises:
        FileNotFoundError / ValueError naming the record, shard, output or video that is missing or
        inconsistent; nothing is written then.
    """
    import json

    from stcl.data.vspw import list_frames

    if not records:
        raise ValueError("records: at least one shard record is needed")
    loaded = []
    for path in map(Path, records):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard record not found (run its shard first)")
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a shard record ({err})") from None
        if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path}: not a {RECORD_FORMAT} record")
        loaded.append((path, rec))
    count = len(loaded)
    shards = sorted(tuple(rec["shard"]) for _, rec in loaded)
    if shards != [(i, count) for i in range(count)]:
        raise ValueError(f"records: expected shards 0..{count - 1} of {count}, got {shards}")
    covered = sorted(v for _, rec in loaded for v in rec["videos"])
    if covered != sorted(videos):
        lost = sorted(set(videos) - set(covered))
        raise ValueError(f"records: shards do not cover the split exactly (missing {lost[:5]}, {len(covered)} listed)")
    for o in outputs:
        for v in videos:
            if not video_complete(o.out / v, list_frames(root, v), o.suffixes):
                raise ValueError(f"{o.out / v}: output {o.name!r} is incomplete for video {v} (rerun its shard)")
    frames = sum(len(list_frames(root, v)) for v in videos)
    result = {
        "format": "stcl-infer-manifest/1",
        "videos": len(videos),
        "frames": frames,
        "outputs": {o.name: str(o.out) for o in outputs},
        "model_frames": sum(rec["model_frames"] for _, rec in loaded),
        "forward_passes": sum(rec["forward_passes"] for _, rec in loaded),
    }
    write_json(manifest, result)
    return result


def run_command(args: Any) -> int:
    """`stcl infer` with ``--checkpoint``/``--output`` (one pass, optional shard) or ``--gather``."""
    import sys

    from stcl.data.vspw import read_split
    from stcl.infer.pseudo_labels import parse_shard, shard_videos
    from stcl.infer.sliding import Window
    from stcl.params import load_params

    params = load_params(args.params)
    root = args.root or params.data.vspw_root
    if args.checkpoints or args.out or args.weights:
        raise ValueError("stcl infer: --checkpoints/--out/--weights do not combine with --checkpoint/--output/--gather")
    if not args.output:
        raise ValueError("stcl infer: give at least one --output NAME=MEMBERS[:WEIGHTS]=DIR")
    outputs = [parse_output_arg(text, args.save_probs) for text in args.output]
    videos = read_split(root, args.split)
    if args.gather:
        if not args.record or not args.manifest:
            raise ValueError("stcl infer --gather: give --record (every shard's record) and --manifest")
        result = gather_outputs(args.record, outputs, root, videos, args.manifest)
        print(f"stcl infer: gathered {len(args.record)} shard(s), {result['frames']} frames -> {args.manifest}")
        return 0
    if args.record is not None and len(args.record) != 1:
        raise ValueError("stcl infer: --record takes one path when running a shard")
    index, count = parse_shard(args.shard) if args.shard else (0, 1)
    mine = shard_videos(videos, index, count)
    named = dict(parse_checkpoint_arg(text) for text in args.checkpoint)
    if len(named) != len(args.checkpoint):
        raise ValueError("stcl infer: each --checkpoint NAME must be given once")
    _check_outputs(named, outputs)
    used = {m for o in outputs for m in o.members}
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = load_predictors(
        {n: p for n, p in named.items() if n in used}, device, inference_amp(params.infer.amp, device)
    )
    tta = TTA(
        scales=params.infer.scales,
        flip=params.infer.flip,
        window=Window(params.infer.crop_size, params.infer.stride),
        batch_size=params.infer.batch_size,
    )
    summary = predict_outputs(
        models, outputs, tta, root, mine, device=device, workers=params.infer.workers, progress=sys.stderr.isatty()
    )
    if args.record:
        write_json(args.record[0], shard_record(summary, outputs, args.split, index, count, mine))
    print(
        f"stcl infer: shard {index}/{count}: {len(summary.computed)} videos ({summary.frames} frames, "
        f"{summary.forward_passes} model x view passes) -> {', '.join(o.name for o in outputs)}; "
        f"{len(summary.skipped)} already complete"
    )
    return 0
