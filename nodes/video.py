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

from ..aniportrait.data import LandmarkSequence, same_fps
from ..aniportrait.progress import checking_interrupt
from ..aniportrait.video.attention import attention_backend
from ..aniportrait.video.config import RELEASED_CONFIG, Lmk2VideoConfig, PoseGuiderConfig
from ..aniportrait.video.context import context_windows
from ..aniportrait.video.memory_plan import sampler_memory_required
from ..aniportrait.video.pipeline import (EncodedReference, SamplerRun, SamplerSettings, VideoModelFiles,
                                          encode_reference, generate, prepare_pose_images)
from ..aniportrait.video.pose_guider import check_window_statistics
from ..aniportrait.video.pose_source import LandmarkPoseImages, PoseImageArray, PoseSource
from ..aniportrait.video.speed import apply_speed
from ..aniportrait.video.streaming import FrameSink
from ..aniportrait.video_io import VideoWriter
from . import types as apk
from .search import search_aliases
from .common import (PRECISIONS, cached_models, check_interrupt, folder_choices, images_to_uint8, model_choices,
                     resolve_dtype, resolve_models, rgb_images_to_uint8, torch_device)
from .output import (FORMATS, audio_track, output_file, saved_video, video_file_inputs, video_file_output,
                     workflow_metadata)
from .paths import model_choices_problem
from .runtime import SamplerProgress, comfy_attention, comfy_device_memory, vae_dtype

WEIGHT_FILES = [".pth", ".safetensors"]
# single-file VAEs from ComfyUI's own models/vae folder are listed with this prefix
COMFY_VAE_PREFIX = "models/vae/"
BLEND_CHOICES = {"average": "average", "sum (original at cfg<=1)": "sum (original, guidance<=1)"}
LOOP_CHOICES = {"closed (original)": True, "open": False}
SPEED_CHOICES = {"default": (), "channels_last": ("channels_last",), "torch.compile": ("compile",),
                 "torch.compile + channels_last": ("compile", "channels_last")}
WIDGET_FPS_TOLERANCE = 1e-3  # the fps widgets round to 0.001
RELEASED_POSE_GUIDER = RELEASED_CONFIG.pose_guider


@dataclass(frozen=True)
class VideoModelsHandle:
    """What APK_LoadLmk2VideoModels outputs: resolved files and the precision; networks are loaded at use."""

    files: VideoModelFiles
    dtype: torch.dtype
    vae_dtype: torch.dtype | None = None  # None: the same as dtype


def cached_video_models(handle: VideoModelsHandle, *parts: str, memory_required: int = 0) -> SimpleNamespace:
    """The networks a node needs (as attributes), from the shared model cache, put on the compute device together
    (``memory_required``: the node's work memory, see ``cached_models``)."""
    files = handle.files
    device = str(torch_device())
    dtypes = {part: handle.vae_dtype if part == "vae" and handle.vae_dtype else handle.dtype for part in parts}
    entries = {part: (("apk_lmk2video", files.cache_key(part), dtypes[part], device),
                      lambda part=part: files.load(part, dtypes[part])) for part in parts}
    return SimpleNamespace(**cached_models(entries, memory_required))


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
                               tooltip="auto: as ComfyUI decides for the device: fp16 on most GPUs (what "
                                       "AniPortrait uses), bf16 where fp16 is slow, fp32 on the CPU; the VAE "
                                       "follows --fp32-vae/--bf16-vae/--fp16-vae. A VAE batch that overflows in "
                                       "half precision is decoded again in fp32."),
                io.Int.Input("pose_guider_heads", default=RELEASED_POSE_GUIDER.heads, min=1, max=128, optional=True,
                             tooltip="Attention heads of the PoseGuider's inner transformers. Leave at "
                                     f"{RELEASED_POSE_GUIDER.heads} for AniPortrait's pose_guider.pth; only "
                                     "non-standard checkpoints differ."),
                io.Int.Input("pose_guider_head_dim", default=RELEASED_POSE_GUIDER.head_dim, min=1, max=512,
                             optional=True,
                             tooltip=f"Width of each of those heads. Leave at {RELEASED_POSE_GUIDER.head_dim} for "
                                     "AniPortrait's pose_guider.pth."),
            ],
            outputs=[apk.VideoModels.Output(display_name="models",
                                            tooltip="The chosen networks and precision, for the reference encoder "
                                                    "and the sampler.")])

    @classmethod
    def execute(cls, denoising_unet, reference_unet, motion_module, pose_guider, unet_config, vae, image_encoder,
                precision, pose_guider_heads=RELEASED_POSE_GUIDER.heads,
                pose_guider_head_dim=RELEASED_POSE_GUIDER.head_dim) -> io.NodeOutput:
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
            config=Lmk2VideoConfig(pose_guider=PoseGuiderConfig(pose_guider_heads, pose_guider_head_dim)))
        dtype = resolve_dtype(precision)
        return io.NodeOutput(VideoModelsHandle(files, dtype, vae_dtype(precision, dtype, torch_device())))

    @classmethod
    def validate_inputs(cls, denoising_unet=None, reference_unet=None, motion_module=None, pose_guider=None,
                        unet_config=None, vae=None, image_encoder=None) -> bool | str:
        return model_choices_problem(denoising_unet=denoising_unet, reference_unet=reference_unet,
                                     motion_module=motion_module, pose_guider=pose_guider, unet_config=unet_config,
                                     vae=vae, image_encoder=image_encoder)


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
        with attention_backend(comfy_attention(), check_interrupt), \
                checking_interrupt(check_interrupt, *vars(encoders).values()):
            return io.NodeOutput(encode_reference(encoders, portrait, width, height))


