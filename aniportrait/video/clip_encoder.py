"""CLIP image encoder of the reference portrait (docs/pipeline.md#clip-image-encoder): one projected embedding used as
cross-attention context.

Model: transformers ``CLIPVisionModelWithProjection`` (lambdalabs' ``image_encoder`` folder: ViT-L/14, projection
768). Preprocessing as the original: PIL bicubic squash of the source image to 224×224 (no aspect-preserving
crop), then what ``CLIPImageProcessor()`` with its constructor defaults does to a 224×224 image: ×1/255 in float64
cast to float32, then float32 mean/std normalisation.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import build_uninitialised, device_and_dtype, load_weights, read_state_dict
from ..data import check_rgb_image
from ..files import with_safetensors_variant

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# architecture of lambdalabs/sd-image-variations-diffusers' image_encoder (ViT-L/14, projection 768), for building
# the full-size model without its files (manifest checks, benchmarks)
IMAGE_ENCODER_CONFIG = {"hidden_act": "quick_gelu", "hidden_size": 1024, "image_size": 224, "intermediate_size": 4096,
                        "layer_norm_eps": 1e-05, "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24,
                        "patch_size": 14, "projection_dim": 768}
# transformers 4.30.2 saved this index buffer with the weights; newer versions rebuild it and do not store it
_POSITION_IDS = "vision_model.embeddings.position_ids"


def clip_pixel_values(image: np.ndarray) -> torch.Tensor:
    """(1, 3, 224, 224) float32 CLIP input from an RGB uint8 (H, W, 3) image at its source resolution."""
    check_rgb_image(image, "the reference image")
    squashed = Image.fromarray(image).resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC)
    scaled = (np.asarray(squashed) * (1 / 255)).astype(np.float32)
    normalised = (scaled - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]


def load_image_encoder(folder: Path | str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """CLIPVisionModelWithProjection from a folder holding config.json and pytorch_model.bin / model.safetensors."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    config_path = folder / "config.json"
    weights_path = with_safetensors_variant(folder / "pytorch_model.bin")
    if not config_path.is_file() or weights_path is None:
        raise FileNotFoundError(f"{folder} is not a CLIP image encoder folder: it needs config.json and "
                                "pytorch_model.bin (or model.safetensors), as in "
                                "lambdalabs/sd-image-variations-diffusers/image_encoder.")
    config = CLIPVisionConfig.from_dict(json.loads(config_path.read_text()))
    # 4.30.2 (the original's version) has only the eager attention
    config._attn_implementation = "eager"
    model = build_uninitialised(lambda: CLIPVisionModelWithProjection(config))
    load_weights(model, read_state_dict(weights_path), weights_path, "a CLIPVisionModelWithProjection checkpoint",
                 may_be_extra=lambda key: key == _POSITION_IDS)
    embeddings = model.vision_model.embeddings
    embeddings.position_ids = torch.arange(embeddings.num_positions).expand((1, -1))
    return model.to(dtype).eval().requires_grad_(False)


@torch.no_grad()
def encode_image(image_encoder: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    """(1, D) projected, not normalised, CLIP embedding of an RGB uint8 image (on the encoder's device/dtype)."""
    device, dtype = device_and_dtype(image_encoder)
    pixels = clip_pixel_values(image).to(device=device, dtype=dtype)
    return image_encoder(pixel_values=pixels).image_embeds
