"""The sampler's frames, a batch at a time, straight to where they go (a video file) instead of one whole-video
tensor: at 512² a float32 frame is 3 MB, so a few minutes of video held at once would exhaust the host."""
from __future__ import annotations

from typing import Callable

import torch

# float32 (n, H, W, 3) RGB frames in [0, 1] on the CPU, in order; called once per decode batch
FrameSink = Callable[[torch.Tensor], None]

