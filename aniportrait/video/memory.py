"""How the sampler learns its memory budget and recovers when a batch does not fit.

The plan (``memory_plan``) picks batch sizes from an estimate; estimates can be wrong (other processes, allocator
fragmentation, another attention kernel), so every batched stage runs through ``run_in_batches``: out of memory
frees what was allocated, halves the batch and retries the batch that failed, and later rounds keep the smaller
size. The library's ``DeviceMemory`` asks torch directly; inside ComfyUI the node layer gives ComfyUI's own (its
free-memory probe honours ``--reserve-vram`` and works on MPS/XPU, its OOM type and cache release).
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from .memory_plan import free_device_memory

log = logging.getLogger("aniportrait")


def is_out_of_memory(error: BaseException) -> bool:
    """A device allocation failure (CUDA, or a host allocation that the CPU allocator refused)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def release_cached_memory() -> None:
    """Hand the allocator's cached blocks back, so a retry (or another process) can have them."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class DeviceMemory:
    budget: Callable[[torch.device], int] = free_device_memory   # bytes a plan may use now on a device
    is_out_of_memory: Callable[[BaseException], bool] = is_out_of_memory
    release: Callable[[], None] = release_cached_memory


def run_in_batches(count: int, per_call: int, run: Callable[[int, int], None], memory: DeviceMemory,
                   what: str) -> int:
    """``run(start, stop)`` over ``range(count)`` in batches of ``per_call``. Out of memory frees the work memory,
    halves ``per_call`` and runs the failed batch again; a batch of one that does not fit re-raises. ``run`` must
    leave no partial result behind when it fails. Returns the batch size that worked, for the next rounds."""
    start = 0
    while start < count:
        stop = min(start + per_call, count)
        out_of_memory = False
        try:
            run(start, stop)
        except BaseException as error:
            if per_call == 1 or not memory.is_out_of_memory(error):
                raise
            # the frames of the traceback hold the failed batch's tensors: drop them before freeing
            traceback.clear_frames(error.__traceback__)
            out_of_memory = True
        if out_of_memory:
            memory.release()
            per_call = max(1, per_call // 2)
            log.warning("AniPortrait: out of memory; retrying with %d %s.", per_call, what)
            continue
        start = stop
    return per_call
