"""AnimateDiff-v2 "Vanilla" motion module as AniPortrait uses it (the only layers that mix frames).

Differences from diffusers' ``AnimateDiffTransformer3D`` that matter numerically (spec §15/§16): the GroupNorm
normalises each frame separately, and the sinusoidal position table is added to the LayerNorm output of each of
the two temporal self-attentions (so it reaches Q, K and V) but not to the residual path.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import TRANSFORMER_NORM_EPS, Attention, FeedForward

MOTION_MODULE_HEADS = 8       # inference_v2.yaml motion_module_kwargs.num_attention_heads
MOTION_MODULE_MAX_FRAMES = 32  # temporal_position_encoding_max_len: the longest context window the table covers
MOTION_MODULE_NORM_GROUPS = 32


def sinusoidal_positions(max_len: int, dim: int) -> torch.Tensor:
    """(1, max_len, dim) table: sin at even, cos at odd channels, frequencies 10000^(-2i/dim)."""
    position = torch.arange(max_len).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * frequencies)
    table[0, :, 1::2] = torch.cos(position * frequencies)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, dim))  # persistent: it is in motion_module.pth


class TemporalSelfAttention(Attention):
    """Self-attention along the frames of each spatial position (the original's ``VersatileAttention``)."""

    def __init__(self, dim: int, heads: int, max_frames: int):
        super().__init__(dim, heads, dim // heads)
        self.pos_encoder = PositionalEncoding(dim, max_frames)

    def add_to(self, h: torch.Tensor, normed: torch.Tensor, frames: int) -> torch.Tensor:
        """``h + attention(normed)`` for tokens (B*F, L, C) folded b-major."""
        rows, tokens, channels = normed.shape
        batch = rows // frames
        sequences = normed.view(batch, frames, tokens, channels).transpose(1, 2).reshape(-1, frames, channels)
        out = self(sequences + self.pos_encoder.pe[:, :frames])
        # Add in h's layout (h first: the sum then keeps h's contiguous strides), saving a copy of ``out``.
        summed = h.view(batch, frames, tokens, channels) + out.view(batch, tokens, frames, channels).transpose(1, 2)
        return summed.reshape(rows, tokens, channels)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_frames: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalSelfAttention(dim, heads, max_frames) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            h = attention.add_to(h, norm(h), frames)
        return self.ff(self.ff_norm(h)) + h


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, channels: int, heads: int, max_frames: int):
        super().__init__()
        self.norm = nn.GroupNorm(MOTION_MODULE_NORM_GROUPS, channels, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_frames)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        rows, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(rows, height * width, channels)  # GroupNorm per frame
        h = self.proj_out(self.transformer_blocks[0](self.proj_in(h), frames))
        return h.reshape(rows, height, width, channels).permute(0, 3, 1, 2).contiguous() + x


class VanillaTemporalModule(nn.Module):
    """Maps folded frames (B*F, C, h, w) to the same shape; the residual is inside the module."""

    def __init__(self, channels: int, heads: int = MOTION_MODULE_HEADS, max_frames: int = MOTION_MODULE_MAX_FRAMES):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(channels, heads, max_frames)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)
