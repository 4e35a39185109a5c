"""Regenerate tests/data/dinov3_tiny_hf.safetensors and dinov3_hf_reference.pt with Hugging Face transformers.

    pip install --target /tmp/hf --no-deps transformers==5.25.0 tokenizers regex   # not a project dependency
    PYTHONPATH=/tmp/hf .venv/bin/python tests/data/make_dino_hf_reference.py

transformers' own ``DINOv3ViTModel`` (the layout of ``facebook/dinov3-vitl16-pretrain-lvd1689m`` on the hub:
``embeddings.*``, ``layer.N.attention.{q,k,v,o}_proj``, ``layer_scale{1,2}.lambda1``, ``mlp.{up,down}_proj``)
is built at the reduced size of `stcl.models.dino.DINO_SPECS["dinov3_tiny"]` (width 32, 4 layers, 2 heads,
4 registers, RoPE θ 100, LayerNorm eps 1e-5; the ViT-L release's config otherwise), its parameters get the
seeded values of make_dino_reference.py's `seeded_state` (over its own key names), and ``save_pretrained``
writes the weights file; the reference holds the final-norm patch tokens of each layer
(``norm(hidden_states[i + 1])`` without the class and register tokens) at 128² and 160×240.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import torch

DATA = Path(__file__).parent
SIZES = {"pretrain": (128, 128), "small": (160, 240)}


def main() -> None:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    spec = importlib.util.spec_from_file_location("make_dino_reference", DATA / "make_dino_reference.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    config = DINOv3ViTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128, patch_size=16,
        image_size=128, num_register_tokens=4, rope_theta=100.0, layer_norm_eps=1e-5,
    )
    model = DINOv3ViTModel(config).eval()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(maker.seeded_state(shapes), strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(Path(tmp) / "model.safetensors", DATA / "dinov3_tiny_hf.safetensors")
    outputs = {}
    prefix = 1 + config.num_register_tokens
    with torch.no_grad():
        for i, (label, (h, w)) in enumerate(SIZES.items()):
            hidden = model(maker.seeded_input((h, w), i), output_hidden_states=True).hidden_states
            assert len(hidden) == config.num_hidden_layers + 1
            outputs[label] = [
                model.norm(x)[:, prefix:].reshape(1, h // 16, w // 16, -1).permute(0, 3, 1, 2).contiguous()
                for x in hidden[1:]
            ]
    torch.save(
        {"origin": "huggingface/transformers 5.25.0 models/dinov3_vit/modeling_dinov3_vit.py", "sizes": SIZES,
         "outputs": outputs},
        DATA / "dinov3_hf_reference.pt",
    )
    print({k: [tuple(o.shape) for o in v] for k, v in outputs.items()})


if __name__ == "__main__":
    main()
