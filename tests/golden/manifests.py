"""Full-size state-dict key/shape checks against shared/golden/manifests (models built on the meta device, no weights).

One row of ``MANIFEST_CHECKS`` per manifest file: the file name, a builder of the full-size module on the meta device,
and a transform from that module's ``{key: shape}`` to the key set the file describes (or, where our loader renames
a file's keys, that renaming applied to the file's keys). One Comparison per row: ``max_abs_err`` = number of
missing + unexpected keys + shape mismatches (+ 1 if ``_summary.json`` counts differently), tolerance 0. Every other
``*.json`` in the folder fails as unchecked. To add a model, append ``ManifestCheck("<file>.json", build_fn)``.
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
from transformers import Wav2Vec2Config

from aniportrait.audio.audio2mesh import Audio2MeshModel
from aniportrait.audio.audio2pose import Audio2PoseModel
from aniportrait.audio.wav2vec2 import (WAV2VEC2_BASE_960H_CONFIG, Wav2Vec2FrameEncoder, inference_config,
                                   match_weight_norm_keys)
from aniportrait.video.loading import (build_denoising_unet, build_pose_guider, build_reference_unet,
                                  is_motion_module_key)
from aniportrait.video.clip_encoder import IMAGE_ENCODER_CONFIG
from aniportrait.video.sd15_unet_config import SD15_UNET_CONFIG
from aniportrait.video.vae import DEPRECATED_ATTENTION_NAMES, SD_VAE_FT_MSE_CONFIG

from .compare import Comparison, failure

Shapes = dict[str, tuple[int, ...]]
SUMMARY = "_summary.json"  # tensor/element counts per manifest, no keys
_SHOWN = 4


def _unchanged(shapes: Shapes) -> Shapes:
    return shapes


@dataclass(frozen=True)
class ManifestCheck:
    manifest: str                                # file name in the manifest folder
    build: Callable[[], nn.Module]               # the full-size module, on the meta device
    keys: Callable[[Shapes], Shapes] = _unchanged  # our {key: shape} -> what the file lists
    note: str = ""
    # the loader's renaming of a file's keys onto the module's: (file's {key: shape}, module's keys) -> {key: shape}
    loader_names: Callable[[Shapes, set[str]], Shapes] | None = None


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


def _wav2vec2_base() -> Wav2Vec2FrameEncoder:
    config = inference_config(Wav2Vec2Config(**WAV2VEC2_BASE_960H_CONFIG), "WAV2VEC2_BASE_960H_CONFIG")
    with torch.device("meta"):
        return Wav2Vec2FrameEncoder(config)


# widths below = what load_audio2mesh / load_audio2pose read off the released files' tensor shapes
def _audio2mesh() -> nn.Module:
    with torch.device("meta"):
        return Audio2MeshModel(_wav2vec2_base(), latent_dim=512, out_dim=468 * 3)


def _audio2pose() -> nn.Module:
    with torch.device("meta"):
        return Audio2PoseModel(_wav2vec2_base(), latent_dim=512, out_dim=6, feedforward_dim=1024, num_layers=8,
                               num_identities=100, max_positions=600)


_LEGACY_WEIGHT_NORM = "legacy weight_g/weight_v renamed to our parametrized names by match_weight_norm_keys"

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
    ManifestCheck("wav2vec2-base-960h.Wav2Vec2Model.json", _wav2vec2_base, loader_names=match_weight_norm_keys,
                  note=f"Wav2Vec2FrameEncoder(base-960h), masked_spec_embed included; {_LEGACY_WEIGHT_NORM}"),
    ManifestCheck("audio2mesh.pt.json", _audio2mesh, loader_names=match_weight_norm_keys,
                  note=f"Audio2MeshModel(512, 1404); {_LEGACY_WEIGHT_NORM}"),
    ManifestCheck("audio2pose.pt.json", _audio2pose, loader_names=match_weight_norm_keys,
                  note=f"Audio2PoseModel(512, 6, ff 1024, 8 layers, 100 ids, PPE.pe 600); {_LEGACY_WEIGHT_NORM}"),
]


def _mismatches(ours: Shapes, theirs: Shapes) -> list[str]:
    missing = [f"missing {key}" for key in theirs if key not in ours]
    extra = [f"extra {key}" for key in ours if key not in theirs]
    shapes = [f"{key} {ours[key]} != {theirs[key]}" for key in ours if key in theirs and ours[key] != theirs[key]]
    return missing + extra + shapes


def _summary_counts(manifest_dir: Path) -> dict[str, tuple[int, int]]:
    """manifest file name -> (tensors, elements) as ``_summary.json`` lists them (empty without the file)."""
    path = manifest_dir / SUMMARY
    if not path.is_file():
        return {}
    return {f"{entry['file']}.json": (entry["num_tensors"], entry["num_elements"])
            for entry in json.loads(path.read_text())}


def check_manifest(check: ManifestCheck, manifest_dir: Path, summary: dict[str, tuple[int, int]]) -> Comparison:
    path = manifest_dir / check.manifest
    if not path.is_file():
        return Comparison("manifest", check.manifest, float("nan"), 0.0, False, f"{path} not found")
    theirs = {key: tuple(shape) for key, shape in json.loads(path.read_text()).items()}
    state = check.build().state_dict()
    if check.loader_names is not None:
        theirs = check.loader_names(theirs, set(state))
    ours = check.keys({key: tuple(tensor.shape) for key, tensor in state.items()})
    problems = _mismatches(ours, theirs)
    elements = sum(math.prod(shape) for shape in ours.values())
    listed = summary.get(check.manifest)
    if listed is not None and listed != (len(ours), elements):
        problems.append(f"{SUMMARY} lists {listed[0]} tensors, {listed[1]:,} elements")
    note = f"{check.note}: {len(ours)} tensors, {elements:,} elements"
    if problems:
        more = f"; ... ({len(problems)} in all)" if len(problems) > _SHOWN else ""
        note += "; " + "; ".join(problems[:_SHOWN]) + more
    return Comparison("manifest", check.manifest, float(len(problems)), 0.0, not problems, note)


def check_manifests(manifest_dir: Path) -> list[Comparison]:
    """One Comparison per row of ``MANIFEST_CHECKS`` and one FAIL per other ``*.json`` in the folder."""
    manifest_dir = Path(manifest_dir)
    summary = _summary_counts(manifest_dir)
    results = []
    for check in MANIFEST_CHECKS:
        try:
            results.append(check_manifest(check, manifest_dir, summary))
        except Exception as exc:  # one broken row must not hide the others
            results.append(failure("manifest", check.manifest, exc))
    checked = {check.manifest for check in MANIFEST_CHECKS} | {SUMMARY}
    results += [Comparison("manifest", path.name, float("nan"), 0.0, False, "no checker for this manifest")
                for path in sorted(manifest_dir.glob("*.json")) if path.name not in checked]
    return results
