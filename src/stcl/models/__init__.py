"""Models: timm encoders (+ our CSWin), mmseg-compatible UperNet and heads, the segmentor, model files.

Modules: `encoder_base` (the interface), `encoders` (the backbone table, Swin computed as the official Swin),
`cswin`, `dino` (DINOv2/v3 ViT + neck), `upernet`, `heads`, `segmentor`; weights: `files` (safe reading, format
detection), `convert` (key layouts: official Swin, timm, mmseg), `dino_files` (DINO layouts), each family's
``Encoder.weights_state``, `loading` (strict loading, ``model.load_exclude``; imports no encoder),
`checkpoints` (this project's model files).
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
