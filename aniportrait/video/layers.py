"""Layers shared by the Lmk2Video networks (both UNets, the motion modules, the PoseGuider).

Plain-PyTorch restatements of the diffusers 0.24 layers AniPortrait was built from, with the same attribute names
(so the released state dicts load unchanged) and the same operation order (so results agree to float rounding).
Attention runs through ``attention.attention``: ``F.scaled_dot_product_attention`` (what diffusers' default
processor ``AttnProcessor2_0`` called in the original) unless the host installed its own kernel.

Video tensors travel with their frames folded into the batch, b-major: row ``b * frames + f`` is frame ``f`` of
batch element ``b``, as the original's ``rearrange("b c f h w -> (b f) c h w")``. Per-frame layers therefore see
ordinary image batches; only the motion modules mix frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention

# GroupNorm epsilon of diffusers' Transformer2DModel (and the PoseGuider's copy of it), independent of the UNet's.
TRANSFORMER_NORM_EPS = 1e-6


def timestep_features(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """Sinusoidal features (N, dim) of timesteps (N,) in float32, as diffusers' ``get_timestep_embedding``."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    angles = timesteps[:, None].float() * torch.exp(exponent / (half - freq_shift))[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


@dataclass
class ReferenceAttention:
    """What the spatial self-attentions do with the reference "bank" during one UNet forward.

    ``write`` (reference UNet): every spatial transformer block stores its ``norm1`` output in ``bank`` under its
    qualified module name. Otherwise (denoising UNet) ``bank`` maps those names to (1, L, C) reference tokens, and
    ``row_groups`` lists runs of folded rows with whether their self-attention also attends to the bank.
    """

    bank: dict[str, torch.Tensor] = field(default_factory=dict)
    write: bool = False
    row_groups: tuple[tuple[slice, bool], ...] = ()


class Attention(nn.Module):
    """diffusers ``Attention``: bias-free Q/K/V projections, output projection with bias, scale 1/sqrt(head_dim)."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim)])  # index 0 as in the original (1 was a dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        return self.to_out[0](self.attend(self.to_q(x), self.to_k(context), self.to_v(context)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of projected (N, Lq, inner) queries over (N, Lk, inner) keys/values."""
        return attention(q, k, v, self.heads)

    def attend_with_reference(self, x: torch.Tensor, reference_tokens: torch.Tensor,
                              row_groups: tuple[tuple[slice, bool], ...]) -> torch.Tensor:
        """Self-attention whose keys/values are each row's own tokens followed by the (1, L, C) reference tokens,
        for the row groups flagged True; plain self-attention for the others (the original's CFG-uncond rows)."""
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        # The reference tokens are the same for every row: project them once, not once per frame.
        reference_k, reference_v = self.to_k(reference_tokens), self.to_v(reference_tokens)
        outputs = []
        for rows, with_reference in row_groups:
            rows_q, rows_k, rows_v = q[rows], k[rows], v[rows]
            if with_reference:
                count = rows_q.shape[0]
                rows_k = torch.cat([rows_k, reference_k.expand(count, -1, -1)], dim=1)
                rows_v = torch.cat([rows_v, reference_v.expand(count, -1, -1)], dim=1)
            outputs.append(self.attend(rows_q, rows_k, rows_v))
        return self.to_out[0](outputs[0] if len(outputs) == 1 else torch.cat(outputs))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """diffusers ``FeedForward(activation_fn="geglu")``: GEGLU to 4x width, then a linear back."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # Index 1 held a dropout (p=0) in the original; the placeholder keeps the checkpoint key ``net.2``.
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Self-attention, optional cross-attention, feed-forward (pre-LayerNorm, residual each), with the reference
    bank hook of AniPortrait's ``ReferenceAttentionControl`` built in (see ``ReferenceAttention``)."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int | None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        if cross_attention_dim is None:
            self.norm2 = self.attn2 = None
        else:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, head_dim, cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.bank_name = ""  # qualified module name, set by the owning UNet; pairs writer and reader blocks

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None, frames: int = 1,
                reference: ReferenceAttention | None = None) -> torch.Tensor:
        h = self._self_attention(self.norm1(h), reference) + h
        if self.attn2 is not None:
            h = self._cross_attention(h, context, frames)
        return self.ff(self.norm3(h)) + h

    def _self_attention(self, normed: torch.Tensor, reference: ReferenceAttention | None) -> torch.Tensor:
        if reference is None:
            return self.attn1(normed)
        if reference.write:
            reference.bank[self.bank_name] = normed
            return self.attn1(normed)
        return self.attn1.attend_with_reference(normed, reference.bank[self.bank_name], reference.row_groups)

    def _cross_attention(self, h: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """``h + attn2(norm2(h), context)`` with context (B, L, D) shared by the ``frames`` rows of each element."""
        if context.shape[1] == 1:
            # Softmax over a single key is exactly 1, so every query receives that key's projected value: the
            # result does not depend on the query (no norm2/to_q/to_k needed) nor on the frame.
            value = self.attn2.to_out[0](self.attn2.to_v(context))
            return (h.reshape(context.shape[0], -1, h.shape[-1]) + value).reshape(h.shape)
        if frames > 1:
            context = context.repeat_interleave(frames, dim=0)
        return self.attn2(self.norm2(h), context) + h


class SpatialTransformer(nn.Module):
    """diffusers ``Transformer2DModel`` (GroupNorm, 1x1-conv projections, one block, residual), per image/frame."""

    def __init__(self, channels: int, heads: int, head_dim: int, cross_attention_dim: int | None,
                 norm_groups: int = 32):
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(norm_groups, channels, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, head_dim, cross_attention_dim)])
        self.proj_out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, frames: int = 1,
                reference: ReferenceAttention | None = None) -> torch.Tensor:
        n, _, height, width = x.shape
        h = self.proj_in(self.norm(x))
        inner = h.shape[1]
        h = h.permute(0, 2, 3, 1).reshape(n, height * width, inner)
        h = self.transformer_blocks[0](h, context, frames, reference)
        # contiguous() as in the original: a channels-last input would send the conv down another kernel.
        h = h.reshape(n, height, width, inner).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(h) + x


class ResnetBlock(nn.Module):
    """diffusers ``ResnetBlock2D`` ("default" time-embedding norm, output scale 1) over folded frames: the time
    embedding of batch element b is added to all of its frames, as the original's ResnetBlock3D."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))
        h = (h.reshape(t.shape[0], -1, *h.shape[1:]) + t[:, None, :, None, None]).reshape(h.shape)
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Nearest to ``size`` (the matching skip's size: 2x, or 2x-1 after an odd size was halved), then conv."""
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
