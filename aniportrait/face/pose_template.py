"""Head-pose templates from a video (docs/pipeline.md#pose-templates, AniPortrait's ``generate_ref_pose.py``).

Every frame's pose relative to the first frame, ``inv(T0) @ Ti`` (in float32, as the original casts MediaPipe's
matrices), as Euler 'xyz' degrees + translation; resampled to 30 fps and smoothed (window 5). The result drives
audio-driven generation like AniPortrait's ``pose_temp.npy``.

Kept from the original: both time axes run from 0 to N/fps INCLUSIVE (a slight time stretch) and the output length
is ``int(N * 30 / fps)`` (truncated), so templates match files made with the original script.
"""
from __future__ import annotations

import numpy as np

from ..smoothing import smooth_pose_seq
from .projection import matrix_to_euler_and_translation

TEMPLATE_FPS = 30.0
TEMPLATE_SMOOTHING = 5


def relative_head_matrices(trans_mats: np.ndarray) -> np.ndarray:
    """(N, 4, 4) float32 ``inv(T0) @ Ti``: each frame's transform in frame 0's local coordinates."""
    matrices = np.asarray(trans_mats).astype(np.float32)
    return np.linalg.inv(matrices[0]) @ matrices


def relative_head_poses(trans_mats: np.ndarray) -> np.ndarray:
    """(N, 6) float64 pose of every frame relative to frame 0 (row 0 is zero up to float32 rounding)."""
    angles, translation = matrix_to_euler_and_translation(relative_head_matrices(trans_mats))
    return np.concatenate([angles, translation], axis=1)


def template_time_axes(count: int, fps: float, target_fps: float = TEMPLATE_FPS) -> tuple[np.ndarray, np.ndarray]:
    """The original's (source, target) sample times: end-inclusive linspaces over [0, count / fps]."""
    duration = count / fps
    return np.linspace(0, duration, count), np.linspace(0, duration, int(count * target_fps / fps))


def resample_template(poses: np.ndarray, fps: float, target_fps: float = TEMPLATE_FPS) -> np.ndarray:
    """Per-component linear interpolation of (N, 6) poses at ``fps`` onto the original's ``target_fps`` axis."""
    old_time, new_time = template_time_axes(len(poses), fps, target_fps)
    if len(new_time) == 0:
        raise ValueError(f"AniPortrait: {len(poses)} frames at {fps:g} fps give no frame at {target_fps:g} fps; "
                         "use a longer video.")
    return np.stack([np.interp(new_time, old_time, column) for column in np.asarray(poses).T], axis=1)


def pose_template(trans_mats: np.ndarray, fps: float, target_fps: float = TEMPLATE_FPS,
                  window: int = TEMPLATE_SMOOTHING) -> np.ndarray:
    """(M, 6) float64 head-pose template at ``target_fps`` from per-frame (N, 4, 4) facial transformation
    matrices of a video at ``fps``."""
    if fps <= 0 or target_fps <= 0:
        raise ValueError(f"AniPortrait: frame rates must be positive, got {fps:g} -> {target_fps:g} fps.")
    if len(trans_mats) < 2:
        raise ValueError(f"AniPortrait: a head-pose template needs a video of at least 2 frames with a face, got "
                         f"{len(trans_mats)}.")
    return smooth_pose_seq(resample_template(relative_head_poses(trans_mats), fps, target_fps), window)
