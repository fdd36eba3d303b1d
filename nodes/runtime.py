"""What the sampler takes from the running ComfyUI: its memory manager, attention kernel, VAE precision, previews.

The library (``aniportrait/``) runs on plain torch; these adapters hand it ComfyUI's versions of the same things, so the
pack honours the host's command line (``--reserve-vram``, ``--use-sage-attention``, ``--fp32-vae``,
``--preview-method``...) like a core sampler does.
"""
from __future__ import annotations

import logging
from typing import Any, Hashable, Iterable

import torch

import comfy.latent_formats
import comfy.model_management as mm
import comfy.utils
import latent_preview
from comfy.cli_args import args

from ..aniportrait.cache import MODEL_CACHE
from ..aniportrait.video.memory import DeviceMemory, is_out_of_memory
from ..aniportrait.video.memory_plan import MEMORY_HEADROOM

log = logging.getLogger("aniportrait")


def _comfy_budget(device: torch.device) -> int:
    return int(mm.get_free_memory(device) * MEMORY_HEADROOM)


def _comfy_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, mm.OOM_EXCEPTION) or is_out_of_memory(error)


def comfy_device_memory() -> DeviceMemory:
    """The sampler's budget from ComfyUI's free-memory probe, ComfyUI's OOM type, and its cache release."""
    return DeviceMemory(budget=_comfy_budget, is_out_of_memory=_comfy_out_of_memory, release=mm.soft_empty_cache)


def comfy_attention() -> Any:
    """ComfyUI's attention kernel (sage, xformers, flash, split or SDPA per its command line), same signature as
    ``aniportrait.video.attention.sdpa_attention``."""
    from comfy.ldm.modules.attention import optimized_attention
    return optimized_attention


def vae_dtype(precision: str, dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The VAE's dtype: ``--fp16-vae``/``--bf16-vae``/``--fp32-vae`` win; otherwise an explicit precision applies to
    the VAE too, and ``auto`` runs it in the UNet's half precision where ComfyUI would (else float32)."""
    if args.fp16_vae or args.bf16_vae or args.fp32_vae or precision == "auto":
        return mm.vae_dtype(device, [dtype])
    return dtype


class SamplerProgress:
    """The sampler node's progress bar (UNet windows, then decoded frames) with a preview of the current
    prediction of the middle frame, drawn by ComfyUI's previewer for SD1.5 latents (``--preview-method``: a
    latent->RGB projection, or TAESD when installed; none by default)."""

    def __init__(self, device: torch.device) -> None:
        self.bar = comfy.utils.ProgressBar(1)
        self.previewer = latent_preview.get_previewer(device, comfy.latent_formats.SD15())
        self.done, self.total = 0, 1

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.bar.update_absolute(done, total)

    def preview(self, clean_latents: torch.Tensor) -> None:
        """``clean_latents`` (1, 4, F, h, w): the x0 prediction of the last DDIM step (of one frame or more)."""
        if self.previewer is None:
            return
        middle = clean_latents[:, :, clean_latents.shape[2] // 2].float()
        self.bar.update_absolute(self.done, self.total, self.previewer.decode_latent_to_preview_image("JPEG", middle))


_keys_in_use: set[Hashable] = set()


def mark_in_use(keys: Iterable[Hashable]) -> None:
    """The cache entries the running node asks for; everything else may go under memory pressure."""
    _keys_in_use.clear()
    _keys_in_use.update(keys)


def install_memory_hooks() -> None:
    """Our cache follows ComfyUI's memory manager: whenever ComfyUI frees memory for a load, idle cached models
    (offloaded copies included) are forgotten too if host memory runs short; ``unload_all_models`` (POST /free)
    forgets them all."""
    MODEL_CACHE.is_idle = lambda key: key not in _keys_in_use
    _wrap(mm, "free_memory", lambda: MODEL_CACHE.release_idle())
    _wrap(mm, "unload_all_models", MODEL_CACHE.clear)


def _wrap(module: Any, name: str, after: Any) -> None:
    original = getattr(module, name)
    if getattr(original, "_aniportrait_hook", False):
        return

    def wrapped(*call_args: Any, **kwargs: Any) -> Any:
        result = original(*call_args, **kwargs)
        count = after()
        if count:
            log.info("AniPortrait: freed %d cached model(s) (%s)", count, name)
        return result

    wrapped._aniportrait_hook = True
    setattr(module, name, wrapped)
