"""Golden cases: cases_reenactment."""
from __future__ import annotations

CASES: dict = {}
