"""Golden cases: cases_video."""
from __future__ import annotations

CASES: dict = {}
