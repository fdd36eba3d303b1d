"""The Lmk2Video hyper-parameters that AniPortrait reads from its inference config (``inference_v2.yaml``) rather than
from the checkpoints: the motion modules' layout (``unet_additional_kwargs``), the DDIM schedule
(``noise_scheduler_kwargs``) and the PoseGuider's inner attention width (the class defaults the original builds
with). Every default is the released model's value; ``Lmk2VideoConfig.from_dict`` reads a mapping laid out like
``inference_v2.yaml`` (optionally with a ``pose_guider`` section), so another model's config needs no code change.

What the checkpoints and the SD1.5 ``unet/config.json`` determine (channel widths, block layout, spatial attention
heads, PoseGuider width, audio model sizes) is read from those files by the loaders, not set here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .scheduler import DDIMConfig

# inference_v2.yaml values that select code paths this port does not implement; any other value is refused
_FIXED_UNET_KWARGS = {"use_inflated_groupnorm": True, "unet_use_cross_frame_attention": False,
                      "unet_use_temporal_attention": False, "use_motion_module": True, "motion_module_type": "Vanilla"}
# motion-module kwargs without effect at inference: initialisation only, and cross-frame attention (must be null)
_INERT_MOTION_KWARGS = ("zero_initialize", "cross_frame_attention_mode")
TEMPORAL_SELF_ATTENTION = "Temporal_Self"


class ConfigError(ValueError):
    """A config value this port cannot honour; the message names the source and the key."""


@dataclass(frozen=True)
class MotionModuleConfig:
    """``unet_additional_kwargs.motion_module_kwargs`` (AnimateDiff "Vanilla" temporal transformer)."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_blocks: int = 2                       # "Temporal_Self" entries of attention_block_types
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 32    # the longest context window the position table covers
    temporal_attention_dim_div: int = 1

    def head_dim(self, channels: int) -> int:
        """The original's ``in_channels // num_attention_heads // temporal_attention_dim_div`` (floored)."""
        return channels // self.num_attention_heads // self.temporal_attention_dim_div

    @property
    def max_frames(self) -> int | None:
        """Longest window the modules accept (None: no position table, no limit)."""
        return self.temporal_position_encoding_max_len if self.temporal_position_encoding else None


@dataclass(frozen=True)
class UNet3DConfig:
    """``unet_additional_kwargs``: where the denoising UNet has motion modules, and what they are."""

    motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8)
    motion_module_mid_block: bool = True
    motion_module_decoder_only: bool = False
    motion_module: MotionModuleConfig = field(default_factory=MotionModuleConfig)

    def has_motion_module(self, stage: str, index: int) -> bool:
        """Whether block ``index`` of ``stage`` ("down", "mid", "up") gets motion modules. The original counts the
        resolution of down block i as 2**i and of up block i as 2**(3-i) (written for SD1.5's four blocks)."""
        if stage == "mid":
            return self.motion_module_mid_block
        if stage == "down":
            return not self.motion_module_decoder_only and 2 ** index in self.motion_module_resolutions
        return 2 ** (3 - index) in self.motion_module_resolutions


@dataclass(frozen=True)
class PoseGuiderConfig:
    """The PoseGuider's inner transformers: ``heads`` x ``head_dim`` (the original's class defaults, 16 x 88; not
    recoverable from the weights, which only fix their product)."""

    heads: int = 16
    head_dim: int = 88


@dataclass(frozen=True)
class Lmk2VideoConfig:
    unet: UNet3DConfig = field(default_factory=UNet3DConfig)
    pose_guider: PoseGuiderConfig = field(default_factory=PoseGuiderConfig)
    scheduler: DDIMConfig = field(default_factory=DDIMConfig)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], source: str = "inference config") -> "Lmk2VideoConfig":
        """From ``{"unet_additional_kwargs": ..., "noise_scheduler_kwargs": ..., "pose_guider": ...}`` (each
        section optional: missing sections and keys keep the released values). Other top-level keys are ignored
        (inference_v2.yaml also names the sampler and training switches)."""
        guider = dict(config.get("pose_guider") or {})
        return cls(unet=unet3d_config(config.get("unet_additional_kwargs") or {}, source),
                   pose_guider=PoseGuiderConfig(
                       heads=_positive(guider, "transformer_num_attention_heads", PoseGuiderConfig.heads, source),
                       head_dim=_positive(guider, "transformer_attention_head_dim", PoseGuiderConfig.head_dim,
                                          source)),
                   scheduler=DDIMConfig.from_kwargs(config.get("noise_scheduler_kwargs") or {}, source))


