"""Models: timm encoders (+ our CSWin), mmseg-compatible UperNet and heads, the segmentor, model files.

Modules: `encoder_base` (the interface), `encoders` (`build_encoder` from the family table `stcl.families`),
one module per encoder family that builds it, detects its files and maps their keys (`swin`: Swin computed as
the official Swin; `resnet`: ResNet/ResNeSt; `cswin`; `dino`: DINOv2/v3 ViT + neck, its layouts in
`dino_files`), `upernet`, `heads`, `segmentor`; weights: `files` (safe reading, unwrapping, format
detection), `loading` (the strict loader, ``model.load_exclude``; imports no encoder), `convert` (whole mmseg
checkpoints and back), `checkpoints` (this project's model files).
"""

from stcl.models.checkpoints import load_init_weights, load_model, read_model_file, save_model
from stcl.models.convert import convert_mmseg_checkpoint
from stcl.models.encoders import build_encoder, encoder_names
from stcl.models.files import detect_format, open_weights
from stcl.models.loading import LoadReport, load_segmentor_weights
from stcl.models.segmentor import Segmentor, SegmentorOutput, build_segmentor

__all__ = [
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
