"""audio nodes."""
from __future__ import annotations

NODES: list = []
