"""Full-size state-dict key/shape checks against shared/golden/manifests (models built on the meta device, no weights).

One row of ``MANIFEST_CHECKS`` per manifest file: the file name, a builder of the full-size module on the meta device,
and a transform from that module's ``{key: shape}`` to the key set the file describes. One Comparison per row:
``max_abs_err`` = number of missing + unexpected keys + shape mismatches, tolerance 0. To add a model, append
``ManifestCheck("<file>.json", build_fn)`` (plus a transform when the file names keys differently).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from models.video.loading import (build_denoising_unet, build_pose_guider, build_reference_unet,
                                  is_motion_module_key)
from models.video.clip_encoder import IMAGE_ENCODER_CONFIG
from models.video.sd15_unet_config import SD15_UNET_CONFIG
from models.video.vae import DEPRECATED_ATTENTION_NAMES, SD_VAE_FT_MSE_CONFIG

from .compare import Comparison

Shapes = dict[str, tuple[int, ...]]
_SHOWN = 4


def _unchanged(shapes: Shapes) -> Shapes:
    return shapes


@dataclass(frozen=True)
class ManifestCheck:
    manifest: str                                # file name in the manifest folder
    build: Callable[[], nn.Module]               # the full-size module, on the meta device
    keys: Callable[[Shapes], Shapes] = _unchanged  # our {key: shape} -> what the file lists
    note: str = ""


@functools.cache
def _denoising_unet() -> nn.Module:
    with torch.device("meta"):
        return build_denoising_unet(SD15_UNET_CONFIG)


@functools.cache
def _reference_unet() -> nn.Module:
    with torch.device("meta"):
        return build_reference_unet(SD15_UNET_CONFIG)


def _pose_guider() -> nn.Module:
    with torch.device("meta"):
        return build_pose_guider()  # defaults = the released model: 320 channels, 16 heads x 88


def _spatial_keys(shapes: Shapes) -> Shapes:
    return {key: shape for key, shape in shapes.items() if not is_motion_module_key(key)}


def _motion_keys(shapes: Shapes) -> Shapes:
    return {key: shape for key, shape in shapes.items() if is_motion_module_key(key)}


def _with_sd15_output_layers(shapes: Shapes) -> Shapes:
    """SD1.5's UNet = AniPortrait's reference UNet + the output layers the reference class lacks (its output is never
    used; the reference loader accepts and ignores these keys when a file carries them)."""
    width, out = SD15_UNET_CONFIG["block_out_channels"][0], SD15_UNET_CONFIG["out_channels"]
    return {**shapes, "conv_norm_out.weight": (width,), "conv_norm_out.bias": (width,),
            "conv_out.weight": (out, width, 3, 3), "conv_out.bias": (out,)}


def _vae() -> nn.Module:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL.from_config(SD_VAE_FT_MSE_CONFIG)


def _with_deprecated_attention_names(shapes: Shapes) -> Shapes:
    """Our names -> the pre-0.14 diffusers names of older hub files, by the table the VAE loader maps back with."""
    def old_name(key: str) -> str:
        for old, current in DEPRECATED_ATTENTION_NAMES.items():
            key = key.replace(f".attentions.0.{current}.", f".attentions.0.{old}.")
        return key

    return {old_name(key): shape for key, shape in shapes.items()}


def _image_encoder() -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG))


def _with_stored_position_ids(shapes: Shapes) -> Shapes:
    """transformers 4.30.2 saved the position index buffer with the weights (persistent); newer versions rebuild it
    and leave it out of the state dict. The loader accepts it when a file has it."""
    patches = (IMAGE_ENCODER_CONFIG["image_size"] // IMAGE_ENCODER_CONFIG["patch_size"]) ** 2
    return {**shapes, "vision_model.embeddings.position_ids": (1, patches + 1)}


MANIFEST_CHECKS: list[ManifestCheck] = [
    ManifestCheck("denoising_unet.pth.json", _denoising_unet, _spatial_keys, "UNet3D without motion-module keys"),
    ManifestCheck("motion_module.pth.json", _denoising_unet, _motion_keys, "UNet3D motion-module keys"),
    ManifestCheck("denoising_unet_3d_full_inference.json", _denoising_unet, note="whole UNet3D"),
    ManifestCheck("reference_unet.pth.json", _reference_unet, note="ReferenceUNet"),
    ManifestCheck("stable-diffusion-v1-5.unet.json", _reference_unet, _with_sd15_output_layers,
                  "ReferenceUNet + conv_norm_out/conv_out"),
    ManifestCheck("pose_guider.pth.json", _pose_guider, note="PoseGuider(320, 16 x 88)"),
    ManifestCheck("sd-vae-ft-mse.json", _vae, note="AutoencoderKL(sd-vae-ft-mse config)"),
    ManifestCheck("sd-vae-ft-mse.deprecated_attention_names.json", _vae, _with_deprecated_attention_names,
                  "AutoencoderKL, attention keys as query/key/value/proj_attn"),
    ManifestCheck("image_encoder.CLIPVisionModelWithProjection.json", _image_encoder, _with_stored_position_ids,
                  "CLIPVisionModelWithProjection (ViT-L/14) + 4.30.2's persistent position_ids"),
]


def _mismatches(ours: Shapes, theirs: Shapes) -> list[str]:
    missing = [f"missing {key}" for key in theirs if key not in ours]
    extra = [f"extra {key}" for key in ours if key not in theirs]
    shapes = [f"{key} {ours[key]} != {theirs[key]}" for key in ours if key in theirs and ours[key] != theirs[key]]
    return missing + extra + shapes


def _check(check: ManifestCheck, manifest_dir: Path) -> Comparison:
    path = manifest_dir / check.manifest
    if not path.is_file():
        return Comparison("manifest", check.manifest, float("nan"), 0.0, False, f"{path} not found")
    theirs = {key: tuple(shape) for key, shape in json.loads(path.read_text()).items()}
    module = check.build()
    ours = check.keys({key: tuple(tensor.shape) for key, tensor in module.state_dict().items()})
    problems = _mismatches(ours, theirs)
    elements = sum(math.prod(shape) for shape in ours.values())
    note = f"{check.note}: {len(ours)} tensors, {elements:,} elements"
    if problems:
        more = f"; ... ({len(problems)} in all)" if len(problems) > _SHOWN else ""
        note += "; " + "; ".join(problems[:_SHOWN]) + more
    return Comparison("manifest", check.manifest, float(len(problems)), 0.0, not problems, note)


def check_manifests(manifest_dir: Path) -> list[Comparison]:
    return [_check(check, Path(manifest_dir)) for check in MANIFEST_CHECKS]
