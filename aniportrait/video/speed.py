"""Opt-in speed settings of the denoising UNet: ``channels_last`` weights and ``torch.compile``.

Both change only float rounding (tests/test_sampler_resources.py: within what batching windows already moves the
video). ``torch.compile`` compiles each down/mid/up block on its own, with static shapes: the sampler then sends
every UNet call the same window-group shape (it pads the last group, ``pipeline._UNetCalls.pad_to``), so nothing
recompiles after the first call; the interrupt check runs between blocks (``progress.COMPILED_UNIT``), never
inside a compiled graph.
The settings are applied to the (shared, cached) module in place and undone by ``apply_speed(unet, ())``.
"""
from __future__ import annotations

import torch

from ..progress import COMPILED_UNIT

SPEED_OPTIONS = ("channels_last", "compile")


def compiled_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


def apply_speed(unet: torch.nn.Module, options: tuple[str, ...] | list[str]) -> None:
    """Put ``unet`` in the state ``options`` ask for (a subset of ``SPEED_OPTIONS``), from whatever state it has."""
    unknown = set(options) - set(SPEED_OPTIONS)
    if unknown:
        raise ValueError(f"unknown speed options {sorted(unknown)}; choose from {SPEED_OPTIONS}.")
    layout = torch.channels_last if "channels_last" in options else torch.contiguous_format
    for module in unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=layout)
    for block in compiled_blocks(unet):
        compiled = getattr(block, COMPILED_UNIT, False)
        if "compile" in options and not compiled:
            # an instance attribute shadows the class's forward; nn.Module.__call__ (and its hooks) stay eager
            block.forward = torch.compile(block.forward, dynamic=False)
            setattr(block, COMPILED_UNIT, True)
        elif "compile" not in options and compiled:
            del block.forward
            setattr(block, COMPILED_UNIT, False)


def is_compiled(unet: torch.nn.Module) -> bool:
    return any(getattr(block, COMPILED_UNIT, False) for block in compiled_blocks(unet))
