"""The original's ``-acc`` speed-up as two nodes around the unchanged sampler: Select Keyframes (every fi_step-th pose
image) before it, FILM Interpolate (the frames between) after it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from comfy_api.latest import io

import comfy.model_management as mm
import folder_paths

from ..aniportrait.cache import file_identity
from ..aniportrait.video.frame_interpolation import (KeyframePlan, interpolate, load_film, pad_to_length,
                                                     select_keyframes)
from . import types as apk
from .search import search_aliases
from .common import (FOLDER_NAME, PRECISIONS, cached_model, check_interrupt, model_choices, progress_bar,
                     resolve_dtype, resolve_model, torch_device)

log = logging.getLogger("aniportrait")

CATEGORY = "AniPortrait/interpolation"
FI_STEP_TOOLTIP = ("Diffuse every fi_step-th pose frame; FILM makes the others. 3 (the original's -acc default) "
                   "is about 3x faster sampling; larger steps are faster still but lose lip detail, because only "
                   "the keyframes follow the mouth.")
LENGTHS = {"original (up to fi_step-1 frames short)": False, "full (hold the last frame)": True}


@dataclass(frozen=True)
class FilmModelHandle:
    """What APK_LoadFILMModel outputs: the TorchScript file and the precision; the model loads at first use."""

    path: Path
    dtype: torch.dtype


class SelectKeyframes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_SelectKeyframes", display_name="Select Keyframes (AniPortrait)", category=CATEGORY,
            description="Keeps every fi_step-th pose image (the first, then every fi_step-th), so the sampler "
                        "diffuses only those; FILM Interpolate fills the frames between afterwards (the original's "
                        "-acc option).",
            inputs=[io.Image.Input("pose_images", tooltip="All pose images (from Render Pose Image)."),
                    io.Int.Input("fi_step", default=3, min=1, max=10, tooltip=FI_STEP_TOOLTIP)],
            outputs=[io.Image.Output(display_name="keyframes", tooltip="The pose images to diffuse: connect to the "
                                                                       "sampler's pose_images."),
                     apk.KeyframePlan.Output(display_name="plan", tooltip="fi_step and the full length, for FILM "
                                                                          "Interpolate.")])

    @classmethod
    def execute(cls, pose_images: torch.Tensor, fi_step: int) -> io.NodeOutput:
        if pose_images.ndim != 4 or pose_images.shape[0] == 0:
            raise ValueError(f"AniPortrait: Select Keyframes needs a non-empty IMAGE batch in 'pose_images', got "
                             f"shape {list(pose_images.shape)}. Connect Render Pose Image's pose_images.")
        keyframes, plan = select_keyframes(pose_images, fi_step)
        return io.NodeOutput(keyframes, plan)


class LoadFILMModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_LoadFILMModel", display_name="Load FILM Model (AniPortrait)", category=CATEGORY,
            description="Selects the FILM frame-interpolation model (AniPortrait's film_net_fp16.pt, TorchScript). "
                        "TorchScript files contain code, so only files in models/aniportrait are loaded, and only "
                        "TorchScript archives (never a pickle).",
            inputs=[io.Combo.Input("film_model", options=model_choices("film", [".pt"]),
                                   tooltip="film_net_fp16.pt in models/aniportrait (downloaded on first use)."),
                    io.Combo.Input("precision", options=PRECISIONS, default="auto",
                                   tooltip="auto: fp16 on a GPU (what AniPortrait uses), fp32 on the CPU.")],
            outputs=[apk.FilmModel.Output(display_name="film_model", tooltip="For FILM Interpolate.")])

    @classmethod
    def execute(cls, film_model: str, precision: str) -> io.NodeOutput:
        return io.NodeOutput(FilmModelHandle(resolve_model("film", film_model), resolve_dtype(precision)))


class FILMInterpolate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_FILMInterpolate", display_name="FILM Interpolate (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_FILMInterpolate"),
            description="Fills the fi_step-1 frames between each pair of sampled keyframes with FILM, in the "
                        "original's order and with its time steps (each new frame from its two nearest known "
                        "frames). Batched over pairs, on the GPU when there is one.",
            inputs=[apk.FilmModel.Input("film_model", tooltip="From Load FILM Model."),
                    io.Image.Input("frames", tooltip="The sampler's frames, made from Select Keyframes' keyframes."),
                    apk.KeyframePlan.Input("plan", tooltip="From the Select Keyframes node that fed the sampler."),
                    io.Combo.Input("length", options=list(LENGTHS), default=next(iter(LENGTHS)),
                                   tooltip="original: (keyframes-1) x fi_step + 1 frames, as AniPortrait's -acc (up "
                                           "to fi_step-1 frames shorter than the pose images, so the end of the "
                                           "speech is cut). full: as many frames as pose images (= the audio's "
                                           "length), holding the last frame."),
                    io.Int.Input("batch_size", default=4, min=1, max=64,
                                 tooltip="Keyframe pairs per FILM call. Higher is faster on a GPU and needs more "
                                         "memory; the result is the same.")],
            outputs=[io.Image.Output(display_name="frames", tooltip="The full-rate video frames.")])

    @classmethod
    def execute(cls, film_model: FilmModelHandle, frames: torch.Tensor, plan: KeyframePlan, length: str,
                batch_size: int) -> io.NodeOutput:
        count = frames.shape[0] if frames.ndim == 4 else f"no IMAGE batch (shape {list(frames.shape)}) as"
        if count != plan.keyframes:
            raise ValueError(f"AniPortrait: FILM Interpolate got {count} frames, but Select Keyframes picked "
                             f"{plan.keyframes} of {plan.source_frames} pose images. Connect the sampler that "
                             "received those keyframes to 'frames', and its Select Keyframes to 'plan'.")
        video = frames.float().cpu()
        if plan.fi_step > 1 and frames.shape[0] > 1:
            model = cached_model(("apk_film", file_identity(film_model.path), film_model.dtype, str(torch_device())),
                                 lambda: _load(film_model))
            calls = (frames.shape[0] - 1) * (plan.fi_step - 1)
            video = interpolate(model, frames, plan.fi_step, batch_size=batch_size, device=torch_device(),
                                dtype=film_model.dtype, progress=progress_bar(calls), check_interrupt=check_interrupt)
        if LENGTHS[length]:
            video = pad_to_length(video, plan.source_frames)
        log.info("AniPortrait FILM: %d keyframes -> %d frames (fi_step %d, %d pose images)", frames.shape[0],
                 video.shape[0], plan.fi_step, plan.source_frames)
        return io.NodeOutput(video.to(mm.intermediate_device()))


def _load(handle: FilmModelHandle) -> torch.nn.Module:
    return load_film(handle.path, folder_paths.get_folder_paths(FOLDER_NAME)).to(handle.dtype)


NODES = [SelectKeyframes, LoadFILMModel, FILMInterpolate]
