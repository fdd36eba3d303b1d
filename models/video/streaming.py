"""The sampler's frames, a batch at a time, straight to where they go (a video file) instead of one whole-video
tensor: at 512² a float32 frame is 3 MB, so a few minutes of video held at once would exhaust the host."""
from __future__ import annotations

from typing import Callable

import torch

# float32 (n, H, W, 3) RGB frames in [0, 1] on the CPU, in order; called once per decode batch
FrameSink = Callable[[torch.Tensor], None]


def decode_to_sink(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, frames_per_call: int,
                   sink: FrameSink) -> None:
    """``decode`` (1, 4, n, h, w) latents -> frames, ``frames_per_call`` frames at a time, each batch to ``sink``.
    The batches are those a whole-video decode makes, so the frames are the same numbers."""
    frames_per_call = max(1, frames_per_call)
    for start in range(0, latents.shape[2], frames_per_call):
        sink(decode(latents[:, :, start:start + frames_per_call]))
