"""Golden cases: cases_audio."""
from __future__ import annotations

CASES: dict = {}
