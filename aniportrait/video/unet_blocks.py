"""The SD1.5 UNet skeleton both AniPortrait UNets share: config parsing, down/mid/up blocks, and the block walk.

The reference UNet is this skeleton as is; the denoising UNet3D adds a motion module after every layer of every
block (AnimateDiff), the PoseGuider features at the stage inputs, and the output layers. Both run on frames folded
into the batch (the reference UNet with one frame), so one set of blocks serves both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .layers import (BasicTransformerBlock, Downsample, ReferenceAttention, ResnetBlock, SpatialTransformer,
                     TimestepEmbedding, Upsample, timestep_features)

# config key -> the only value AniPortrait's UNets (and this port) implement; checked when the key is present
_FIXED_SETTINGS = {
    "act_fn": "silu", "center_input_sample": False, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "use_linear_projection": False, "upcast_attention": False, "only_cross_attention": False,
    "dual_cross_attention": False, "class_embed_type": None, "addition_embed_type": None,
    "num_class_embeds": None, "encoder_hid_dim": None, "time_cond_proj_dim": None, "timestep_post_act": None,
    "time_embedding_type": "positional", "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "transformer_layers_per_block": 1,
    "conv_in_kernel": 3, "conv_out_kernel": 3,
}
_DOWN_TYPES = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}  # block type -> has spatial transformers
_UP_TYPES = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    down_attention: tuple[bool, ...]
    up_attention: tuple[bool, ...]
    layers_per_block: int
    # attention heads per down block (SD1.5's "attention_head_dim" 8 means 8 heads); each head is
    # channels // heads wide, as diffusers builds it, also when the heads do not divide the channels
    heads: tuple[int, ...]
    cross_attention_dim: int
    norm_num_groups: int
    norm_eps: float
    flip_sin_to_cos: bool
    freq_shift: float

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_out_channels[0]


def unet_config_from_dict(config: dict, source: str = "UNet config") -> UNetConfig:
    """Validated UNetConfig from a diffusers ``UNet2DConditionModel`` config; errors name ``source``."""
    def fail(problem: str) -> ValueError:
        return ValueError(f"{source}: {problem}. AniPortrait needs Stable Diffusion 1.5's unet/config.json "
                          "(stable-diffusion-v1-5/unet/config.json); select or download that file.")

    for key, allowed in _FIXED_SETTINGS.items():
        value = config.get(key, allowed)
        if not (value == allowed or (isinstance(value, list) and all(v == allowed for v in value))):
            raise fail(f"unsupported {key}={value!r} (expected {allowed!r})")
    for key in ("block_out_channels", "layers_per_block", "cross_attention_dim", "down_block_types", "up_block_types"):
        if key not in config:
            raise fail(f"missing '{key}'")
    channels = tuple(int(c) for c in config["block_out_channels"])
    down_types, up_types = list(config["down_block_types"]), list(config["up_block_types"])
    if not len(channels) == len(down_types) == len(up_types):
        raise fail("block_out_channels, down_block_types and up_block_types differ in length")
    unknown = [t for t in down_types if t not in _DOWN_TYPES] + [t for t in up_types if t not in _UP_TYPES]
    if unknown:
        raise fail(f"unsupported block types {unknown}")
    if not isinstance(config["layers_per_block"], int) or not isinstance(config["cross_attention_dim"], int):
        raise fail("layers_per_block and cross_attention_dim must be integers")
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    heads = tuple(heads) if isinstance(heads, (list, tuple)) else (int(heads),) * len(channels)
    if len(heads) != len(channels) or not all(1 <= int(h) <= c for c, h in zip(channels, heads)):
        raise fail(f"attention heads {heads} do not fit block_out_channels {channels} (one count per block, "
                   "at most the block's channels)")
    return UNetConfig(
        in_channels=int(config.get("in_channels", 4)), out_channels=int(config.get("out_channels", 4)),
        block_out_channels=channels, down_attention=tuple(_DOWN_TYPES[t] for t in down_types),
        up_attention=tuple(_UP_TYPES[t] for t in up_types), layers_per_block=config["layers_per_block"],
        heads=heads, cross_attention_dim=config["cross_attention_dim"],
        norm_num_groups=int(config.get("norm_num_groups", 32)), norm_eps=float(config.get("norm_eps", 1e-5)),
        flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)), freq_shift=float(config.get("freq_shift", 0)))


@dataclass
class BlockInputs:
    """What every block needs besides the hidden states of one UNet forward."""

    time_emb: torch.Tensor             # (B, time_embed_dim)
    context: torch.Tensor              # (B, L, D) cross-attention context, shared by the frames of each element
    frames: int                        # frames folded into the batch: hidden states are (B * frames, C, h, w)
    reference: ReferenceAttention | None


MotionModuleFactory = Callable[[int], nn.Module]  # channels -> module mapping (B*F, C, h, w) to itself
# (stage "down" / "mid" / "up", block index) -> the factory of that block's motion modules, or None for none
MotionModulePlan = Callable[[str, int], MotionModuleFactory | None]


class _Stage(nn.Module):
    """Shared by the down/mid/up blocks: after resnet i come spatial transformer i and motion module i, if any."""

    def _add_layers(self, channels: int, count: int, config: UNetConfig, heads: int, with_attention: bool,
                    motion_module: MotionModuleFactory | None) -> None:
        self.attentions = nn.ModuleList([
            SpatialTransformer(channels, heads, channels // heads, config.cross_attention_dim, config.norm_num_groups)
            for _ in range(count)]) if with_attention else None
        self.motion_modules = nn.ModuleList([
            motion_module(channels) for _ in range(count)]) if motion_module is not None else None

    def _after_resnet(self, index: int, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        if self.attentions is not None:
            x = self.attentions[index](x, inputs.context, inputs.frames, inputs.reference)
        if self.motion_modules is not None:
            x = self.motion_modules[index](x, inputs.frames)
        return x


def _resnet(in_channels: int, out_channels: int, config: UNetConfig) -> ResnetBlock:
    return ResnetBlock(in_channels, out_channels, config.time_embed_dim, config.norm_num_groups, config.norm_eps)


class DownBlock(_Stage):
    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, heads: int, with_attention: bool,
                 add_downsample: bool, motion_module: MotionModuleFactory | None):
        super().__init__()
        count = config.layers_per_block
        self.resnets = nn.ModuleList([_resnet(in_channels if i == 0 else out_channels, out_channels, config)
                                      for i in range(count)])
        self._add_layers(out_channels, count, config, heads, with_attention, motion_module)
        self.downsamplers = nn.ModuleList([Downsample(out_channels)]) if add_downsample else None

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for index, resnet in enumerate(self.resnets):
            x = self._after_resnet(index, resnet(x, inputs.time_emb), inputs)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(_Stage):
    def __init__(self, channels: int, config: UNetConfig, heads: int, motion_module: MotionModuleFactory | None):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(channels, channels, config) for _ in range(2)])
        self._add_layers(channels, 1, config, heads, True, motion_module)

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        x = self.resnets[0](x, inputs.time_emb)
        return self.resnets[1](self._after_resnet(0, x, inputs), inputs.time_emb)


class UpBlock(_Stage):
    def __init__(self, in_channels: int, prev_out_channels: int, out_channels: int, config: UNetConfig, heads: int,
                 with_attention: bool, add_upsample: bool, motion_module: MotionModuleFactory | None):
        super().__init__()
        count = config.layers_per_block + 1
        self.resnets = nn.ModuleList([
            _resnet((prev_out_channels if i == 0 else out_channels) + (in_channels if i == count - 1 else out_channels),
                    out_channels, config) for i in range(count)])
        self._add_layers(out_channels, count, config, heads, with_attention, motion_module)
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], inputs: BlockInputs,
                upsample_size: Sequence[int] | None) -> torch.Tensor:
        """``skips``: this block's skip tensors in the order the down path produced them (consumed last first)."""
        for index, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1 - index]], dim=1), inputs.time_emb)
            x = self._after_resnet(index, x, inputs)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, tuple(upsample_size))
        return x


