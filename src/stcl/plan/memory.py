"""Peak memory per GPU of a training job: model, gradients, optimizer state, activations.

Method (bytes, P = parameters, A = float32 activations of one micro-batch saved for backward, counted on
the meta device by `stcl.plan.work.train_step_work`)::

    static      = P·4 (float32 weights) + P·4 (gradients) + P·s (optimizer: AdamW m and v s = 8, SGD
                  momentum s = 4) + P·2 with bf16/fp16 autocast (its cache of half-precision weights)
                  + P·4 under DDP (gradient buckets, a second copy of the gradients)
    activations = A · f_amp · f_ckpt
    loss        = 10 bytes · B·C·H·W per head, 2 heads (decode + aux logits upsampled to the crop: bf16
                  logits, float32 log-softmax kept for backward, its float32 gradient)
                  + 3 · 4 bytes · chunk_size · K with STCL (one float32 (chunk, K) similarity block, its
                  logsumexp/softplus temporaries and its gradient; K = T·N keys, N = query pixels at
                  stride 32 (``projection_input: backbone_last``), or 4 with ``fpn_bottleneck``)
    peak        = static + (activations + loss) · (1 + FRAGMENTATION) + CONTEXT

``f_amp`` (bf16/fp16 autocast) and ``f_ckpt`` (``model.grad_checkpointing``: encoder blocks keep only
their inputs and are recomputed in backward; for ViT encoders the checkpointed activations are counted
instead, `stcl.plan.vit`) are the ratios of measured CPU peak step memory with and
without the lever, from benchmarks/memory_levers.py at reduced sizes (its output is in
docs/paper_scale.md); ``CONTEXT`` is the CUDA context and cuDNN/cuBLAS workspaces, ``FRAGMENTATION``
the caching allocator's slack. The method is checked against a measured CPU step at two sizes by
benchmarks/memory_levers.py --check (and in tests at tiny sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

from stcl.params import Params, TrainStageParams
from stcl.plan.vit import projection_stride
from stcl.plan.work import TrainWork, train_step_work

__all__ = ["AMP_FACTOR", "CHECKPOINT_FACTOR", "CONTEXT_BYTES", "FRAGMENTATION", "MemoryEstimate", "train_memory"]

# Activation ratios measured on CPU (benchmarks/memory_levers.py; see docs/paper_scale.md): grad
# checkpointing on the paper model (Swin-L, 64²); bf16 on swin_mini at 64²/96² only (the Swin-L bf16 CPU step
# did not finish on a shared 2-core machine): a conservative stand-in until gpu_check.py's peak confirms it.
AMP_FACTOR = {"off": 1.0, "bf16": 0.79, "fp16": 0.79}
CHECKPOINT_FACTOR = 0.51
CONTEXT_BYTES = 1 * 1024**3
FRAGMENTATION = 0.10


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes per GPU of one training job, by part."""

    weights: int
    gradients: int
    optimizer: int
    amp_cache: int
    ddp_buckets: int
    activations: int
    loss: int
    overhead: int

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.amp_cache
            + self.ddp_buckets
            + self.activations
            + self.loss
            + self.overhead
        )


def train_memory(params: Params, stage: TrainStageParams, gpus: int, work: TrainWork | None = None) -> MemoryEstimate:
    """Peak memory per GPU of ``stage`` trained on ``gpus`` GPUs (DDP when > 1) at ``params``."""
    work = work or train_step_work(params, stage)
    p = work.parameters
    opt = 8 if stage.optimizer.name == "adamw" else 4
    acts = work.activation_bytes * AMP_FACTOR[stage.amp]
    if params.model.grad_checkpointing:  # ViTs: counted (stcl.plan.vit); other encoders: the measured ratio
        ckpt = work.checkpointed_bytes
        acts = ckpt * AMP_FACTOR[stage.amp] if ckpt is not None else acts * CHECKPOINT_FACTOR
    crop_h, crop_w = params.augment.crop_size
    loss = 2 * 10 * stage.batch_per_device * 124 * crop_h * crop_w
    if stage.stcl.enabled:
        stride = projection_stride(params.model.backbone, params.model.projection_input)
        n = int(crop_h // stride) * int(crop_w // stride)
        loss += 3 * 4 * min(stage.stcl.chunk_size, n) * work.frames * n
    return MemoryEstimate(
        weights=4 * p,
        gradients=4 * p,
        optimizer=opt * p,
        amp_cache=2 * p if stage.amp != "off" else 0,
        ddp_buckets=4 * p if gpus > 1 else 0,
        activations=int(acts),
        loss=loss,
        overhead=int((acts + loss) * FRAGMENTATION) + CONTEXT_BYTES,
    )
