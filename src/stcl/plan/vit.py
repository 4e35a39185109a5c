"""ViT encoders (DINOv2 / DINOv3) in the planner: gradient checkpointing counted on the meta device.

`stcl.plan.memory` scales activations by ``CHECKPOINT_FACTOR``, a ratio measured on Swin-L. A ViT
checkpoints each of its L blocks whole, so its ratio is far smaller and depends on the size: what stays for
backward is each block's input, B·T·(N + prefix)·C floats, plus the neck, decoder and heads. For these
encoders the planner therefore counts instead of scaling:

* **activations** = the tensors saved for backward by the training step run with checkpointing on
  (`stcl.plan.work`'s meta-device count), plus one block's own activations, recomputed in backward one
  block at a time: (A_off − A_on) / L, with A_off the count without checkpointing. The meta device runs
  attention by the math path, which saves the (N+prefix)² attention probabilities per head; on a GPU
  flash / memory-efficient attention keeps O(N) instead, so this is an upper bound;
* **FLOPs** = the step with checkpointing on, which includes the blocks' recomputed forward (~ +1/3 of
  the encoder's forward + backward).

bf16 still applies ``AMP_FACTOR`` to the result (as for every encoder). The STCL terms use the ViT's own
feature stride (`projection_stride`).
"""

from __future__ import annotations

__all__ = ["is_vit", "vit_checkpointed", "projection_stride"]


def is_vit(backbone: str) -> int:
    """Blocks of ``backbone`` if it is a DINO ViT (checkpointed block by block), else 0."""
    from stcl.models.dino import DINO_SPECS

    spec = DINO_SPECS.get(backbone)
    return spec.depth if spec is not None else 0


def vit_checkpointed(off_bytes: int, on_flops: int, on_bytes: int, depth: int) -> tuple[int, int]:
    """(FLOPs, activation bytes) of a checkpointed ViT step from the counts with checkpointing off / on."""
    return on_flops, on_bytes + max(off_bytes - on_bytes, 0) // depth


def projection_stride(backbone: str, projection_input: str) -> float:
    """Stride of the STCL features: 4 (``fpn_bottleneck``) or 32 (``backbone_last``); a ViT with patch p:
    p/4 or 2p (3.5 or 28 for patch 14, so a 768 crop has 219² STCL pixels, not 192²)."""
    from stcl.models.dino import DINO_SPECS

    spec = DINO_SPECS.get(backbone)
    first, last = (spec.patch / 4, 2 * spec.patch) if spec is not None else (4, 32)
    return first if projection_input == "fpn_bottleneck" else last
