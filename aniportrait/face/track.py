"""Per-frame face analysis of a driving video (face reenactment), with frames that have no face filled in.

The original stops at the first frame without a face and silently drops the rest of the video. Here every frame
is analysed on its own (MediaPipe IMAGE mode, the frame at its own size) and the frames without a face are
filled from the nearest frames that have one: linearly in between (landmarks, mesh, blendshapes, translation
and scale; rotation by spherical interpolation), held constant before the first and after the last detection.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from ..data import FaceAnalysis, FaceTrack
from ..progress import InterruptCheck, ProgressFn
from .landmarker import FaceLandmarker

log = logging.getLogger("aniportrait")



def track_faces(frames: np.ndarray | Sequence[np.ndarray], landmarker: FaceLandmarker, fps: float,
                progress: ProgressFn | None = None,
                check_interrupt: InterruptCheck | None = None) -> FaceTrack:
    """Analyse every (H, W, 3) uint8 RGB frame; ``progress(done, total)`` after each frame, ``check_interrupt()``
    before each (it raises to cancel)."""
    total = len(frames)
    if total == 0:
        raise ValueError("AniPortrait: the video has no frames to analyse.")
    if not fps > 0:
        raise ValueError(f"AniPortrait: the video frame rate must be positive, got {fps}.")
    analyses: list[FaceAnalysis | None] = []
    for index, frame in enumerate(frames):
        if check_interrupt is not None:
            check_interrupt()
        analyses.append(landmarker.analyse(frame))
        if progress is not None:
            progress(index + 1, total)
    return fill_missing_faces(analyses, fps)


def fill_missing_faces(analyses: Sequence[FaceAnalysis | None], fps: float) -> FaceTrack:
    """One FaceTrack from per-frame results, None where no face was found (filled in, with a warning)."""
    detected = np.array([a is not None for a in analyses], dtype=bool)
    found = [a for a in analyses if a is not None]
    if not found:
        raise ValueError(f"AniPortrait: MediaPipe found no face in any of the {len(analyses)} video frames. "
                         "Use a video where one face is clearly visible and not too small.")
    sizes = {(a.width, a.height) for a in found}
    if len(sizes) != 1:
        raise ValueError(f"AniPortrait: the video frames have different sizes {sorted(sizes)}; use one frame size.")
    width, height = sizes.pop()

    before, after, weight = _neighbours(detected)

    # at a detected frame the weight is 0 and both neighbours are the frame itself: its values come out unchanged
    def fill(values: np.ndarray) -> np.ndarray:
        """(K, ...) values of the detected frames -> (N, ...) for every frame."""
        w = weight.reshape((-1,) + (1,) * (values.ndim - 1))
        return (1.0 - w) * values[before] + w * values[after]

    lmks = fill(np.stack([a.lmks for a in found]))
    lmks3d = fill(np.stack([a.lmks3d for a in found]))
    blendshapes = fill(np.stack([a.blendshapes for a in found]))
    matrices = np.stack([a.trans_mat for a in found])
    trans_mat = _fill_transforms(matrices, before, after, weight)
    trans_mat[detected] = matrices   # the blend re-orthonormalises; detected frames keep their own matrix exactly

    crowded = np.flatnonzero([a is not None and a.faces_in_image > 1 for a in analyses])
    if len(crowded):
        log.warning("AniPortrait: several faces in frame(s) %s of %d; the largest face of each frame is used.",
                    _describe_indices(crowded), len(analyses))
    if not detected.all():
        log.warning("AniPortrait: no face found in frame(s) %s of %d; filled in from the nearest frames with a face.",
                    _describe_indices(np.flatnonzero(~detected)), len(analyses))
    return FaceTrack(lmks=lmks, lmks3d=lmks3d, trans_mat=trans_mat, blendshapes=blendshapes, width=width,
                     height=height, fps=float(fps), detected=detected)


def _neighbours(detected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every frame: positions (among the detected frames) of the detected frames at or before / at or after
    it, and the interpolation weight of the later one. Outside the detected range both are the nearest one."""
    known = np.flatnonzero(detected)
    frames = np.arange(len(detected))
    after = np.clip(np.searchsorted(known, frames, side="left"), 0, len(known) - 1)
    before = np.clip(np.searchsorted(known, frames, side="right") - 1, 0, len(known) - 1)
    span = known[after] - known[before]
    weight = np.where(span > 0, (frames - known[before]) / np.maximum(span, 1), 0.0)
    return before, after, weight


def _fill_transforms(matrices: np.ndarray, before: np.ndarray, after: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend similarity transforms (uniform scale · rotation, translation): rotation along the shortest arc,
    scale and translation linearly."""
    scales = np.linalg.norm(matrices[:, :3, 0], axis=1)
    rotations = Rotation.from_matrix(matrices[:, :3, :3] / scales[:, None, None])
    start = rotations[before]
    step = (start.inv() * rotations[after]).as_rotvec()
    rotation = (start * Rotation.from_rotvec(step * weight[:, None])).as_matrix()
    scale = (1.0 - weight) * scales[before] + weight * scales[after]
    translation = (1.0 - weight[:, None]) * matrices[before, :3, 3] + weight[:, None] * matrices[after, :3, 3]
    out = np.zeros((len(weight), 4, 4))
    out[:, :3, :3] = rotation * scale[:, None, None]
    out[:, :3, 3] = translation
    out[:, 3, 3] = 1.0
    return out


def _describe_indices(indices: np.ndarray) -> str:
    """[0, 1, 2, 7, 9, 10] -> '0-2, 7, 9-10' (``indices`` ascending, not empty)."""
    runs = np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1)
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
