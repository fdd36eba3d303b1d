"""The callbacks long-running stages accept, so ComfyUI (or a script) can show progress and cancel the work."""
from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[int, int], None]  # (done, total)
InterruptCheck = Callable[[], None]      # raises to stop the work between model calls
