"""Fitting a motion to another length."""
from __future__ import annotations

import numpy as np


def ping_pong(values: np.ndarray, length: int) -> np.ndarray:
    """``length`` rows of ``values`` played forwards then backwards (``v + v[-2:0:-1]``), repeated: a short
    motion loops without a jump."""
    values = np.asarray(values)
    mirrored = np.concatenate((values, values[-2:0:-1]))
    return np.tile(mirrored, (length // len(mirrored) + 1,) + (1,) * (values.ndim - 1))[:length]
