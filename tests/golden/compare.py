"""Comparison records: the pack's array against the original's, with an absolute and an optional relative tolerance.

Tolerances live next to the cases that use them, each with the measurement it comes from: exact for integer/uint8
results and for elementwise IEEE arithmetic; float tolerances about 10x the largest variation measured, where
"measured" = max |pack - golden| over both public sets (made on two different machines) run three ways here:
2 threads AVX-512; 1 thread with ATen, oneDNN and MKL limited to AVX2; 2 threads without SIMD
(``ATEN_CPU_CAPABILITY=default``, oneDNN SSE4.1, MKL SSE4.2); and "README" = the golden README's own 1-vs-2-thread
deviation of the original code.
"""
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
    rtol: float = 0.0  # also allowed: rtol * |expected|, element by element

    def line(self) -> str:
        err = "nan" if np.isnan(self.max_abs_err) else f"{self.max_abs_err:.3g}"
        tol = f"{self.tol:.3g}" + (f"+{self.rtol:.3g}*|expected|" if self.rtol else "")
        text = f"{self.case} {self.array} {err} {tol} {'PASS' if self.passed else 'FAIL'}"
        return text + (f"  # {self.note}" if self.note else "")


def compare(case: str, array: str, actual, expected, tol: float, note: str = "", rtol: float = 0.0) -> Comparison:
    """Passes when shapes agree and every ``|actual - expected| <= tol + rtol * |expected|`` (tol 0 and rtol 0:
    exact). A NaN or infinity in ``actual`` fails unless ``expected`` has the same value at that place."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return Comparison(case, array, float("nan"), tol, False, f"shape {actual.shape} != expected {expected.shape}",
                          rtol)
    if actual.size == 0:
        return Comparison(case, array, 0.0, tol, True, note, rtol)
    actual64, expected64 = actual.astype(np.float64), expected.astype(np.float64)
    same_special = (actual64 == expected64) | (np.isnan(actual64) & np.isnan(expected64))
    finite = np.isfinite(actual64) & np.isfinite(expected64)
    diff = np.where(finite, np.abs(actual64 - expected64), np.where(same_special, 0.0, np.inf))
    err = float(diff.max())
    unexpected = int((~finite & ~same_special).sum())
    if unexpected:
        note = f"{unexpected} NaN/inf values where the original has none" + (f"; {note}" if note else "")
        err = float("nan")
    passed = not unexpected and bool((diff <= tol + rtol * np.abs(np.where(finite, expected64, 0.0))).all())
    return Comparison(case, array, err, tol, passed, note, rtol)


def failure(case: str, array: str, exc: BaseException) -> Comparison:
    """A case that could not run counts as a failure with the reason."""
    return Comparison(case, array, float("nan"), 0.0, False, f"{type(exc).__name__}: {exc}")
