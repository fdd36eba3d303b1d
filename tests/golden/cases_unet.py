"""Golden cases: cases_unet."""
from __future__ import annotations

CASES: dict = {}
