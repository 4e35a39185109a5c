"""The encoder interface every backbone implements (timm CNNs, Swin, CSWin): four feature maps at strides
4, 8, 16 and 32, the parameter names AdamW must not decay, and strict loading of a weights file.

Its own module so that backbone modules (`stcl.models.cswin`) and the name→factory table
(`stcl.models.encoders`) both import it without importing each other.
"""

from __future__ import annotations

from torch import nn

from stcl.models.loading import LoadReport

__all__ = ["Encoder"]


class Encoder(nn.Module):
    """Base class: ``forward(x (B,3,H,W)) -> [f1 (B,C1,H/4,W/4), f2 (…/8), f3 (…/16), f4 (…/32)]``.

    Subclasses set ``out_channels`` (four ints) and ``strides`` (4, 8, 16, 32).
    """

    out_channels: tuple[int, ...]
    strides: tuple[int, ...] = (4, 8, 16, 32)

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to this module) that AdamW should not decay."""
        return set()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute blocks in backward instead of storing their activations (memory for compute)."""
        raise NotImplementedError(f"{type(self).__name__} does not support gradient checkpointing")

    def load_pretrained(self, obj: dict, source: str, *, exclude: tuple[str, ...] = ()) -> LoadReport:
        """Load an already-read weights file (any supported format) strictly; see `stcl.models.loading`."""
        from stcl.models.files import detect_format
        from stcl.models.loading import encoder_state, strict_load

        wf = detect_format(obj, source)
        state, absent_ok, hint = encoder_state(wf, self)
        absent = tuple(f"backbone.{a}" for a in absent_ok)
        return strict_load(
            self, state, source, exclude=exclude, absent_ok=absent, prefix="backbone.", fmt=wf.format, hint=hint
        )
