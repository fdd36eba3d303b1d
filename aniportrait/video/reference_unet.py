"""AniPortrait's ReferenceNet (docs/pipeline.md#referencenet): an SD1.5 UNet without ``conv_norm_out``/``conv_out`` that
is run once per generation, at timestep 0, on the reference image latent; what is kept is the "bank": the ``norm1``
output of every spatial transformer block, which the denoising UNet's self-attentions then also attend to.
"""
from __future__ import annotations

import torch

from .layers import ReferenceAttention
from .unet_blocks import BlockInputs, UNetBackbone, UNetConfig


class ReferenceUNet(UNetBackbone):
    def __init__(self, config: UNetConfig):
        super().__init__(config)

    def forward(self, latent: torch.Tensor, encoder_hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        """Bank {qualified block name: (B, h_l*w_l, C_l)} of reference latents (B, 4, h, w) with context (B, L, D).

        The original ran the CFG batch [zero context, image context] and read only the second element; running the
        conditional element alone (B=1) gives that element (up to GEMM-batch float effects).
        """
        writer = ReferenceAttention(write=True)
        inputs = BlockInputs(time_emb=self.embed_time(0, latent.shape[0], like=latent),
                             context=encoder_hidden_states, frames=1, reference=writer)
        # The final up-block output is never used (the original has no output layers); the full walk costs one
        # block's attention and feed-forward more than stopping at the last bank entry, once per generation.
        self.run_blocks(latent, inputs)
        return writer.bank


def round_bank_like_original(bank: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The bank with its values rounded through float16, kept in their dtype: the original copies the bank to the
    reader as float16 even in float32 runs (docs/departures.md#b8), and float32 attention then promotes those values
    back."""
    return {name: tokens.to(torch.float16).to(tokens.dtype) for name, tokens in bank.items()}
