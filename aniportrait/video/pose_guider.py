"""AniPortrait's PoseGuider (docs/pipeline.md#poseguider): pose images -> 5 multi-scale features added to the denoising
UNet's stage inputs (after ``conv_in`` and after each down block).

Two facts of the original are reproduced on purpose:
* BatchNorm always normalises with the statistics of the current call (the original never calls ``.eval()`` on
  it), never with the stored running statistics, and never updates them. The original's batch is one context
  window, CFG-duplicated (the duplicate changes neither mean nor variance). So call the PoseGuider once per context
  window, with B=1, and repeat its features for the CFG halves; a call on several windows at once would pool their
  statistics and give different features.
* The "cross-attention" blocks have no cross-attention (``attn2`` is None), so the reference pose image the
  original also passes in has no effect on the output; that input is dropped here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import SpatialTransformer
from .config import PoseGuiderConfig


class BatchStatisticsNorm2d(nn.BatchNorm2d):
    """BatchNorm2d in training-mode arithmetic regardless of ``.eval()``; running statistics are kept only so the
    checkpoint loads strictly, and are neither used nor updated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, momentum=0.0, eps=self.eps)


def _conv_norm_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=1),
            BatchStatisticsNorm2d(out_channels), nn.ReLU()]


class PoseGuider(nn.Module):
    def __init__(self, noise_latent_channels: int = 320, num_heads: int = PoseGuiderConfig.heads,
                 head_dim: int = PoseGuiderConfig.head_dim, use_ca: bool = True):
        """``num_heads`` x ``head_dim``: width of the inner transformers (``PoseGuiderConfig``), which
        exist only with ``use_ca`` (the original's switch; on in the released model)."""
        super().__init__()
        c = noise_latent_channels
        self.conv_layers = nn.Sequential(
            *_conv_norm_relu(3, 3), *_conv_norm_relu(3, 16, kernel=4, stride=2),
            *_conv_norm_relu(16, 16), *_conv_norm_relu(16, 32, kernel=4, stride=2),
            *_conv_norm_relu(32, 32), *_conv_norm_relu(32, 64, kernel=4, stride=2),
            *_conv_norm_relu(64, 64), *_conv_norm_relu(64, 128))
        self.final_proj = nn.Conv2d(128, c, 1)
        self.conv_layers_1 = nn.Sequential(*_conv_norm_relu(c, c), *_conv_norm_relu(c, c, stride=2))
        self.conv_layers_2 = nn.Sequential(*_conv_norm_relu(c, c), *_conv_norm_relu(c, 2 * c, stride=2))
        self.conv_layers_3 = nn.Sequential(*_conv_norm_relu(2 * c, 2 * c), *_conv_norm_relu(2 * c, 4 * c, stride=2))
        self.conv_layers_4 = nn.Sequential(*_conv_norm_relu(4 * c, 4 * c))
        if use_ca:
            self.cross_attn1, self.cross_attn2, self.cross_attn3, self.cross_attn4 = (
                SpatialTransformer(width, num_heads, head_dim, cross_attention_dim=None)
                for width in (c, 2 * c, 4 * c, 4 * c))
        else:
            self.cross_attn1 = self.cross_attn2 = self.cross_attn3 = self.cross_attn4 = nn.Identity()
        self.scale = nn.Parameter(torch.full((1,), 2.0))

    def forward(self, pose: torch.Tensor) -> list[torch.Tensor]:
        """Features of pose frames (B, 3, F, H, W), given in the original's value range (``2 * v - 1`` of the raw
        uint8 values v, i.e. [-1, 509], channels in drawing order): (B, C, F, H/8, W/8), (B, C, F, H/16, W/16),
        (B, 2C, F, H/32, W/32), (B, 4C, F, H/64, W/64) twice (H/64 etc. rounded up). Returned as views of
        frame-folded tensors, which the UNet folds back for free."""
        batch, _, frames, height, width = pose.shape
        x = pose.transpose(1, 2).reshape(batch * frames, 3, height, width)  # contiguous (b f) fold, as the original
        x = self.final_proj(self.conv_layers(x)) * self.scale
        features = [x]
        for convs, attention in ((self.conv_layers_1, self.cross_attn1), (self.conv_layers_2, self.cross_attn2),
                                 (self.conv_layers_3, self.cross_attn3), (self.conv_layers_4, self.cross_attn4)):
            x = attention(convs(x))
            features.append(x)
        return [f.view(batch, frames, *f.shape[1:]).transpose(1, 2) for f in features]


def smallest_feature_size(width: int, height: int) -> tuple[int, int]:
    """Width and height of the PoseGuider's deepest feature map for width x height pose images: three 4x4 stride-2
    convolutions (padding 1: floor(n / 2)), then three 3x3 stride-2 ones (padding 1: ceil(n / 2))."""
    def shrink(n: int) -> int:
        for _ in range(3):
            n //= 2
        for _ in range(3):
            n = -(-n // 2)
        return n
    return shrink(width), shrink(height)


def check_window_statistics(window_frames: int, width: int, height: int) -> None:
    """Refuse a context window whose batch statistics would rest on one value per channel.

    BatchNorm normalises with the statistics of the call (see above): with one value the variance is zero and the
    normalised pose features are erased (PyTorch refuses it outright; the original fails the same way). That
    happens for a window of one frame at sizes whose deepest map is 1x1 (both sides below 72 px).
    """
    map_width, map_height = smallest_feature_size(width, height)
    if window_frames * map_width * map_height <= 1:
        raise ValueError(
            f"AniPortrait: a context window of {window_frames} frame(s) at {width}x{height} leaves the PoseGuider "
            f"{window_frames * map_width * map_height} value(s) per channel for its batch statistics, which need "
            "more than one. Give the sampler at least 2 pose frames (e.g. longer audio or video) with "
            "context_frames of 2 or more, or make the video at least 72 px wide or high.")
