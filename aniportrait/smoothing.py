"""Temporal smoothing of per-frame pose vectors (docs/pipeline.md#smoothing), shared by Audio2Pose, retargeting and
templates."""
from __future__ import annotations

import numpy as np


def smooth_pose_seq(seq: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window // 2`` frames on each side, truncated at the ends (no padding).

    Frame i averages frames max(0, i - k) .. min(L - 1, i + k) with k = window // 2, component-wise (Euler angles
    included). The sum runs in frame order and is then divided by the count, as NumPy's ``mean`` over those rows
    does, so the result matches AniPortrait's loop bit for bit.
    """
    if window < 1:
        raise ValueError(f"AniPortrait: the smoothing window must be at least 1 frame, got {window}.")
    seq = np.asarray(seq)
    # float32 input stays float32 (accumulated in float32), like the original's zeros_like + mean
    dtype = seq.dtype if np.issubdtype(seq.dtype, np.floating) else np.dtype(np.float64)
    length, half = len(seq), window // 2
    if length == 0 or half == 0:
        return seq.astype(dtype, copy=True)
    padding = np.zeros((half,) + seq.shape[1:], dtype=dtype)
    padded = np.concatenate([padding, seq.astype(dtype), padding])
    total = np.zeros(seq.shape, dtype=dtype)
    for offset in range(2 * half + 1):
        total = total + padded[offset:offset + length]   # zeros outside the sequence add exactly nothing
    index = np.arange(length)
    counts = np.minimum(index + half, length - 1) - np.maximum(index - half, 0) + 1
    return total / counts.astype(dtype).reshape((length,) + (1,) * (seq.ndim - 1))
