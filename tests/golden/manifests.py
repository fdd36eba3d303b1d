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

from torch import nn

from models.video.loading import (build_denoising_unet, build_pose_guider, build_reference_unet,
                                  is_motion_module_key)
from models.video.sd15_unet_config import SD15_UNET_CONFIG

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
    return build_denoising_unet(SD15_UNET_CONFIG, device="meta")


@functools.cache
def _reference_unet() -> nn.Module:
    return build_reference_unet(SD15_UNET_CONFIG, device="meta")


def _pose_guider() -> nn.Module:
    return build_pose_guider(device="meta")  # defaults = the released model: 320 channels, 16 heads x 88


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


MANIFEST_CHECKS: list[ManifestCheck] = [
    ManifestCheck("denoising_unet.pth.json", _denoising_unet, _spatial_keys, "UNet3D without motion-module keys"),
    ManifestCheck("motion_module.pth.json", _denoising_unet, _motion_keys, "UNet3D motion-module keys"),
    ManifestCheck("denoising_unet_3d_full_inference.json", _denoising_unet, note="whole UNet3D"),
    ManifestCheck("reference_unet.pth.json", _reference_unet, note="ReferenceUNet"),
    ManifestCheck("stable-diffusion-v1-5.unet.json", _reference_unet, _with_sd15_output_layers,
                  "ReferenceUNet + conv_norm_out/conv_out"),
    ManifestCheck("pose_guider.pth.json", _pose_guider, note="PoseGuider(320, 16 x 88)"),
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
