"""The transformer sine/cosine position table, as both AniPortrait's audio2pose (``PPE``) and AnimateDiff's motion
module build it (their ``pe`` buffers are stored in the checkpoints; longer sequences continue the formula)."""
from __future__ import annotations

import math

import torch


def sinusoidal_positions(length: int, width: int, start: int = 0) -> torch.Tensor:
    """``[length, width]`` float32 rows ``start..start+length-1``: sin at even, cos at odd channels, frequencies
    10000^(-2i/width)."""
    position = torch.arange(start, start + length, dtype=torch.float).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2).float() * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table