def sampler_inputs() -> list:
    """The inputs both samplers share: what to animate along, and the sampling settings."""
    return [
        apk.VideoModels.Input("models", tooltip="From Load Lmk2Video Models."),
        apk.Reference.Input("reference", tooltip="From ReferenceNet Encode; sets the video size."),
        io.Image.Input("pose_images", optional=True,
                       tooltip="One pose image per output frame (from Render Pose Image or a pose video); resized "
                               "to the reference's size if they differ. Connect this or 'landmarks'."),
        apk.Landmarks.Input("landmarks", optional=True,
                            tooltip="Per-frame landmarks (Project Landmarks or Retarget Face) instead of pose "
                                    "images: each window's pose images are drawn when it needs them, so long "
                                    "videos never hold all of them. Connect this or 'pose_images'."),
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
        io.Combo.Input("speed", options=list(SPEED_CHOICES), default="default", optional=True,
                       tooltip="GPU speed-ups (same video up to float rounding). channels_last: faster "
                               "convolutions on recent NVIDIA GPUs. torch.compile: compiles the UNet on "
                               "the first run (minutes; needs a working Triton), faster afterwards."),
    ]


def pose_input(reference: EncodedReference, pose_images: torch.Tensor | None,
               landmarks: LandmarkSequence | None) -> PoseSource:
    """The sampler's pose frames: drawn per window from ``landmarks``, or the ``pose_images`` IMAGE batch in the
    networks' channel order."""
    if (pose_images is None) == (landmarks is None):
        which = "both are" if pose_images is not None else "neither is"
        raise ValueError(f"AniPortrait: connect exactly one of 'pose_images' and 'landmarks' to the sampler "
                         f"({which} connected). Use 'landmarks' (from Project Landmarks or Retarget Face) for long "
                         "videos, 'pose_images' for a pose video made elsewhere.")
    if landmarks is not None:
        return LandmarkPoseImages(landmarks, reference.width, reference.height)
    # IMAGE is display RGB; the networks were trained on the drawing's raw channel order (reversed)
    raw = np.ascontiguousarray(rgb_images_to_uint8(pose_images, "pose_images")[..., ::-1])
    return PoseImageArray(prepare_pose_images(raw, reference.width, reference.height))


def prepare_sampling(models: VideoModelsHandle, reference: EncodedReference, pose_images: torch.Tensor | None,
                     landmarks: LandmarkSequence | None, steps: int, cfg: float, seed: int, context_frames: int,
                     context_overlap: int, window_blend: str,
                     loop: str) -> tuple[PoseSource, SamplerSettings]:
    """The sampler nodes' inputs as the library's: the pose frames and the settings, checked against each other
    and the video before the networks load."""
    poses = pose_input(reference, pose_images, landmarks)
    if context_overlap >= context_frames:
        raise ValueError(f"AniPortrait: context_overlap ({context_overlap}) must be smaller than context_frames "
                         f"({context_frames}); lower context_overlap or raise context_frames.")
    check_window_statistics(min(context_frames, poses.num_frames), reference.width, reference.height)
    settings = SamplerSettings(steps=steps, guidance=cfg, seed=seed, context_frames=context_frames,
                               context_overlap=context_overlap, window_blend=BLEND_CHOICES[window_blend],
                               closed_loop=LOOP_CHOICES[loop], scheduler=models.files.config.scheduler)
    return poses, settings


