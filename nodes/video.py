"""Lmk2Video nodes: load the networks, encode the reference portrait, sample a video from pose images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from comfy_api.latest import io

import comfy.model_management as mm
import folder_paths

from ..models.video.pipeline import EncodedReference, VideoModelFiles, encode_reference, generate
from . import types as apk
from .search import search_aliases
from .common import (PRECISIONS, cached_models, check_interrupt, folder_choices, model_choices, progress_bar,
                     resolve_dtype, resolve_models, rgb_images_to_uint8, torch_device)

WEIGHT_FILES = [".pth", ".safetensors"]
# single-file VAEs from ComfyUI's own models/vae folder are listed with this prefix
COMFY_VAE_PREFIX = "models/vae/"
BLEND_CHOICES = {"average": "average", "sum (original at cfg<=1)": "sum (original, guidance<=1)"}
LOOP_CHOICES = {"closed (original)": True, "open": False}


@dataclass(frozen=True)
class VideoModelsHandle:
    """What APK_LoadLmk2VideoModels outputs: resolved files and the precision; networks are loaded at use."""

    files: VideoModelFiles
    dtype: torch.dtype


def cached_video_models(handle: VideoModelsHandle, *parts: str) -> SimpleNamespace:
    """The networks a node needs (as attributes), from the shared model cache, put on the compute device together."""
    files, dtype = handle.files, handle.dtype
    device = str(torch_device())
    entries = {part: (("apk_lmk2video", files.cache_key(part), dtype, device),
                      lambda part=part: files.load(part, dtype)) for part in parts}
    return SimpleNamespace(**cached_models(entries))


def _vae_choices() -> list[str]:
    single_files = [COMFY_VAE_PREFIX + name for name in folder_paths.get_filename_list("vae")]
    return folder_choices("vae") + single_files


def _comfy_vae_file(choice: str) -> Path:
    name = choice[len(COMFY_VAE_PREFIX):]
    path = folder_paths.get_full_path("vae", name)
    if path is None:
        raise FileNotFoundError(f"AniPortrait: the VAE '{name}' is not in ComfyUI's models/vae folder any more. "
                                "Refresh the page (R) and pick another one.")
    return Path(path)


class LoadLmk2VideoModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_LoadLmk2VideoModels", display_name="Load Lmk2Video Models (AniPortrait)",
            category="AniPortrait/video",
            description="Chooses AniPortrait's video networks (denoising UNet + motion modules, ReferenceNet, "
                        "PoseGuider, VAE, CLIP image encoder). They are loaded when a node first uses them and "
                        "then shared.",
            inputs=[
                io.Combo.Input("denoising_unet", options=model_choices("denoising_unet", WEIGHT_FILES),
                               tooltip="denoising_unet.pth: the video UNet's spatial weights."),
                io.Combo.Input("reference_unet", options=model_choices("reference_unet", WEIGHT_FILES),
                               tooltip="reference_unet.pth: the ReferenceNet that encodes the portrait's appearance."),
                io.Combo.Input("motion_module", options=model_choices("motion_module", WEIGHT_FILES),
                               tooltip="motion_module.pth: the temporal layers of the video UNet."),
                io.Combo.Input("pose_guider", options=model_choices("pose_guider", WEIGHT_FILES),
                               tooltip="pose_guider.pth: encodes the pose images for the UNet."),
                io.Combo.Input("unet_config", options=model_choices("sd15_unet_config", [".json"]),
                               tooltip="Stable Diffusion 1.5's unet/config.json: the architecture of both UNets "
                                       "(every weight comes from the files above)."),
                io.Combo.Input("vae", options=_vae_choices(),
                               tooltip="sd-vae-ft-mse: a diffusers folder in models/aniportrait, or a single file "
                                       "from ComfyUI's models/vae (e.g. vae-ft-mse-840000-ema-pruned.safetensors)."),
                io.Combo.Input("image_encoder", options=folder_choices("image_encoder"),
                               tooltip="CLIP image encoder folder (lambdalabs/sd-image-variations-diffusers "
                                       "image_encoder)."),
                io.Combo.Input("precision", options=PRECISIONS, default="auto",
                               tooltip="auto: fp16 on a GPU (what AniPortrait uses), fp32 on the CPU."),
                io.Int.Input("pose_guider_heads", default=16, min=1, max=128, optional=True,
                             tooltip="Attention heads of the PoseGuider's inner transformers. Leave at 16 for "
                                     "AniPortrait's pose_guider.pth; only non-standard checkpoints differ."),
                io.Int.Input("pose_guider_head_dim", default=88, min=1, max=512, optional=True,
                             tooltip="Width of each of those heads. Leave at 88 for AniPortrait's pose_guider.pth."),
            ],
            outputs=[apk.VideoModels.Output(display_name="models",
                                            tooltip="The chosen networks and precision, for the reference encoder "
                                                    "and the sampler.")])

    @classmethod
    def execute(cls, denoising_unet, reference_unet, motion_module, pose_guider, unet_config, vae, image_encoder,
                precision, pose_guider_heads=16, pose_guider_head_dim=88) -> io.NodeOutput:
        choices = {"denoising_unet": denoising_unet, "reference_unet": reference_unet,
                   "motion_module": motion_module, "pose_guider": pose_guider, "sd15_unet_config": unet_config,
                   "image_encoder": image_encoder}
        single_file_vae = vae.startswith(COMFY_VAE_PREFIX)
        if not single_file_vae:
            choices["vae"] = vae
        paths = resolve_models(choices)  # one error lists every missing file
        files = VideoModelFiles(
            denoising_unet=paths["denoising_unet"], reference_unet=paths["reference_unet"],
            motion_module=paths["motion_module"], pose_guider=paths["pose_guider"],
            unet_config=paths["sd15_unet_config"],
            vae=_comfy_vae_file(vae) if single_file_vae else paths["vae"],
            image_encoder=paths["image_encoder"],
            pose_guider_heads=pose_guider_heads, pose_guider_head_dim=pose_guider_head_dim)
        return io.NodeOutput(VideoModelsHandle(files, resolve_dtype(precision)))


class ReferenceNetEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_ReferenceNetEncode", display_name="ReferenceNet Encode (AniPortrait)",
            category="AniPortrait/video",
            description="Encodes the reference portrait once (CLIP embedding, VAE latent, ReferenceNet features) "
                        "for a video of width x height; one encoding can drive many samplers.",
            inputs=[
                apk.VideoModels.Input("models", tooltip="From Load Lmk2Video Models."),
                io.Image.Input("image", tooltip="Reference portrait at its own resolution (only the first image of "
                                                "a batch is used). Each consumer resizes it as AniPortrait does."),
                io.Int.Input("width", default=512, min=64, max=2048, step=8,
                             tooltip="Video width (multiple of 8). Use the size the pose images were made for."),
                io.Int.Input("height", default=512, min=64, max=2048, step=8,
                             tooltip="Video height (multiple of 8)."),
            ],
            outputs=[apk.Reference.Output(display_name="reference",
                                          tooltip="The encoded reference, for the Lmk2Video sampler.")])

    @classmethod
    def execute(cls, models, image, width, height) -> io.NodeOutput:
        portrait = rgb_images_to_uint8(image[:1], "image")[0]
        encoders = cached_video_models(models, "image_encoder", "vae", "reference_unet")
        return io.NodeOutput(encode_reference(encoders, portrait, width, height))


class Lmk2VideoSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_Lmk2VideoSampler", display_name="Lmk2Video Sampler (AniPortrait)",
            **search_aliases("APK_Lmk2VideoSampler"),
            category="AniPortrait/video",
            description="Animates the encoded reference along the pose images: DDIM (v-prediction) with "
                        "classifier-free guidance over overlapping context windows, then VAE decoding. The same "
                        "inputs and seed give the same video.",
            inputs=[
                apk.VideoModels.Input("models", tooltip="From Load Lmk2Video Models."),
                apk.Reference.Input("reference", tooltip="From ReferenceNet Encode; sets the video size."),
                io.Image.Input("pose_images", tooltip="One pose image per output frame (from Render Pose Image); "
                                                      "resized to the reference's size if they differ."),
                io.Int.Input("steps", default=25, min=1, max=200, tooltip="DDIM steps (AniPortrait: 25)."),
                io.Float.Input("cfg", default=3.5, min=1.0, max=20.0, step=0.1,
                               tooltip="Guidance scale (AniPortrait: 3.5). 1 turns guidance off (half the work)."),
                io.Int.Input("seed", default=42, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the initial noise (AniPortrait's scripts use 42)."),
                io.Int.Input("context_frames", default=16, min=1, max=32,
                             tooltip="Frames per context window (AniPortrait: 16; the motion modules know at most "
                                     "32 positions)."),
                io.Int.Input("context_overlap", default=4, min=0, max=31,
                             tooltip="Frames shared by neighbouring windows (AniPortrait: 4); must be smaller than "
                                     "context_frames."),
                io.Combo.Input("window_blend", options=list(BLEND_CHOICES), default="average",
                               tooltip="How overlapping windows are merged. average: always (recommended). sum: "
                                       "AniPortrait's behaviour, which at cfg 1 adds overlapping predictions "
                                       "instead of averaging them (same as average when cfg > 1)."),
                io.Combo.Input("loop", options=list(LOOP_CHOICES), default="closed (original)",
                               tooltip="closed: AniPortrait's windows, the last one wraps around to the first "
                                       "frames (the video's end is blended towards its start). open: the last "
                                       "window ends on the last frame instead."),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="The generated video frames (RGB).")])

    @classmethod
    def execute(cls, models, reference: EncodedReference, pose_images, steps, cfg, seed, context_frames,
                context_overlap, window_blend, loop) -> io.NodeOutput:
        # checked before the networks load (the sampler checks it too, but only after loading them)
        if context_overlap >= context_frames:
            raise ValueError(f"AniPortrait: context_overlap ({context_overlap}) must be smaller than context_frames "
                             f"({context_frames}); lower context_overlap or raise context_frames.")
        # IMAGE is display RGB; the networks were trained on the drawing's raw channel order (reversed)
        raw_pose = np.ascontiguousarray(rgb_images_to_uint8(pose_images, "pose_images")[..., ::-1])
        networks = cached_video_models(models, "denoising_unet", "pose_guider", "vae")
        frames = generate(networks, reference, raw_pose, steps=steps, guidance=cfg, seed=seed,
                          context_frames=context_frames, context_overlap=context_overlap,
                          window_blend=BLEND_CHOICES[window_blend], closed_loop=LOOP_CHOICES[loop],
                          progress=progress_bar(steps), check_interrupt=check_interrupt)
        return io.NodeOutput(frames.to(mm.intermediate_device()))


NODES = [LoadLmk2VideoModels, ReferenceNetEncode, Lmk2VideoSampler]
