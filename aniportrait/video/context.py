"""Sliding context windows over the frames of a video (docs/pipeline.md#context-windows).

The original calls AnimateDiff's "uniform" schedule with ``step=0`` at every denoising step, so its windows never
shift between steps, and with ``closed_loop=True``: windows start at 0, s, 2s, ... (s = size - overlap) while the
start is below the frame count, and frame indices wrap modulo the length, so the last window continues with the
first frames (docs/departures.md#b9). That is the default here. ``closed_loop=False`` ("open") never wraps: the last
window is moved back to end on the last frame instead.
"""
from __future__ import annotations


def context_windows(num_frames: int, context_frames: int = 16, context_overlap: int = 4,
                    closed_loop: bool = True) -> list[list[int]]:
    """Frame indices of every window, in the order the original visits them."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}.")
    if context_frames < 1:
        raise ValueError(f"context_frames must be at least 1, got {context_frames}.")
    if not 0 <= context_overlap < context_frames:
        raise ValueError(f"context_overlap ({context_overlap}) must be at least 0 and smaller than "
                         f"context_frames ({context_frames}).")
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - context_overlap
    if closed_loop:
        return [[(start + k) % num_frames for k in range(context_frames)]
                for start in range(0, num_frames, stride)]
    last_start = num_frames - context_frames
    starts = list(range(0, last_start, stride)) + [last_start]
    return [list(range(start, start + context_frames)) for start in starts]


def frame_coverage(windows: list[list[int]], num_frames: int) -> list[int]:
    """How many windows contain each frame (the original's per-frame ``counter``)."""
    counts = [0] * num_frames
    for window in windows:
        for frame in window:
            counts[frame] += 1
    return counts
