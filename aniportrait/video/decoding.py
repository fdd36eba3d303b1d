"""The sampler's VAE decoding: batches that shrink when memory runs out, tiles as the last resort, and float32 for
a batch that overflows in half precision.

Every layer of the decoder works per image, so batch size and tiling change the result only by float rounding
(tiles blend at their seams, a visible but small difference), and the numbers of a healthy half-precision batch are
those of the original's ``decode_latents``. The VAE may run in another dtype than the UNet (ComfyUI's ``--fp32-vae``): each
batch is cast to the VAE's dtype.
"""
from __future__ import annotations

import copy
import logging
import traceback
from functools import partial
from typing import Callable

import torch

from ..checkpoint import device_and_dtype
from ..progress import InterruptCheck, ProgressFn
from .memory import DeviceMemory, run_in_batches
from .streaming import FrameSink
from .vae import LATENT_SCALE, VAE_SCALE_FACTOR

log = logging.getLogger("aniportrait")


class _Decoder:
    """``self(start, stop)`` decodes frames start..stop-1 of ``frames`` (N, 4, h, w) to ``sink``; switches to an
    fp32 copy of the VAE for good once a batch is not finite, and to tiles when asked (``tiled``). An object, not a
    closure, so that a traceback through it does not keep the work tensors alive."""

    def __init__(self, vae: torch.nn.Module, frames: torch.Tensor, sink: FrameSink,
                 check_interrupt: InterruptCheck | None, progress: ProgressFn | None) -> None:
        self.vae, self.frames, self.sink = vae, frames, sink
        self.check_interrupt, self.progress = check_interrupt, progress
        self.tiled = False
        self.decoded = 0  # frames done, from the first

    def __call__(self, start: int, stop: int) -> None:
        if self.check_interrupt:
            self.check_interrupt()
        images = self._decode((1 / LATENT_SCALE * self.frames[start:stop]).contiguous())
        # clamped in the decoder's dtype first, as the original (it casts to float32 on the CPU at the very end)
        self.sink((images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu())
        self.decoded = stop
        if self.progress:
            self.progress(stop, len(self.frames))

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = self._run(latents)
        if not torch.isfinite(images).all() and self._dtype() != torch.float32:
            log.warning("AniPortrait: the VAE's %s decode produced NaN/inf; decoding in float32 from here on "
                        "(choose fp32 precision to skip the retry).", self._dtype())
            self.vae = copy.deepcopy(self.vae).float()
            images = self._run(latents)
        return images

    def _dtype(self) -> torch.dtype:
        return device_and_dtype(self.vae)[1]

    def _run(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self._dtype())
        decode = self.vae.tiled_decode if self.tiled else self.vae.decode
        return decode(latents).sample


@torch.no_grad()
def decode_video(vae: torch.nn.Module, latents: torch.Tensor, frames_per_call: int = 1,
                 memory: DeviceMemory | None = None, check_interrupt: InterruptCheck | None = None,
                 progress: ProgressFn | None = None, sink: FrameSink | None = None) -> torch.Tensor | None:
    """(1, 4, F, h, w) latents -> (F, H, W, 3) float32 RGB in [0, 1] on the CPU, ``frames_per_call`` at a time
    (fewer after running out of memory, tiled when even one frame does not fit). Each batch goes to the CPU as soon
    as it is decoded, so device memory holds one batch of images at most. With ``sink``, each batch goes to it, in
    order, and nothing of the video's size is held (returns None). ``progress(done, F)`` counts decoded frames."""
    memory = memory or DeviceMemory()
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ValueError(f"expected latents (1, 4, F, h, w), got {tuple(latents.shape)}")
    num_frames = latents.shape[2]
    video = None
    if sink is None:
        height, width = latents.shape[3] * VAE_SCALE_FACTOR, latents.shape[4] * VAE_SCALE_FACTOR
        video = torch.empty((num_frames, height, width, 3), dtype=torch.float32)
        sink = _VideoFiller(video)
    decoder = _Decoder(vae, latents[0].transpose(0, 1), sink, check_interrupt, progress)  # frames (F, 4, h, w)
    try:
        run_in_batches(num_frames, max(1, frames_per_call), decoder, memory, "frames per VAE decode")
        return video
    except BaseException as error:
        if not memory.is_out_of_memory(error):
            raise
        traceback.clear_frames(error.__traceback__)
    memory.release()
    log.warning("AniPortrait: one frame does not fit the VAE decoder's memory; decoding the rest in tiles.")
    decoder.tiled = True
    first = decoder.decoded
    run_in_batches(num_frames - first, 1, partial(_shifted, decoder, first), memory, "frames per VAE decode")
    return video


class _VideoFiller:
    """A sink that writes the batches, in order, into one preallocated video tensor."""

    def __init__(self, video: torch.Tensor) -> None:
        self.video, self.filled = video, 0

    def __call__(self, frames: torch.Tensor) -> None:
        self.video[self.filled:self.filled + len(frames)] = frames
        self.filled += len(frames)


def _shifted(run: Callable[[int, int], None], offset: int, start: int, stop: int) -> None:
    run(offset + start, offset + stop)
