"""Model files from a golden set's tiny random-weight checkpoints (``<set>/tiny``, in the released files' layout and
formats), for the benchmarks, the tests and smoke runs: a models folder ComfyUI can be pointed at, the video
networks' file set with the set's own inference config, and a TorchScript stand-in for FILM."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from .registry import MODEL_FILES
from .video.config import Lmk2VideoConfig
from .video.pipeline import VideoModelFiles


@functools.cache
def tiny_lmk2video_config(golden: Path) -> Lmk2VideoConfig:
    """``tiny/tiny_config.json``: the inference config the tiny networks were built with, read by the pack's own
    config reader (so every set's values reach the networks, never a value known to one set)."""
    path = golden / "tiny" / "tiny_config.json"
    return Lmk2VideoConfig.from_dict(json.loads(path.read_text()), source=str(path))


def tiny_video_files(golden: Path) -> VideoModelFiles:
    tiny = golden / "tiny"
    return VideoModelFiles(
        denoising_unet=tiny / "denoising_unet.pth", reference_unet=tiny / "reference_unet.pth",
        motion_module=tiny / "motion_module.pth", pose_guider=tiny / "pose_guider.pth",
        unet_config=tiny / "stable-diffusion-v1-5" / "unet" / "config.json", vae=tiny / "sd-vae-ft-mse",
        image_encoder=tiny / "image_encoder", config=tiny_lmk2video_config(golden))


class CrossFade(torch.nn.Module):
    """FILM's call signature ``model(x0, x1, batch_dt) -> frame``, computing a plain cross-fade."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))  # a parameter, so dtype and device follow .to()

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, batch_dt: torch.Tensor) -> torch.Tensor:
        dt = batch_dt.reshape(-1, 1, 1, 1).to(x0.dtype)
        return self.gain * ((1 - dt) * x0 + dt * x1)


def write_film_stand_in(path: Path) -> Path:
    """A tiny TorchScript stand-in for ``film_net_fp16.pt`` at ``path``."""
    torch.jit.script(CrossFade()).save(str(path))
    return path


def build_models_dir(target: Path, golden: Path, assets: Path, film: Path | None = None) -> Path:
    """``target`` with a link to every entry of ``golden/tiny`` (already in the layout of AniPortrait's
    pretrained_weights/) and to ``assets/<face landmarker task>``. FILM goes in under its released name: a link to
    ``film`` (a TorchScript stand-in, e.g. golden-wide's ``tiny/film_tiny.pt``) when that exists, else a generated
    cross-fade stand-in (golden/tiny has no FILM file). Returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    landmarker = assets / MODEL_FILES["face_landmarker"].relpath
    sources = sorted((golden / "tiny").iterdir()) + [landmarker]
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: point ANIPORTRAIT_SHARED at the shared test data")
        (target / source.name).symlink_to(source.resolve(), target_is_directory=source.is_dir())
    film_target = target / MODEL_FILES["film"].relpath
    if not film_target.exists():
        if film is not None and film.is_file():
            film_target.symlink_to(film.resolve())
        else:
            write_film_stand_in(film_target)
    return target
