"""One process-wide cache of loaded models, so the same weights are never loaded twice.

Keys name what was loaded (files with their modification times, dtype, device, options); values are whatever
the loader returned. Inside ComfyUI the values are ``ModelPatcher`` wrappers so ComfyUI's memory manager can
offload them (see ``nodes/common.py``); outside ComfyUI (tests, benchmarks) they are plain modules.
"""
from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

import psutil

# host memory the cache leaves free for the work itself (decoded frames, audio, other nodes) before it lets go of
# idle models
HOST_MEMORY_RESERVE = 4 * 2 ** 30


def file_identity(path: Path | str) -> tuple[str, int, int]:
    """A key part that changes when the file (or a folder's files) is replaced on disk."""
    path = Path(path)
    try:
        if path.is_dir():
            stats = [f.stat() for f in sorted(path.rglob("*")) if f.is_file()]
            return str(path.resolve()), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"AniPortrait: the file {path} is gone (removed or renamed since it was selected). "
                                "Put it back, or select it again (press R to refresh the lists), and run "
                                "again.") from None
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def available_host_memory() -> int:
    return psutil.virtual_memory().available


class ModelCache:
    """Models by key, least recently used first. Under host-memory pressure the cache lets go of idle entries (the
    host says which are idle, e.g. those ComfyUI has offloaded from the GPU) instead of keeping them until /free."""

    def __init__(self, available: Callable[[], int] = available_host_memory,
                 reserve: int = HOST_MEMORY_RESERVE) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.available = available
        self.reserve = reserve
        self.is_idle: Callable[[Hashable], bool] = lambda key: True

    def get(self, key: Hashable, load: Callable[[], Any], size_hint: int = 0) -> Any:
        """The cached value for ``key``, loading it with ``load()`` on first use (after making room for about
        ``size_hint`` bytes)."""
        with self._lock:
            if key not in self._entries:
                self.release_idle(size_hint)
                self._entries[key] = load()
            self._entries.move_to_end(key)
            return self._entries[key]

    def release_idle(self, needed: int = 0) -> int:
        """Forget idle entries, least recently used first, while less than ``needed`` + the reserve bytes of host
        memory are available. Returns how many were forgotten."""
        count = 0
        with self._lock:
            for key in [key for key in self._entries if self.is_idle(key)]:
                if self.available() >= needed + self.reserve:
                    break
                del self._entries[key]
                gc.collect()  # the memory comes back only once the model's reference cycles are gone
                count += 1
        return count

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def clear(self) -> int:
        """Forget every model (the memory is freed once nothing else holds them). Returns how many."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


MODEL_CACHE = ModelCache()
