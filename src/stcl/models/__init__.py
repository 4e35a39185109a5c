"""Models: timm encoders (+ our CSWin), mmseg-compatible UperNet and heads, the segmentor, model files.

Modules: `encoders` (the backbone table, Swin computed as the official Swin), `cswin`, `upernet`, `heads`,
`segmentor`; weights: `files` (safe reading, format detection), `convert` (key layouts: official Swin, timm,
mmseg, CSWin), `loading` (strict loading, ``model.load_exclude``), `checkpoints` (this project's model files).
"""

from stcl.models.checkpoints import (
    convert_mmseg_checkpoint,
    load_init_weights,
    load_model,
    read_model_file,
    save_model,
)
from stcl.models.encoders import ENCODERS, build_encoder, encoder_names
from stcl.models.files import detect_format, open_weights
from stcl.models.loading import LoadReport, load_segmentor_weights
from stcl.models.segmentor import Segmentor, SegmentorOutput, build_segmentor

__all__ = [
    "ENCODERS",
    "LoadReport",
    "Segmentor",
    "SegmentorOutput",
    "build_encoder",
    "build_segmentor",
    "convert_mmseg_checkpoint",
    "detect_format",
    "open_weights",
    "load_segmentor_weights",
    "encoder_names",
    "load_init_weights",
    "load_model",
    "read_model_file",
    "save_model",
]