def sample(models: VideoModelsHandle, reference: EncodedReference, poses: PoseSource,
           settings: SamplerSettings, speed: str, frame_sink: FrameSink | None = None) -> torch.Tensor | None:
    """Run the sampler; frames returned, or given to ``frame_sink``. ComfyUI frees the sampler's working memory
    before the networks load, and its attention kernel is used."""
    window = len(context_windows(poses.num_frames, settings.context_frames, settings.context_overlap,
                                 settings.closed_loop)[0])
    work = sampler_memory_required(window, reference.width, reference.height, settings.guidance > 1.0, models.dtype)
    networks = cached_video_models(models, "denoising_unet", "pose_guider", "vae", memory_required=work)
    apply_speed(networks.denoising_unet, SPEED_CHOICES[speed])
    bar = SamplerProgress(torch_device())
    run = SamplerRun(memory=comfy_device_memory(), progress=bar.progress, check_interrupt=check_interrupt,
                     preview=bar.preview, frame_sink=frame_sink)
    with attention_backend(comfy_attention()):
        return generate(networks, reference, poses, settings, run)


class Lmk2VideoSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_Lmk2VideoSampler", display_name="Lmk2Video Sampler (AniPortrait)",
            **search_aliases("APK_Lmk2VideoSampler"),
            category="AniPortrait/video",
            description="Animates the encoded reference along the pose images: DDIM (v-prediction) with "
                        "classifier-free guidance over overlapping context windows, then VAE decoding. The same "
                        "inputs and seed give the same video. Returns all frames as one IMAGE batch (3 MB per "
                        "frame at 512x512): for short clips and image nodes; long videos go through "
                        "Lmk2Video Sampler to Video File.",
            inputs=sampler_inputs(),
            outputs=[io.Image.Output(display_name="frames", tooltip="The generated video frames (RGB).")])

    @classmethod
    def execute(cls, models, reference: EncodedReference, steps, cfg, seed, context_frames, context_overlap,
                window_blend, loop, pose_images=None, landmarks=None, speed="default") -> io.NodeOutput:
        poses, settings = prepare_sampling(models, reference, pose_images, landmarks, steps, cfg, seed,
                                           context_frames, context_overlap, window_blend, loop)
        frames = sample(models, reference, poses, settings, speed)
        return io.NodeOutput(frames.to(mm.intermediate_device()))


class Lmk2VideoSamplerToFile(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_Lmk2VideoSamplerToFile", display_name="Lmk2Video Sampler to Video File (AniPortrait)",
            **search_aliases("APK_Lmk2VideoSamplerToFile"),
            category="AniPortrait/video",
            description="The Lmk2Video sampler for videos of any length: the frames are encoded into a video file "
                        "(with the speech) a batch at a time as they are decoded, so memory does not grow with the "
                        "video's length. Same frames as Lmk2Video Sampler + Video Combine. The file appears under "
                        "its name only when complete; a cancelled run leaves nothing behind.",
            inputs=sampler_inputs() + video_file_inputs("Frames per second; with 'landmarks' it must be theirs "
                                                        "(AniPortrait: 30)."),
            outputs=[video_file_output()],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True)

    @classmethod
    def execute(cls, models, reference: EncodedReference, steps, cfg, seed, context_frames, context_overlap,
                window_blend, loop, fps, format, filename_prefix, save_output, pose_images=None, landmarks=None,
                audio=None, speed="default") -> io.NodeOutput:
        if landmarks is not None and not same_fps(landmarks.fps, fps, WIDGET_FPS_TOLERANCE):
            raise ValueError(f"AniPortrait: the landmarks are at {landmarks.fps:g} fps but 'fps' is {fps:g}; the "
                             "lips would drift from the speech. Connect the same fps to both.")
        poses, settings = prepare_sampling(models, reference, pose_images, landmarks, steps, cfg, seed,
                                           context_frames, context_overlap, window_blend, loop)
        container = FORMATS[format]
        track = audio_track(audio) if audio is not None else None
        path, subfolder, folder_type = output_file(filename_prefix, save_output, reference.width, reference.height,
                                                   f".{container}")
        with VideoWriter(path, poses.num_frames, reference.width, reference.height, fps, track, container,
                         workflow_metadata(cls.hidden)) as writer:
            sample(models, reference, poses, settings, speed, lambda frames: writer.write(images_to_uint8(frames)))
        return saved_video(writer.result, subfolder, folder_type, "Lmk2Video Sampler to Video File")


NODES = [LoadLmk2VideoModels, ReferenceNetEncode, Lmk2VideoSampler, Lmk2VideoSamplerToFile]