RELEASED_CONFIG = Lmk2VideoConfig()


def _positive(section: Mapping[str, Any], key: str, default: int, source: str) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{source}: {key} must be a positive integer, got {value!r}.")
    return value


def unet3d_config(kwargs: Mapping[str, Any], source: str = "inference config") -> UNet3DConfig:
    """``unet_additional_kwargs`` -> UNet3DConfig; values selecting unimplemented variants are refused."""
    for key, allowed in _FIXED_UNET_KWARGS.items():
        if key in kwargs and kwargs[key] != allowed:
            raise ConfigError(f"{source}: unet_additional_kwargs.{key}={kwargs[key]!r} is not supported (only "
                              f"{allowed!r}, as AniPortrait's inference_v2.yaml).")
    known = set(_FIXED_UNET_KWARGS) | {"motion_module_resolutions", "motion_module_mid_block",
                                       "motion_module_decoder_only", "motion_module_kwargs"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown unet_additional_kwargs {unknown}.")
    defaults = UNet3DConfig()
    resolutions = tuple(int(r) for r in kwargs.get("motion_module_resolutions", defaults.motion_module_resolutions))
    return UNet3DConfig(
        motion_module_resolutions=resolutions,
        motion_module_mid_block=bool(kwargs.get("motion_module_mid_block", defaults.motion_module_mid_block)),
        motion_module_decoder_only=bool(kwargs.get("motion_module_decoder_only",
                                                   defaults.motion_module_decoder_only)),
        motion_module=motion_module_config(kwargs.get("motion_module_kwargs") or {}, source))


def motion_module_config(kwargs: Mapping[str, Any], source: str = "inference config") -> MotionModuleConfig:
    prefix = f"{source}: unet_additional_kwargs.motion_module_kwargs"
    defaults = MotionModuleConfig()
    known = {"num_attention_heads", "num_transformer_block", "attention_block_types", "temporal_position_encoding",
             "temporal_position_encoding_max_len", "temporal_attention_dim_div", *_INERT_MOTION_KWARGS}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(f"{prefix}: unknown keys {unknown}.")
    if kwargs.get("cross_frame_attention_mode") is not None:
        raise ConfigError(f"{prefix}.cross_frame_attention_mode must be null (not implemented).")
    block_types = list(kwargs.get("attention_block_types", [TEMPORAL_SELF_ATTENTION] * defaults.attention_blocks))
    if not block_types or any(kind != TEMPORAL_SELF_ATTENTION for kind in block_types):
        raise ConfigError(f"{prefix}.attention_block_types={block_types!r}: only {TEMPORAL_SELF_ATTENTION!r} "
                          "blocks are implemented.")
    return MotionModuleConfig(
        num_attention_heads=_positive(kwargs, "num_attention_heads", defaults.num_attention_heads, prefix),
        num_transformer_block=_positive(kwargs, "num_transformer_block", defaults.num_transformer_block, prefix),
        attention_blocks=len(block_types),
        temporal_position_encoding=bool(kwargs.get("temporal_position_encoding",
                                                   defaults.temporal_position_encoding)),
        temporal_position_encoding_max_len=_positive(kwargs, "temporal_position_encoding_max_len",
                                                     defaults.temporal_position_encoding_max_len, prefix),
        temporal_attention_dim_div=_positive(kwargs, "temporal_attention_dim_div",
                                             defaults.temporal_attention_dim_div, prefix))
