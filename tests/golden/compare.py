"""Comparison records and the tolerance table (from the golden README's suggested tolerances)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Comparison:
    case: str
    array: str
    max_abs_err: float
    tol: float
    passed: bool
    note: str = ""

    def line(self) -> str:
        err = "nan" if np.isnan(self.max_abs_err) else f"{self.max_abs_err:.3g}"
        text = f"{self.case} {self.array} {err} {self.tol:.3g} {'PASS' if self.passed else 'FAIL'}"
        return text + (f"  # {self.note}" if self.note else "")


def compare(case: str, array: str, actual, expected, tol: float, note: str = "") -> Comparison:
    """Max |actual - expected| against ``tol`` (tol 0 means exact). Shapes must agree."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(case, array, float("nan"), tol, False,
                          f"shape {actual.shape} != expected {expected.shape}")
    if actual.size == 0:
        return Comparison(case, array, 0.0, tol, True, note)
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    err = float(np.nanmax(diff)) if not np.isnan(diff).all() else float("nan")
    return Comparison(case, array, err, tol, bool(err <= tol), note)


def failure(case: str, array: str, exc: BaseException) -> Comparison:
    """A case that could not run counts as a failure with the reason."""
    return Comparison(case, array, float("nan"), 0.0, False, f"{type(exc).__name__}: {exc}")
