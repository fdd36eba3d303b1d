"""Checks that a lossy video file holds given frames. x264's threaded rate control depends on when frames reach the
encoder, so a file written a batch at a time while the sampler runs need not equal, bit for bit, one written from
the whole video at once: both must be equally faithful to the frames, each frame at its place."""
from __future__ import annotations

import numpy as np


def psnr(decoded: np.ndarray, frames: np.ndarray) -> float:
    error = np.mean((decoded.astype(np.float64) - frames) ** 2)
    return float(10 * np.log10(255 ** 2 / max(error, 1e-12)))


def assert_holds_frames(decoded: np.ndarray, frames: np.ndarray, min_psnr: float) -> None:
    """``decoded`` (N, H, W, 3) is ``frames`` through a lossy codec: at least ``min_psnr`` dB, and every decoded
    frame is nearest to the frame at its own place."""
    assert decoded.shape == frames.shape
    assert psnr(decoded, frames) > min_psnr
    for index, frame in enumerate(decoded):
        scores = [psnr(frame, candidate) for candidate in frames]
        assert int(np.argmax(scores)) == index, f"decoded frame {index} looks most like frame {np.argmax(scores)}"


def shifted_psnr(frames: np.ndarray) -> float:
    """The PSNR of the video against itself one frame late: what a file holding the wrong frames scores."""
    return psnr(frames[1:], frames[:-1])
