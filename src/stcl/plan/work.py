"""Work of one model pass, counted on the meta device (no memory, no data): FLOPs, parameters, activations.

* Inference: `predict_frame_flops` runs the real TTA code (`stcl.infer.multiscale.tta_probs`: every scale,
  flip and sliding window, windows of ``min(crop, size)`` as mmseg cuts them) through the real model's
  ``predict`` on a meta frame under
  ``torch.utils.flop_counter.FlopCounterMode``. FlopCounterMode counts matmuls and convolutions (2 FLOPs per
  multiply-add); elementwise work, softmax and resizing are not counted (they are a few percent).
* Training: `train_step_work` runs ``model(images)`` of one micro-batch (``batch_per_device`` clips of T
  frames at the crop size; T frames through the encoder and decoder when STCL is on, the query only
  otherwise) and a backward on the meta device, counting forward + backward FLOPs. The STCL similarity
  blocks are data dependent (valid anchors per class), so they are added in closed form for the worst case
  (every pixel valid): with N = query pixels at feature stride, K = T·N keys and D the projection dim, the
  chunked loss does 2·N·K·D in forward, the same again when the checkpointed block is recomputed, and
  4·N·K·D in backward: 8·N·K·D per clip.
* Activations: every tensor autograd saves for backward during that forward is recorded with a
  ``torch.autograd.graph.saved_tensors_hooks`` pack hook; distinct storages are summed (views share
  one). This is the float32 activation memory of one micro-batch without checkpointing, at any size, since
  meta tensors hold no data. `stcl.plan.memory` turns it into a peak per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from stcl.infer.multiscale import TTA, tta_probs
from stcl.params import ModelParams, Params, TrainStageParams
from stcl.plan.vit import is_vit, projection_stride, vit_checkpointed

__all__ = [
    "BN_MIN_SAMPLES",
    "TrainWork",
    "decoder_batchnorm_samples",
    "predict_frame_flops",
    "train_step_work",
    "stcl_flops",
]

# UperNet's pyramid pooling pools to 1×1, where BatchNorm in train mode refuses a batch of one sample.
BN_MIN_SAMPLES = 2

NUM_CLASSES = 124


def _meta_model(model: ModelParams, proj_dim: int | None, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    from stcl.models.segmentor import build_segmentor

    return build_segmentor(model, num_classes, proj_dim, device="meta", load_pretrained=False)


def predict_frame_flops(model: ModelParams, tta: TTA, height: int, width: int) -> int:
    """FLOPs of one (height, width) frame through one model's full TTA (all views and windows)."""
    return _predict_frame_flops(model, tta, height, width)


@lru_cache(maxsize=32)
def _predict_frame_flops(model: ModelParams, tta: TTA, height: int, width: int) -> int:
    net = _meta_model(model, None).eval()
    image = torch.zeros((1, 3, height, width), device="meta")
    with FlopCounterMode(display=False) as counter:
        tta_probs(net.predict, image, tta)
    return int(counter.get_total_flops())


def stcl_flops(batch: int, frames: int, crop: tuple[int, int], dim: int, stride: float, max_anchors: int | None) -> int:
    """Closed-form FLOPs of the chunked STCL loss (forward, recompute and backward) for ``batch`` clips."""
    n = int(crop[0] // stride) * int(crop[1] // stride)
    anchors = min(n, max_anchors) if max_anchors else n
    return 8 * batch * anchors * frames * n * dim


@dataclass(frozen=True)
class TrainWork:
    """One micro-batch of a training stage on one GPU: FLOPs (forward + backward) and float32 activations."""

    flops: int  # model forward + backward + STCL, per micro-batch
    activation_bytes: int  # saved for backward, float32, no checkpointing
    parameters: int
    frames: int  # frames per clip through the encoder (T with STCL, else 1)
    # float32 activations with model.grad_checkpointing when counted rather than scaled (ViTs: stcl.plan.vit)
    checkpointed_bytes: int | None = None


def decoder_batchnorm_samples(params: Params, work: TrainWork, batch_per_device: int) -> int:
    """Samples per GPU in the decoder's BatchNorm: the query frames, or every frame of the clip with
    ``projection_input: fpn_bottleneck`` (the decoder then runs on all frames, `stcl.models.segmentor`)."""
    return batch_per_device * (work.frames if params.model.projection_input == "fpn_bottleneck" else 1)


def train_step_work(params: Params, stage: TrainStageParams) -> TrainWork:
    """FLOPs and activation bytes of one micro-batch (``stage.batch_per_device`` clips) of ``stage``.

    One clip per device is counted as half of two: BatchNorm in train mode refuses a batch of one sample
    after the pyramid pooling's 1×1 pool, which SyncBatchNorm over several GPUs trains with (weights saved
    for backward are halved too, a small undercount).
    """
    model = params.model.model_copy(update={"grad_checkpointing": False, "sync_bn": False})
    counted = max(stage.batch_per_device, 2)
    args = (
        stage.stcl.enabled,
        stage.stcl.dim,
        stage.stcl.max_anchors,
        1 + len(params.clips.reference_offsets),
        counted,
        tuple(params.augment.crop_size),
    )
    work = _train_step_work(model, *args)
    depth = is_vit(model.backbone)
    if params.model.grad_checkpointing and depth:
        on = _train_step_work(model.model_copy(update={"grad_checkpointing": True}), *args)
        flops, acts = vit_checkpointed(work.activation_bytes, on.flops, on.activation_bytes, depth)
        work = TrainWork(flops, work.activation_bytes, work.parameters, work.frames, checkpointed_bytes=acts)
    if counted == stage.batch_per_device:
        return work
    scale = stage.batch_per_device / counted
    checkpointed = None if work.checkpointed_bytes is None else int(work.checkpointed_bytes * scale)
    return TrainWork(
        int(work.flops * scale), int(work.activation_bytes * scale), work.parameters, work.frames, checkpointed
    )


@lru_cache(maxsize=32)
def _train_step_work(
    model: ModelParams,
    stcl: bool,
    dim: int,
    max_anchors: int | None,
    clip_frames: int,
    batch: int,
    crop: tuple[int, int],
) -> TrainWork:
    net = _meta_model(model, dim if stcl else None).train()
    frames = clip_frames if stcl else 1
    images = torch.zeros((batch, clip_frames, 3, *crop), device="meta")
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage._cdata] = storage.nbytes()
        return t

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(images)
        loss = out.logits.float().mean() + out.aux_logits.float().mean()
        if out.proj is not None:
            loss = loss + out.proj.float().mean()
        loss.backward()
    flops = int(counter.get_total_flops())
    if stcl:
        stride = projection_stride(model.backbone, model.projection_input)
        flops += stcl_flops(batch, frames, crop, dim, stride, max_anchors)
    params = sum(p.numel() for p in net.parameters())
    return TrainWork(flops, sum(storages.values()), params, frames)