class UNetBackbone(nn.Module):
    """``conv_in``, ``time_embedding``, ``down_blocks``, ``up_blocks``, ``mid_block`` of an SD1.5-style UNet."""

    def __init__(self, config: UNetConfig, motion_modules: MotionModulePlan | None = None):
        super().__init__()
        plan = motion_modules or (lambda stage, index: None)
        self.config = config
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], config.time_embed_dim)
        last = len(channels) - 1
        self.down_blocks = nn.ModuleList([
            DownBlock(channels[max(i - 1, 0)], channels[i], config, config.heads[i], config.down_attention[i],
                      add_downsample=i < last, motion_module=plan("down", i)) for i in range(len(channels))])
        up_channels, up_heads = channels[::-1], config.heads[::-1]
        self.up_blocks = nn.ModuleList([
            UpBlock(up_channels[min(i + 1, last)], up_channels[max(i - 1, 0)], up_channels[i], config, up_heads[i],
                    config.up_attention[i], add_upsample=i < last, motion_module=plan("up", i))
            for i in range(len(channels))])
        # Registered after up_blocks, as in the original (only the state-dict order depends on it).
        self.mid_block = MidBlock(channels[-1], config, config.heads[-1], plan("mid", 0))
        # Reference-bank entries pair writer and reader blocks by their qualified name (as the original's sorted
        # pairing ends up doing); motion-module blocks are another class and take no part.
        names = []
        for name, module in self.named_modules():
            if isinstance(module, BasicTransformerBlock):
                module.bank_name = name
                names.append(name)
        self.bank_names = tuple(names)

    def embed_time(self, timestep: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
        """(batch, time_embed_dim) embedding of a scalar or (batch,) timestep, in ``like``'s dtype and device."""
        timesteps = torch.as_tensor(timestep, device=like.device).reshape(-1).expand(batch)
        features = timestep_features(timesteps, self.config.block_out_channels[0], self.config.flip_sin_to_cos,
                                     self.config.freq_shift)
        return self.time_embedding(features.to(like.dtype))

    def run_blocks(self, sample: torch.Tensor, inputs: BlockInputs,
                   stage_features: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """``conv_in`` through the last up block. ``stage_features[0]`` is added after ``conv_in`` (before it becomes
        the first skip) and ``stage_features[k]`` to the output of down block k-1, not to its skips."""
        x = self.conv_in(sample)
        if stage_features:
            x = x + stage_features[0]
        skips = [x]
        for index, block in enumerate(self.down_blocks):
            x, block_skips = block(x, inputs)
            skips.extend(block_skips)
            if stage_features:
                x = x + stage_features[index + 1]
        x = self.mid_block(x, inputs)
        for block in self.up_blocks:
            count = len(block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            x = block(x, block_skips, inputs, upsample_size=skips[-1].shape[-2:] if skips else None)
        return x
