"""The tiny models of a golden set: ``tiny/tiny_config.json`` is the inference config they were built with, read by
the pack's own config reader (so every set's values reach the networks, never a value known to one set)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from aniportrait.video.config import Lmk2VideoConfig


@functools.cache
def tiny_lmk2video_config(golden: Path) -> Lmk2VideoConfig:
    path = golden / "tiny" / "tiny_config.json"
    return Lmk2VideoConfig.from_dict(json.loads(path.read_text()), source=str(path))
