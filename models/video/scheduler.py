"""Deterministic DDIM sampler, numerically as diffusers 0.24's DDIMScheduler with AniPortrait's config (spec §10.1).

inference_v2.yaml: linear betas 0.00085..0.012 over 1000 steps, zero-terminal-SNR rescale, v-prediction,
"trailing" timestep spacing, ``set_alpha_to_one`` (the step after the last uses ᾱ = 1), eta 0. Kept as our own
small class so a diffusers upgrade can never change the noise schedule under us. The arithmetic mirrors
diffusers' expression by expression (0-dim float32 scalars times sample tensors), so float16 latents round
exactly as in the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DDIMConfig:
    num_train_timesteps: int = 1000
    # betas spaced "linear" although training used "scaled_linear": the released inference config says linear (B7)
    beta_start: float = 0.00085
    beta_end: float = 0.012
    rescale_betas_zero_snr: bool = True


def _linear_betas(config: DDIMConfig) -> torch.Tensor:
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


class DDIMSampler:
    """v-prediction DDIM with eta 0. ``set_timesteps(n)`` then ``step(v, t, x)`` for each ``t`` in ``timesteps``."""

    def __init__(self, config: DDIMConfig = DDIMConfig()) -> None:
        self.config = config
        betas = _linear_betas(config)
        if config.rescale_betas_zero_snr:
            betas = _rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.final_alpha_cumprod = torch.tensor(1.0)  # set_alpha_to_one
        self.init_noise_sigma = 1.0
        self.num_inference_steps = 0
        self.timesteps = torch.zeros(0, dtype=torch.int64)

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Trailing spacing: round(arange(1000, 0, -1000/n)) - 1, e.g. 25 steps -> 999, 959, ..., 39."""
        train_steps = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= train_steps:
            raise ValueError(f"steps must be between 1 and {train_steps}, got {num_inference_steps}.")
        self.num_inference_steps = num_inference_steps
        spacing = torch.arange(train_steps, 0, -train_steps / num_inference_steps, dtype=torch.float64)
        self.timesteps = spacing.round().to(torch.int64) - 1
        return self.timesteps

    def previous_timestep(self, timestep: int) -> int:
        # diffusers 0.24 steps back by 1000 // n even with trailing spacing (666 -> 333, not the listed 332)
        return timestep - self.config.num_train_timesteps // self.num_inference_steps

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One deterministic DDIM step from a v-prediction. Returns ``(prev_sample, pred_original_sample)``."""
        if self.num_inference_steps == 0:
            raise RuntimeError("call set_timesteps() before step()")
        timestep = int(timestep)
        prev_timestep = self.previous_timestep(timestep)
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = self.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        pred_original_sample = (alpha_prod_t ** 0.5) * sample - (beta_prod_t ** 0.5) * model_output
        pred_epsilon = (alpha_prod_t ** 0.5) * model_output + (beta_prod_t ** 0.5) * sample
        pred_sample_direction = (1 - alpha_prod_t_prev) ** 0.5 * pred_epsilon
        prev_sample = alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction
        return prev_sample, pred_original_sample
