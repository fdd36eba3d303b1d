"""The attention kernel every Lmk2Video attention layer calls, and how a host swaps in its own.

The motion modules attend along the frames of every latent pixel, so one UNet call over several context windows
sends (windows x CFG rows x h x w) sequences in one batch: 8 windows with CFG at 512x512 are 2 x 8 x 64 x 64 =
65,536 sequences at the first level, past the 65,535 grid limit of the fused CUDA kernels. ``sdpa_attention``
therefore runs the batch in slices of at most ``BATCH_LIMIT`` sequences (each sequence's result does not depend
on the others, so this changes no number).

Inside ComfyUI the node layer installs ComfyUI's ``optimized_attention`` (``attention_backend``), which honours
``--use-sage-attention``, xformers, flash or split attention and slices its own batches; the library and the tests
use ``sdpa_attention``. Both take and return (B, L, heads*dim) tensors, heads given by keyword.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from ..progress import InterruptCheck

AttentionFn = Callable[..., torch.Tensor]  # (q, k, v, heads=...) -> out, all (B, L, heads*dim)

BATCH_LIMIT = 2 ** 15  # sequences per kernel call; what ComfyUI uses for the same CUDA limit


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` over (B, Lq, heads*dim) queries and (B, Lk, heads*dim) keys/values, in
    slices of at most ``BATCH_LIMIT`` sequences; checks the interrupt between slices."""
    batch, queries, inner = q.shape
    if batch <= BATCH_LIMIT:
        return _sdpa(q, k, v, heads)
    out = torch.empty((batch, queries, inner), dtype=q.dtype, device=q.device)
    for start in range(0, batch, BATCH_LIMIT):
        # inside a compiled graph the check would break the graph; compiled units are checked between them
        if _current.check_interrupt is not None and not torch.compiler.is_compiling():
            _current.check_interrupt()
        rows = slice(start, start + BATCH_LIMIT)
        out[rows] = _sdpa(q[rows], k[rows], v[rows], heads)
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    batch, _, inner = q.shape

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, -1, heads, inner // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v))
    return out.transpose(1, 2).reshape(batch, -1, inner)


class _Current:
    """The installed kernel and interrupt check: plain attributes, not context variables, because torch.compile
    traces attribute reads but not ``ContextVar.get``. ComfyUI runs one prompt at a time, so one setting per
    process is enough."""

    def __init__(self) -> None:
        self.backend: AttentionFn = sdpa_attention
        self.check_interrupt: InterruptCheck | None = None


_current = _Current()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention through the current backend (``sdpa_attention`` unless a host installed another)."""
    return _current.backend(q, k, v, heads=heads)


@contextmanager
def attention_backend(function: AttentionFn | None = None,
                      check_interrupt: InterruptCheck | None = None) -> Iterator[None]:
    """Run the enclosed model calls with ``function`` as the attention kernel (None: keep the current one) and
    ``check_interrupt`` called between the slices of a split batch."""
    before = _current.backend, _current.check_interrupt
    _current.backend, _current.check_interrupt = function or before[0], check_interrupt
    try:
        yield
    finally:
        _current.backend, _current.check_interrupt = before
