"""Golden cases: cases_face."""
from __future__ import annotations

CASES: dict = {}
