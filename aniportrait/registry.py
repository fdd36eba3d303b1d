"""Every model file the pack uses: where it lives under ``models/aniportrait/`` and where it comes from.

The layout under the models folder is the one of AniPortrait's ``pretrained_weights/`` folder, so a copy
of that folder works as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

ANIPORTRAIT_REPO = "ZJYang/AniPortrait"
MODELS_FOLDER_NAME = "aniportrait"  # ComfyUI/models/<this>: the pack's model folder (a ComfyUI folder_paths name)
PACK_FOLDER_NAME = "ComfyUI-AniPortrait-Kit"  # the pack's folder under custom_nodes/ (registry, templates, tests)
# ANIPORTRAIT_FACE_LANDMARKER_URL replaces the download address of the MediaPipe file (a mirror; the download
# tests point it at a local server). Hub files follow HF_ENDPOINT instead.
MEDIAPIPE_FACE_LANDMARKER_URL = os.environ.get(
    "ANIPORTRAIT_FACE_LANDMARKER_URL",
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task")


@dataclass(frozen=True)
class ModelFile:
    """One model: a single file, or a folder of files (``parts``) as the hub keeps it."""

    name: str                    # key used in code and in error messages
    relpath: str                 # place under the models folder (a file, or a folder when ``parts``)
    purpose: str
    size: str                    # approximate download size, for humans
    hf_repo: str | None = None   # Hugging Face repository holding it
    hf_subfolder: str = ""       # folder inside that repository
    parts: tuple[str, ...] = ()  # files of a folder model (relative to ``relpath``)
    url: str | None = None       # direct download for files that are not on the hub

    @property
    def is_folder(self) -> bool:
        return bool(self.parts)

    @property
    def source(self) -> str:
        if self.url:
            return self.url
        sub = f"/tree/main/{self.hf_subfolder}" if self.hf_subfolder else ""
        return f"https://huggingface.co/{self.hf_repo}{sub}"


def _aniportrait(name: str, filename: str, purpose: str, size: str) -> ModelFile:
    return ModelFile(name, filename, purpose, size, hf_repo=ANIPORTRAIT_REPO)


MODEL_FILES: dict[str, ModelFile] = {m.name: m for m in (
    _aniportrait("audio2mesh", "audio2mesh.pt", "speech -> per-frame face-mesh offsets", "≈ 382 MB"),
    _aniportrait("audio2pose", "audio2pose.pt", "speech -> head pose", "≈ 481 MB"),
    _aniportrait("denoising_unet", "denoising_unet.pth", "video denoising UNet (spatial part)", "≈ 3.4 GB"),
    _aniportrait("reference_unet", "reference_unet.pth", "ReferenceNet (reference image UNet)", "≈ 3.4 GB"),
    _aniportrait("pose_guider", "pose_guider.pth", "PoseGuider (pose image encoder)", "≈ 670 MB"),
    _aniportrait("motion_module", "motion_module.pth", "temporal motion modules", "≈ 1.8 GB"),
    _aniportrait("film", "film_net_fp16.pt", "FILM frame interpolation (TorchScript; only for the fi_step speed-up)",
                 "≈ 70 MB"),
    ModelFile("sd15_unet_config", "stable-diffusion-v1-5/unet/config.json",
              "UNet architecture (config only; every weight comes from the files above)", "1 KB",
              hf_repo="stable-diffusion-v1-5/stable-diffusion-v1-5", hf_subfolder="unet"),
    ModelFile("vae", "sd-vae-ft-mse", "image <-> latent autoencoder", "≈ 335 MB",
              hf_repo="stabilityai/sd-vae-ft-mse", parts=("config.json", "diffusion_pytorch_model.safetensors")),
    ModelFile("image_encoder", "image_encoder", "CLIP image encoder (reference embedding)", "≈ 1.2 GB",
              hf_repo="lambdalabs/sd-image-variations-diffusers", hf_subfolder="image_encoder",
              parts=("config.json", "pytorch_model.bin")),
    ModelFile("wav2vec2", "wav2vec2-base-960h", "speech feature encoder", "≈ 378 MB",
              hf_repo="facebook/wav2vec2-base-960h",
              parts=("config.json", "preprocessor_config.json", "pytorch_model.bin")),
    ModelFile("face_landmarker", "face_landmarker_v2_with_blendshapes.task",
              "MediaPipe FaceLandmarker (face landmarks, transform, blendshapes)", "≈ 3.6 MB",
              url=MEDIAPIPE_FACE_LANDMARKER_URL),
)}

# Which models each stage's loader node selects (the UI tests count its missing-model badge against these).
AUDIO2MESH_MODELS = ("audio2mesh", "wav2vec2")
AUDIO2POSE_MODELS = ("audio2pose", "wav2vec2")
FACE_MODELS = ("face_landmarker",)
VIDEO_MODELS = ("denoising_unet", "reference_unet", "pose_guider", "motion_module", "sd15_unet_config",
                "vae", "image_encoder")
FILM_MODELS = ("film",)
