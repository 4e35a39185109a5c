"""Strict loading of weights files into encoders and segmentors, whatever public format they are in.

Every key of the model must come from the file and every tensor of the file must land in the model with
its exact shape; anything else is a ValueError naming the file and the keys. Two kinds of key may stay
at their fresh initialisation without an error:

* keys the file's format cannot hold: the decode/auxiliary heads and the STCL ``projection`` when the
  file is an ImageNet backbone; the per-stage output LayerNorms that mmseg adds to Swin/CSWin
  (``backbone.norm0``…) when the file is a classification release; ``projection`` in an mmseg file; and,
  in a model file of this project, the classifiers (``conv_seg``) when its recorded class count differs
  and ``projection`` when its recorded projection dim differs (COCO-pre → VSPW);
* keys matching a pattern the user lists in ``model.load_exclude`` (fnmatch patterns over our parameter
  names, e.g. ``decode_head.conv_seg.*`` to fine-tune a 150-class mmseg model to 124 classes).

The returned `LoadReport` lists what was left out; a segmentor remembers it in ``loaded_from`` (written
into its model file by `stcl.models.checkpoints.save_model`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stcl.models.files import WeightsFile, open_weights

__all__ = ["LoadReport", "strict_load", "encoder_state", "load_encoder_weights", "load_segmentor_weights"]

log = logging.getLogger(__name__)

_HEADS = ("decode_head.*", "auxiliary_head.*", "projection.*")
_EXCLUDE_ADVICE = " List the parts to leave out in model.load_exclude (e.g. 'decode_head.conv_seg.*')"


@dataclass
class LoadReport:
    """What a strict load did: tensors loaded, and the keys left out (all allowed, else it would have raised)."""

    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    format: str = ""
    dropped: dict[str, str] = field(default_factory=dict)  # file keys left out on purpose → why

    def __str__(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", … (+{len(keys) - 8})" if len(keys) > 8 else "")

        fmt = f" ({self.format})" if self.format else ""
        parts = [f"{self.source}{fmt}: loaded {self.loaded} tensors"]
        for name, label in (("missing", "left at init"), ("unexpected", "not used"), ("mismatched", "left out")):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{len(keys)} {label} [{few(keys)}]")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped [{few([f'{k}: {v}' for k, v in self.dropped.items()])}]")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "loaded": self.loaded,
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": list(self.mismatched),
            "dropped": dict(self.dropped),
        }


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _few(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")


def strict_load(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    *,
    exclude: Iterable[str] = (),
    absent_ok: Iterable[str] = (),
    prefix: str = "",
    fmt: str = "",
    hint: str = "",
    dry_run: bool = False,
    dropped: Mapping[str, str] | None = None,
    target: str = "the configured model",
    advice: str = _EXCLUDE_ADVICE,
) -> LoadReport:
    """Load ``state`` into ``module``; raise ValueError on any key not accounted for: one line naming
    ``source`` (the file), ``target`` and the missing / unexpected / mis-shaped keys, then ``advice``.

    The one strict loader of the project: encoders and segmentors (below), ``stcl weights``, RAFT
    (`stcl.flow.raft.load_raft`).

    Args:
        exclude: user patterns (over ``prefix`` + key): such keys are neither loaded nor required.
        absent_ok: patterns of module keys the file's format cannot hold (they keep their initialisation).
        prefix: prepended to keys before matching patterns (``backbone.`` for an encoder).
        hint: appended to the error (e.g. the window size found in the file).
        dry_run: check only (``module`` may live on the meta device); nothing is loaded.
        dropped: file keys a format mapping left out on purpose, with the reason (reported, not checked).
    """
    exclude, absent_ok = tuple(exclude), tuple(absent_ok)
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    left = lambda k: _matches(prefix + k, exclude)  # noqa: E731
    bad_missing = [k for k in missing if not left(k) and not _matches(prefix + k, absent_ok)]
    bad_unexpected = [k for k in unexpected if not left(k)]
    bad_shape = [k for k in mismatched if not left(k)]
    if bad_missing or bad_unexpected or bad_shape:
        parts = []
        if bad_missing:
            parts.append(f"{len(bad_missing)} missing [{_few([prefix + k for k in bad_missing])}]")
        if bad_unexpected:
            parts.append(f"{len(bad_unexpected)} unexpected [{_few(bad_unexpected)}]")
        if bad_shape:
            shapes = [f"{prefix}{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}" for k in bad_shape]
            parts.append(f"{len(bad_shape)} mis-shaped [{_few(shapes, 3)}]")
        raise ValueError(f"{source}: does not fit {target} ({fmt or 'weights'}): {'; '.join(parts)}{hint}.{advice}")
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not left(k)}
    if not dry_run:
        module.load_state_dict(usable, strict=False)
    report = LoadReport(
        source=source,
        loaded=len(usable),
        missing=[prefix + k for k in missing],
        unexpected=unexpected,
        mismatched=[prefix + k for k in mismatched],
        format=fmt,
        dropped=dict(dropped or {}),
    )
    log.info("weights: %s", report)
    return report


def encoder_state(wf: WeightsFile, encoder: nn.Module) -> tuple[dict[str, torch.Tensor], tuple[str, ...], str]:
    """The backbone part of ``wf`` in ``encoder``'s key layout, the keys it may lack, and an error hint.

    The family check and the ``backbone.`` prefix are handled here; the key mapping belongs to the encoder
    family (``Encoder.weights_state``, beside each family's model code), so this module imports none of them.
    A mapping that meets a tensor of a shape its layout never has (a damaged or hand-edited file) fails here in
    one line naming the file, whatever the family.
    """
    family = encoder.family
    if wf.backbone is not None and wf.backbone != family:
        raise ValueError(
            f"{wf.path}: holds a {wf.backbone} backbone ({wf.format}); the configured model.backbone is a "
            f"{family} ({type(encoder).__name__})"
        )
    if wf.format in ("mmseg", "stcl-model", "cswin-official") and any(k.startswith("backbone.") for k in wf.state):
        state = {k[len("backbone.") :]: v for k, v in wf.state.items() if k.startswith("backbone.")}
    else:
        state = dict(wf.state)
    try:
        return encoder.weights_state(state, wf)
    except (IndexError, KeyError, RuntimeError, TypeError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise ValueError(
            f"{wf.path}: a {wf.format} file with tensors of shapes its layout never has ({type(err).__name__}: {first})"
        ) from None


def load_encoder_weights(
    encoder: nn.Module, path: str | Path | WeightsFile, *, exclude: Iterable[str] = (), dry_run: bool = False
) -> LoadReport:
    """Load the backbone weights of any supported file into ``encoder`` strictly (see module doc); ``dry_run``
    checks only (``encoder`` may live on the meta device)."""
    wf = path if isinstance(path, WeightsFile) else open_weights(path, "pretrained weights file")
    state, absent_ok, hint = encoder_state(wf, encoder)
    return strict_load(
        encoder,
        state,
        str(wf.path),
        exclude=exclude,
        absent_ok=tuple(f"backbone.{a}" for a in absent_ok),
        prefix="backbone.",
        fmt=wf.format,
        hint=hint,
        dry_run=dry_run,
        dropped=wf.dropped,
    )


def load_segmentor_weights(
    segmentor: nn.Module,
    path: str | Path | WeightsFile,
    *,
    exclude: Iterable[str] = (),
    what: str = "weights file",
    dry_run: bool = False,
) -> LoadReport:
    """Load a whole-model file (mmseg or ours) or a backbone file into ``segmentor`` strictly.

    A model file of this project whose recorded ``num_classes`` / ``proj_dim`` differ from the segmentor's
    leaves its classifiers / projection out (reported); every other difference is an error. ``dry_run``
    checks without loading (the segmentor may be on the meta device) and records nothing.
    """
    wf = path if isinstance(path, WeightsFile) else open_weights(path, what)
    target = segmentor.module if hasattr(segmentor, "module") else segmentor
    state, absent_ok, hint = encoder_state(wf, target.backbone)
    full = {f"backbone.{k}": v for k, v in state.items()}
    absent = tuple(f"backbone.{p}" for p in absent_ok)
    if wf.heads:
        full |= {k: v for k, v in wf.state.items() if not k.startswith("backbone.")}
        if wf.format == "stcl-model":
            auto = []
            if wf.meta.get("num_classes") != target.num_classes:
                auto += ["decode_head.conv_seg.*", "auxiliary_head.conv_seg.*"]
            own_proj = None if target.projection is None else target.projection.fc.out_channels
            if wf.meta.get("proj_dim") != own_proj:
                auto.append("projection.*")
            exclude = tuple(exclude) + tuple(auto)  # explained by the file's recorded label space / dim
        else:
            absent += ("projection.*",)
    else:
        absent += _HEADS
    report = strict_load(
        target,
        full,
        str(wf.path),
        exclude=exclude,
        absent_ok=absent,
        fmt=wf.format,
        hint=hint,
        dry_run=dry_run,
        dropped=wf.dropped,
    )
    if dry_run:
        return report
    history = list(getattr(target, "loaded_from", []))
    target.loaded_from = history + [report.as_dict()]
    return report
