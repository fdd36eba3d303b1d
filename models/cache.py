"""One process-wide cache of loaded models, so the same weights are never loaded twice.

Keys name what was loaded (files with their modification times, dtype, device, options); values are whatever
the loader returned. Inside ComfyUI the values are ``ModelPatcher`` wrappers so ComfyUI's memory manager can
offload them (see ``nodes/common.py``); outside ComfyUI (tests, benchmarks) they are plain modules.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Hashable


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


class ModelCache:
    def __init__(self) -> None:
        self._entries: dict[Hashable, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The cached value for ``key``, loading it with ``load()`` on first use."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = load()
            return self._entries[key]

    def keys(self) -> list[Hashable]:
        return list(self._entries)

    def clear(self) -> int:
        """Forget every model (the memory is freed once nothing else holds them). Returns how many."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


MODEL_CACHE = ModelCache()
