"""AniPortrait's denoising UNet3D: SD1.5 UNet per frame + AnimateDiff motion modules + PoseGuider features +
reference attention (docs/pipeline.md#denoising-unet).

Built as the original's ``UNet3DConditionModel.from_pretrained_2d`` with ``unet_additional_kwargs`` (``UNet3DConfig``;
inference_v2.yaml: motion modules after every layer of all down blocks, the mid block and all up blocks); inflated
(per-frame) GroupNorm everywhere.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ReferenceAttention
from .config import UNet3DConfig
from .motion_module import VanillaTemporalModule
from .unet_blocks import BlockInputs, MotionModuleFactory, UNetBackbone, UNetConfig


class UNet3DConditionModel(UNetBackbone):
    def __init__(self, config: UNetConfig, settings: UNet3DConfig = UNet3DConfig()):
        def motion_modules(stage: str, index: int) -> MotionModuleFactory | None:
            if not settings.has_motion_module(stage, index):
                return None
            return lambda channels: VanillaTemporalModule(channels, settings.motion_module)

        super().__init__(config, motion_modules)
        self.settings = settings
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, config.block_out_channels[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(config.block_out_channels[0], config.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                pose_features: Sequence[torch.Tensor], reference_bank: dict[str, torch.Tensor] | None = None,
                reference_mask: torch.Tensor | Sequence[bool] | None = None) -> torch.Tensor:
        """Model output (B, 4, F, h, w) for latents ``sample`` (B, 4, F, h, w).

        The batch may hold several context windows and both CFG halves at once; batch elements never mix.
        ``encoder_hidden_states`` (B, L, D) is shared by the frames of each element. ``pose_features``: the
        PoseGuider's 5 features (B, C_k, F, h_k, w_k). ``reference_bank``: the ReferenceUNet bank of ONE
        reference, tensors (1, L, C) in the dtype to compute with (see ``round_bank_like_original``).
        ``reference_mask`` (B,) bool: elements whose self-attention also attends to the bank (the original's
        conditional half) or not (its unconditional half); None = all, when a bank is given. Give it as a CPU
        tensor or a list: it is read on the host.
        """
        batch, _, frames = sample.shape[:3]
        max_frames = self.settings.motion_module.max_frames
        if max_frames is not None and frames > max_frames:
            raise ValueError(f"a context window of {frames} frames is longer than the motion modules' position "
                             f"table ({max_frames}); use context windows of at most that many frames")
        if len(pose_features) != len(self.down_blocks) + 1:
            raise ValueError(f"expected {len(self.down_blocks) + 1} PoseGuider features, got {len(pose_features)}")
        for feature in pose_features:
            if feature.shape[0] != batch or feature.shape[2] != frames:
                raise ValueError(f"PoseGuider feature of shape {tuple(feature.shape)} does not match the latents' "
                                 f"batch {batch} and frames {frames}")
        inputs = BlockInputs(time_emb=self.embed_time(timestep, batch, like=sample),
                             context=encoder_hidden_states, frames=frames,
                             reference=self._reference_reader(reference_bank, reference_mask, batch, frames))
        x = self.run_blocks(_fold(sample), inputs, [_fold(feature) for feature in pose_features])
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x.view(batch, frames, *x.shape[1:]).transpose(1, 2).contiguous()

    def _reference_reader(self, bank: dict[str, torch.Tensor] | None, mask: torch.Tensor | Sequence[bool] | None,
                          batch: int, frames: int) -> ReferenceAttention | None:
        flags = [True] * batch if mask is None else [bool(m) for m in (
            mask.tolist() if isinstance(mask, torch.Tensor) else mask)]
        if bank is None:
            if mask is not None and any(flags):
                raise ValueError("reference_mask asks for reference attention but no reference_bank was given")
            return None
        if len(flags) != batch:
            raise ValueError(f"reference_mask has {len(flags)} entries for a batch of {batch}")
        if not any(flags):
            return None
        missing = [name for name in self.bank_names if name not in bank]
        if missing:
            raise ValueError(f"reference bank lacks entries for {missing[:3]}...: it must come from the "
                             "ReferenceUNet built from the same UNet config")
        for name, tokens in bank.items():
            if tokens.ndim != 3 or tokens.shape[0] != 1:
                raise ValueError(f"reference bank entry {name} has shape {tuple(tokens.shape)}; expected (1, L, C): "
                                 "the bank of one reference image")
        return ReferenceAttention(bank=bank, row_groups=_row_groups(flags, frames))


def _row_groups(flags: Sequence[bool], frames: int) -> tuple[tuple[slice, bool], ...]:
    """Runs of batch elements with equal flags -> (slice of their folded rows, flag): one attention call per run."""
    groups, start = [], 0
    for index in range(1, len(flags) + 1):
        if index == len(flags) or flags[index] != flags[start]:
            groups.append((slice(start * frames, index * frames), flags[start]))
            start = index
    return tuple(groups)


def _fold(video: torch.Tensor) -> torch.Tensor:
    """(B, C, F, h, w) -> (B*F, C, h, w), b-major; free when ``video`` is an unfolded view of folded frames."""
    batch, channels, frames, height, width = video.shape
    return video.transpose(1, 2).reshape(batch * frames, channels, height, width)
