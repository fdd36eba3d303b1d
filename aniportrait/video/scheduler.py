"""Deterministic DDIM scheduler (the noise schedule and its step), numerically as diffusers 0.24's DDIMScheduler
(docs/pipeline.md#scheduler).

Configured like the original, from ``noise_scheduler_kwargs`` (``DDIMConfig.from_kwargs``); the defaults are
inference_v2.yaml's: linear betas 0.00085..0.012 over 1000 steps, zero-terminal-SNR rescale, v-prediction,
"trailing" timestep spacing, ``set_alpha_to_one`` (the step after the last uses ᾱ = 1), eta 0. Kept as our own
small class so a diffusers upgrade can never change the noise schedule under us. The arithmetic mirrors
diffusers' expression by expression (0-dim float32 scalars times sample tensors), so float16 latents round
exactly as in the original.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch

BETA_SCHEDULES = ("linear", "scaled_linear")
PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")
# DDIMScheduler arguments whose only accepted value is the default (other values select unimplemented paths)
_DEFAULT_ONLY = {"trained_betas": None, "thresholding": False}
# DDIMScheduler arguments read only by the thresholding path, which is refused above
_THRESHOLDING_ONLY = ("dynamic_thresholding_ratio", "sample_max_value")


@dataclass(frozen=True)
class DDIMConfig:
    """diffusers ``DDIMScheduler`` arguments. Defaults = what the released model runs with: inference_v2.yaml's
    ``noise_scheduler_kwargs``, and diffusers' defaults for the arguments the yaml does not set (the last three)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    # "linear" although training used "scaled_linear": the released inference config says linear (docs/departures.md#b7)
    beta_schedule: str = "linear"
    rescale_betas_zero_snr: bool = True
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"
    steps_offset: int = 1
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("beta_schedule", BETA_SCHEDULES), ("prediction_type", PREDICTION_TYPES),
                              ("timestep_spacing", TIMESTEP_SPACINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"DDIM {name}={getattr(self, name)!r} is not supported; use one of {allowed}.")
        if self.num_train_timesteps < 1:
            raise ValueError(f"DDIM num_train_timesteps must be positive, got {self.num_train_timesteps}.")

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], source: str = "noise_scheduler_kwargs") -> "DDIMConfig":
        """From DDIMScheduler keyword arguments (e.g. inference_v2.yaml's ``noise_scheduler_kwargs``)."""
        names = {f.name for f in fields(cls)}
        for key, allowed in _DEFAULT_ONLY.items():
            if kwargs.get(key, allowed) != allowed:
                raise ValueError(f"{source}: {key}={kwargs[key]!r} is not supported (only {allowed!r}).")
        unknown = sorted(set(kwargs) - names - set(_DEFAULT_ONLY) - set(_THRESHOLDING_ONLY))
        if unknown:
            raise ValueError(f"{source}: unknown DDIMScheduler arguments {unknown}.")
        try:
            return cls(**{key: value for key, value in kwargs.items() if key in names})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from exc


def _betas(config: DDIMConfig) -> torch.Tensor:
    if config.beta_schedule == "scaled_linear":
        return torch.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, config.num_train_timesteps,
                              dtype=torch.float32) ** 2
    return torch.linspace(config.beta_start, config.beta_end, config.num_train_timesteps, dtype=torch.float32)


def _rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale √ᾱ so that the last timestep has exactly zero signal (Lin et al. 2023, Alg. 1)."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first = alphas_bar_sqrt[0].clone()
    last = alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt ** 2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


class DDIMScheduler:
    """DDIM with eta 0. ``set_timesteps(n)`` then ``step(model_output, t, x)`` for each ``t`` in ``timesteps``."""

    def __init__(self, config: DDIMConfig = DDIMConfig()) -> None:
        self.config = config
        betas = _betas(config)
        if config.rescale_betas_zero_snr:
            betas = _rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.final_alpha_cumprod = torch.tensor(1.0) if config.set_alpha_to_one else self.alphas_cumprod[0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps = 0
        self.timesteps = torch.zeros(0, dtype=torch.int64)

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """diffusers' spacings; trailing (AniPortrait): round(arange(1000, 0, -1000/n)) - 1, e.g. 25 steps -> 999,
        959, ..., 39."""
        train_steps = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= train_steps:
            raise ValueError(f"steps must be between 1 and {train_steps}, got {num_inference_steps}.")
        self.num_inference_steps = num_inference_steps
        spacing = self.config.timestep_spacing
        if spacing == "trailing":
            points = torch.arange(train_steps, 0, -train_steps / num_inference_steps, dtype=torch.float64)
            self.timesteps = points.round().to(torch.int64) - 1
        elif spacing == "leading":
            ratio = train_steps // num_inference_steps
            self.timesteps = torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.int64) * ratio \
                + self.config.steps_offset
        else:  # linspace
            points = np.linspace(0, train_steps - 1, num_inference_steps).round()[::-1]  # numpy, as diffusers
            self.timesteps = torch.from_numpy(points.astype(np.int64))
        return self.timesteps

    def previous_timestep(self, timestep: int) -> int:
        # diffusers 0.24 steps back by 1000 // n even with trailing spacing (666 -> 333, not the listed 332)
        return timestep - self.config.num_train_timesteps // self.num_inference_steps

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One deterministic DDIM step. Returns ``(prev_sample, pred_original_sample)``."""
        if self.num_inference_steps == 0:
            raise RuntimeError("call set_timesteps() before step()")
        timestep = int(timestep)
        prev_timestep = self.previous_timestep(timestep)
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        prediction = self.config.prediction_type
        if prediction == "v_prediction":
            pred_original_sample = (alpha_prod_t ** 0.5) * sample - (beta_prod_t ** 0.5) * model_output
            pred_epsilon = (alpha_prod_t ** 0.5) * model_output + (beta_prod_t ** 0.5) * sample
        elif prediction == "epsilon":
            pred_original_sample = (sample - beta_prod_t ** 0.5 * model_output) / alpha_prod_t ** 0.5
            pred_epsilon = model_output
        else:  # sample
            pred_original_sample = model_output
            pred_epsilon = (sample - alpha_prod_t ** 0.5 * pred_original_sample) / beta_prod_t ** 0.5
        if self.config.clip_sample:
            limit = self.config.clip_sample_range
            pred_original_sample = pred_original_sample.clamp(-limit, limit)
        pred_sample_direction = (1 - alpha_prod_t_prev) ** 0.5 * pred_epsilon
        prev_sample = alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction
        return prev_sample, pred_original_sample
