"""sd-vae-ft-mse autoencoder (diffusers ``AutoencoderKL``): reference latent and frame decoding (docs/pipeline.md#vae).

Accepted weight layouts, all loaded strictly into the same diffusers module:
* a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``/``.bin``), attention keys named
  ``to_q/to_k/to_v/to_out.0`` or the pre-0.14 ``query/key/value/proj_attn`` that the hub's sd-vae-ft-mse still uses;
* a single file as ComfyUI users keep it in ``models/vae`` (e.g. ``vae-ft-mse-840000-ema-pruned.safetensors``):
  original LDM key names (``encoder.down.0.block.0...``), or diffusers names. Its architecture is sd-vae-ft-mse's
  (``SD_VAE_FT_MSE_CONFIG``).

The original hard-codes the latent scale 0.18215, encodes with the posterior MEAN and decodes one frame at a time;
decoding several frames per call gives the same numbers up to float rounding (every layer is per image).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..checkpoint import build_uninitialised, device_and_dtype, load_weights, read_state_dict
from ..data import check_rgb_image
from ..files import with_safetensors_variant

LATENT_SCALE = 0.18215  # hard-coded in the original pipeline (not read from the VAE's config)
# pixels per latent: the original derives it from the VAE config (2 ** (levels - 1)); load_vae refuses other VAEs
VAE_SCALE_FACTOR = 8

# config.json of stabilityai/sd-vae-ft-mse (diffusers AutoencoderKL), for single-file checkpoints
SD_VAE_FT_MSE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

DEPRECATED_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LDM_ATTENTION_NAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_LDM_RESNET_NAMES = {"nin_shortcut": "conv_shortcut"}
# keys a full LDM autoencoder checkpoint carries for training only (discriminator / LPIPS)
_TRAINING_ONLY_PREFIX = "loss."
_FULL_MODEL_PREFIX = "first_stage_model."


def _rename_deprecated_attention(key: str) -> str:
    match = re.fullmatch(r"(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)", key)
    return f"{match[1]}.{DEPRECATED_ATTENTION_NAMES[match[2]]}.{match[3]}" if match else key


def _ldm_key_to_diffusers(key: str, num_levels: int) -> str:
    """One original (CompVis LDM) autoencoder key in diffusers naming; decoder levels are numbered in reverse."""
    rules: list[tuple[str, Callable[[re.Match], str]]] = [
        (r"(encoder|decoder)\.mid\.block_(\d)\.(\w+)\.(.+)",
         lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{_LDM_RESNET_NAMES.get(m[3], m[3])}.{m[4]}"),
        (r"(encoder|decoder)\.mid\.attn_1\.(\w+)\.(.+)",
         lambda m: f"{m[1]}.mid_block.attentions.0.{_LDM_ATTENTION_NAMES[m[2]]}.{m[3]}"),
        (r"encoder\.down\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)",
         lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_LDM_RESNET_NAMES.get(m[3], m[3])}.{m[4]}"),
        (r"encoder\.down\.(\d+)\.downsample\.conv\.(.+)",
         lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"),
        (r"decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)",
         lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.resnets.{m[2]}."
                   f"{_LDM_RESNET_NAMES.get(m[3], m[3])}.{m[4]}"),
        (r"decoder\.up\.(\d+)\.upsample\.conv\.(.+)",
         lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"),
        (r"(encoder|decoder)\.norm_out\.(.+)", lambda m: f"{m[1]}.conv_norm_out.{m[2]}"),
    ]
    for pattern, rename in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match)
    return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def is_ldm_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(("encoder.down.", "encoder.mid.")) for key in state_dict)


def to_diffusers_layout(state_dict: dict[str, torch.Tensor], num_levels: int) -> dict[str, torch.Tensor]:
    """Any accepted autoencoder state dict with current diffusers key names (and Linear attention weights)."""
    if any(key.startswith(_FULL_MODEL_PREFIX) for key in state_dict):
        state_dict = {key[len(_FULL_MODEL_PREFIX):]: value for key, value in state_dict.items()
                      if key.startswith(_FULL_MODEL_PREFIX)}
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(_TRAINING_ONLY_PREFIX)}
    if is_ldm_layout(state_dict):
        state_dict = {_ldm_key_to_diffusers(key, num_levels): value for key, value in state_dict.items()}
    converted = {}
    for key, value in state_dict.items():
        key = _rename_deprecated_attention(key)
        if ".attentions." in key and key.endswith("weight") and value.ndim == 4:  # 1x1 conv -> linear
            value = value[:, :, 0, 0]
        converted[key] = value
    return converted


def _weights_and_config(path: Path) -> tuple[Path, dict]:
    if path.is_dir():
        config_path = path / "config.json"
        weights = with_safetensors_variant(path / "diffusion_pytorch_model.bin")
        if not config_path.is_file() or weights is None:
            raise FileNotFoundError(f"{path} is not a diffusers VAE folder: it needs config.json and "
                                    "diffusion_pytorch_model.safetensors (or .bin), as in stabilityai/sd-vae-ft-mse.")
        return weights, json.loads(config_path.read_text())
    if not path.is_file():
        raise FileNotFoundError(f"VAE weights not found: {path}. Pick an existing VAE (a diffusers folder such as "
                                "sd-vae-ft-mse, or a single weights file), or download AniPortrait's models with "
                                "scripts/download_models.py.")
    return path, SD_VAE_FT_MSE_CONFIG


def load_vae(path: Path | str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """diffusers AutoencoderKL from a diffusers folder or a single weights file (see the module docstring)."""
    from diffusers import AutoencoderKL

    weights, config = _weights_and_config(Path(path))
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    levels = len(config.get("block_out_channels", ()))
    if 2 ** (levels - 1) != VAE_SCALE_FACTOR:
        raise ValueError(f"{path}: a VAE with {levels} resolution levels scales by {2 ** (levels - 1)}, AniPortrait's "
                         f"networks work on latents {VAE_SCALE_FACTOR}x smaller than the frames (4 levels, as "
                         "sd-vae-ft-mse). Select sd-vae-ft-mse or another SD1.5 VAE.")
    vae = build_uninitialised(lambda: AutoencoderKL.from_config(config))
    state_dict = to_diffusers_layout(read_state_dict(weights), len(config["block_out_channels"]))
    load_weights(vae, state_dict, weights, "an AutoencoderKL (sd-vae-ft-mse) checkpoint")
    # plain nn.Module.to: diffusers' override warns about float32-only modules, which AutoencoderKL has none of
    return torch.nn.Module.to(vae, dtype).eval().requires_grad_(False)


def vae_pixel_values(image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """(1, 3, H, W) float32 in [-1, 1]: PIL LANCZOS resize to (width, height), /255, *2-1 (VaeImageProcessor)."""
    check_rgb_image(image, "the reference image")
    resized = Image.fromarray(image).resize((width, height), Image.LANCZOS)
    scaled = np.asarray(resized).astype(np.float32) / 255.0
    return 2.0 * torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None] - 1.0


@torch.no_grad()
def encode_latent(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Scaled posterior mean (B, 4, H/8, W/8) of images in [-1, 1]."""
    device, dtype = device_and_dtype(vae)
    return vae.encode(pixels.to(device=device, dtype=dtype)).latent_dist.mean * LATENT_SCALE
