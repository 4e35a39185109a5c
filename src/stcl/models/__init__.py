"""Models: timm encoders (+ our CSWin), mmseg-compatible UperNet and heads, the segmentor, model files."""

from stcl.models.checkpoints import (
    convert_mmseg_checkpoint,
    load_init_weights,
    load_model,
    read_model_file,
    save_model,
)
from stcl.models.encoders import ENCODERS, LoadReport, build_encoder, encoder_names
from stcl.models.segmentor import Segmentor, SegmentorOutput, build_segmentor

__all__ = [
    "ENCODERS",
    "LoadReport",
    "Segmentor",
    "SegmentorOutput",
    "build_encoder",
    "build_segmentor",
    "convert_mmseg_checkpoint",
    "encoder_names",
    "load_init_weights",
    "load_model",
    "read_model_file",
    "save_model",
]
