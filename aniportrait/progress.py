"""The callbacks long-running stages accept, so ComfyUI (or a script) can show progress and cancel the work."""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # torch only for annotations: the download script and animate.sh --help run without it
    import torch

ProgressFn = Callable[[int, int], None]  # (done, total)
InterruptCheck = Callable[[], None]      # raises to stop the work (between model calls, or layers)


@contextmanager
def checking_interrupt(check: InterruptCheck | None, *models: torch.nn.Module) -> Iterator[None]:
    """Inside the block, ``check`` also runs before every layer of ``models`` (not only between model calls), so a
    cancel takes effect within one layer's work however large the batch. A flag read per layer costs nothing next to
    the layer. Layers compiled as a unit (marked ``COMPILED_UNIT``) are checked once, before the unit, so the check
    never breaks their compiled graph."""
    handles = []
    if check is not None:
        hook = lambda module, args: check()  # noqa: E731 (forward pre-hooks get module and inputs)
        for model in models:
            handles += [module.register_forward_pre_hook(hook) for module in _uncompiled_modules(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


COMPILED_UNIT = "_aniportrait_compiled_unit"


def _uncompiled_modules(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    yield model
    if getattr(model, COMPILED_UNIT, False):
        return
    for child in model.children():
        yield from _uncompiled_modules(child)
