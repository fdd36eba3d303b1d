"""AnimateDiff-v2 "Vanilla" motion module as AniPortrait uses it (the only layers that mix frames).

Differences from diffusers' ``AnimateDiffTransformer3D`` that matter numerically (docs/pipeline.md#motion-modules): the
GroupNorm normalises each frame separately, and the sinusoidal position table is added to the LayerNorm output of each
temporal self-attention (so it reaches Q, K and V) but not to the residual path.
"""
from __future__ import annotations


import torch
from torch import nn

from ..position_table import sinusoidal_positions
from .layers import TRANSFORMER_NORM_EPS, Attention, FeedForward
from .config import MotionModuleConfig

# GroupNorm of the temporal transformer: hard-coded 32 groups in the original (not a config value)
MOTION_MODULE_NORM_GROUPS = 32


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, dim)[None])  # persistent: it is in motion_module.pth


class TemporalSelfAttention(Attention):
    """Self-attention along the frames of each spatial position (the original's ``VersatileAttention``), with the
    sinusoidal position table when ``max_frames`` is given (``temporal_position_encoding``)."""

    def __init__(self, dim: int, heads: int, head_dim: int, max_frames: int | None):
        super().__init__(dim, heads, head_dim)
        self.pos_encoder = PositionalEncoding(dim, max_frames) if max_frames is not None else None

    def add_to(self, h: torch.Tensor, normed: torch.Tensor, frames: int) -> torch.Tensor:
        """``h + attention(normed)`` for tokens (B*F, L, C) folded b-major."""
        rows, tokens, channels = normed.shape
        batch = rows // frames
        sequences = normed.view(batch, frames, tokens, channels).transpose(1, 2).reshape(-1, frames, channels)
        if self.pos_encoder is not None:
            sequences = sequences + self.pos_encoder.pe[:, :frames]
        out = self(sequences)
        # Add in h's layout (h first: the sum then keeps h's contiguous strides), saving a copy of ``out``.
        summed = h.view(batch, frames, tokens, channels) + out.view(batch, tokens, frames, channels).transpose(1, 2)
        return summed.reshape(rows, tokens, channels)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, head_dim: int, config: MotionModuleConfig):
        super().__init__()
        heads, count = config.num_attention_heads, config.attention_blocks
        self.attention_blocks = nn.ModuleList([TemporalSelfAttention(dim, heads, head_dim, config.max_frames)
                                               for _ in range(count)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(count)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            h = attention.add_to(h, norm(h), frames)
        return self.ff(self.ff_norm(h)) + h


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, channels: int, config: MotionModuleConfig):
        super().__init__()
        head_dim = config.head_dim(channels)
        if head_dim < 1:
            raise ValueError(f"motion module with {channels} channels cannot have {config.num_attention_heads} "
                             f"heads (temporal_attention_dim_div {config.temporal_attention_dim_div}): the head "
                             "width would be 0; check motion_module_kwargs")
        inner = config.num_attention_heads * head_dim  # the channels when the heads divide them
        self.norm = nn.GroupNorm(MOTION_MODULE_NORM_GROUPS, channels, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(inner, head_dim, config)
                                                 for _ in range(config.num_transformer_block)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        rows, channels, height, width = x.shape
        h = self.norm(x).permute(0, 2, 3, 1).reshape(rows, height * width, channels)  # GroupNorm per frame
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, frames)
        h = self.proj_out(h)
        return h.reshape(rows, height, width, channels).permute(0, 3, 1, 2).contiguous() + x


class VanillaTemporalModule(nn.Module):
    """Maps folded frames (B*F, C, h, w) to the same shape; the residual is inside the module."""

    def __init__(self, channels: int, config: MotionModuleConfig = MotionModuleConfig()):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(channels, config)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)
