"""Builders and strict checkpoint loaders of the Lmk2Video networks.

Builders make the module on torch's current default device (``with torch.device("meta")`` gives a shape-only
model). Loaders build through ``build_uninitialised``, so no time goes into random initialisation; the strict key
checks guarantee every tensor is then overwritten from the files.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointMismatchError, build_uninitialised, load_weights, read_state_dict
from .config import PoseGuiderConfig, UNet3DConfig
from .pose_guider import PoseGuider
from .reference_unet import ReferenceUNet
from .unet3d import UNet3DConditionModel
from .unet_blocks import unet_config_from_dict

# Keys of the SD1.5 UNet's output layers: a full SD1.5-style UNet file carries them, AniPortrait's reference
# UNet class has no such layers (its output is never used), so they are accepted and ignored.
_SD15_OUTPUT_LAYER_PREFIXES = ("conv_norm_out.", "conv_out.")


def is_motion_module_key(key: str) -> bool:
    """Keys that motion_module.pth holds (the original's stage-2 save filter)."""
    return "motion_module" in key


def read_unet_config(path: Path | str) -> dict:
    """SD1.5's ``unet/config.json`` as a dict, checked to describe a UNet these models implement."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"UNet config {path} not found: AniPortrait needs Stable Diffusion 1.5's "
                                "unet/config.json at stable-diffusion-v1-5/unet/config.json in the models folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON UNet config ({exc}); download SD1.5's unet/config.json again") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a UNet config (expected a JSON object); download SD1.5's unet/config.json "
                         "again")
    unet_config_from_dict(config, source=str(path))
    return config


def _finish(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    return model.to(dtype=dtype).eval().requires_grad_(False)


def build_denoising_unet(unet_config: dict, dtype: torch.dtype = torch.float32,
                         settings: UNet3DConfig = UNet3DConfig()) -> UNet3DConditionModel:
    return _finish(UNet3DConditionModel(unet_config_from_dict(unet_config), settings), dtype)


def build_reference_unet(unet_config: dict, dtype: torch.dtype = torch.float32) -> ReferenceUNet:
    return _finish(ReferenceUNet(unet_config_from_dict(unet_config)), dtype)


def build_pose_guider(noise_latent_channels: int = 320, settings: PoseGuiderConfig = PoseGuiderConfig(),
                      dtype: torch.dtype = torch.float32, use_ca: bool = True) -> PoseGuider:
    return _finish(PoseGuider(noise_latent_channels, settings.heads, settings.head_dim, use_ca), dtype)


def load_denoising_unet(unet_config_path: Path | str, denoising_unet_path: Path | str,
                        motion_module_path: Path | str, dtype: torch.dtype,
                        settings: UNet3DConfig = UNet3DConfig()) -> UNet3DConditionModel:
    """UNet3D from denoising_unet.pth (spatial keys) and motion_module.pth (motion-module keys); ``settings`` =
    the inference config's ``unet_additional_kwargs`` (the motion modules' layout and heads).

    As in the original, denoising_unet.pth is applied last, so it wins for keys both files hold. Each file must
    hold its whole part: the error names the file and the keys when not.
    """
    config = read_unet_config(unet_config_path)
    model = build_uninitialised(lambda: build_denoising_unet(config, dtype, settings))
    load_weights(model, read_state_dict(motion_module_path), motion_module_path,
                 "AniPortrait's motion modules (motion_module.pth)",
                 may_be_missing=lambda key: not is_motion_module_key(key))
    load_weights(model, read_state_dict(denoising_unet_path), denoising_unet_path,
                 "AniPortrait's denoising UNet (denoising_unet.pth)", may_be_missing=is_motion_module_key)
    return model


def load_reference_unet(unet_config_path: Path | str, reference_unet_path: Path | str,
                        dtype: torch.dtype) -> ReferenceUNet:
    config = read_unet_config(unet_config_path)
    model = build_uninitialised(lambda: build_reference_unet(config, dtype))
    load_weights(model, read_state_dict(reference_unet_path), reference_unet_path,
                 "AniPortrait's reference UNet (reference_unet.pth)",
                 may_be_extra=lambda key: key.startswith(_SD15_OUTPUT_LAYER_PREFIXES))
    return model


def load_pose_guider(path: Path | str, dtype: torch.dtype, settings: PoseGuiderConfig = PoseGuiderConfig()
                     ) -> PoseGuider:
    """PoseGuider from pose_guider.pth. Its width (noise_latent_channels) and whether it has the inner
    transformers (the original's ``use_ca``) are read from the file; their heads x head width from ``settings``."""
    state = read_state_dict(path)
    projection = state.get("final_proj.weight")
    if projection is None or projection.ndim != 4 or projection.shape[0] % 32:
        raise CheckpointMismatchError(
            f"{path} does not look like AniPortrait's PoseGuider (pose_guider.pth): no usable 'final_proj.weight'. "
            "Check that the right file is selected in this slot, or download it again.")
    use_ca = any(key.startswith("cross_attn1.") for key in state)
    model = build_uninitialised(lambda: build_pose_guider(projection.shape[0], settings, dtype, use_ca))
    load_weights(model, state, path,
                 f"AniPortrait's PoseGuider (pose_guider.pth, {settings.heads} heads x {settings.head_dim})")
    return model
