"""A tiny TorchScript stand-in for FILM (``film_net_fp16.pt``), for a tests' models folder when the shared data has
none: the released call signature ``model(x0, x1, batch_dt) -> frame``, computing a plain cross-fade."""
from __future__ import annotations

from pathlib import Path

import torch


class CrossFade(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))  # a parameter, so dtype and device follow .to()

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, batch_dt: torch.Tensor) -> torch.Tensor:
        dt = batch_dt.reshape(-1, 1, 1, 1).to(x0.dtype)
        return self.gain * ((1 - dt) * x0 + dt * x1)


def write_film_stand_in(path: Path) -> Path:
    torch.jit.script(CrossFade()).save(str(path))
    return path
