"""Face reenactment: a driving video's head motion and expressions moved onto the reference face
(docs/pipeline.md#retarget, AniPortrait's vid2vid "2024/04/02" strategy).

Per driving frame: the head rotation is the driver's ABSOLUTE rotation (the reference's own rotation and scale are
discarded), the translation is the driver's motion since its first frame added to the reference's translation;
the 6-vectors are smoothed (window 3). Expressions are the driver's mesh minus its most neutral frame (smallest
blendshape sum over the whole clip) added to the reference's mesh.

Differences from the original, all opt-in or invisible where the original works:
* frame rate: the driving motion can be resampled to any output rate (linear in time, per component). The
  original keeps the driving rate except 60 fps, where it takes every 2nd frame; that is exactly what resampling
  60 -> 30 does here (the output instants fall on source frames), and ``fps=None`` keeps the original rule.
* size: the original projects and draws at the DRIVING frame size and then resizes to the output size
  (docs/departures.md#b12), which stretches the face when the aspect ratios differ. ``size_mode="auto"`` keeps that path
  when the aspect ratios agree (bit-identical pose images) and otherwise projects at the output size ("output");
  "driving" forces the original everywhere.
* a frame without a face does not end the video (the FaceTrack fills such frames in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data import FaceAnalysis, FaceTrack, LandmarkSequence
from ..smoothing import smooth_pose_seq
from .projection import matrix_to_euler_and_translation, pose_vectors_to_matrices, project_points_with_trans

SIZE_MODES = ("auto", "driving", "output")
DEFAULT_SMOOTHING = 3


@dataclass
class RetargetMotion:
    """Intermediate results of the retarget, frame-aligned with the output."""

    neutral_index: int          # frame whose expression counts as neutral (argmin of the blendshape sum)
    poses: np.ndarray           # (L, 6) rotation (absolute) + re-based translation, before smoothing
    smoothed_poses: np.ndarray  # (L, 6)
    matrices: np.ndarray        # (L, 4, 4) from the smoothed poses
    vertices: np.ndarray        # (L, 468, 3) reference mesh with the driver's expression deltas


def original_output_fps(driving_fps: float) -> float:
    """The rate AniPortrait's vid2vid produces: the driving rate, except 60 fps becomes 30 (every 2nd frame)."""
    return driving_fps / 2.0 if driving_fps == 60 else driving_fps


def resample_to_fps(values: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Values sampled at ``source_fps`` along axis 0, linearly interpolated at the instants k / target_fps that lie
    within the clip (frame i at time i / source_fps; no extrapolation past the last frame).

    Output instants that coincide with source frames return those frames exactly (e.g. 60 -> 30 fps = every 2nd
    frame).
    """
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError(f"AniPortrait: frame rates must be positive, got {source_fps} -> {target_fps} fps.")
    values = np.asarray(values)
    count = len(values)
    if count < 2 or source_fps == target_fps:
        return values.copy()
    step = source_fps / target_fps          # source frames per output frame
    out_count = math.floor((count - 1) / step + 1e-9) + 1
    positions = np.minimum(np.arange(out_count) * step, count - 1)
    lower = np.minimum(np.floor(positions).astype(np.int64), count - 2)
    weight = (positions - lower).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[lower] * (1.0 - weight) + values[lower + 1] * weight


def driving_poses(trans_mats: np.ndarray, reference_trans_mat: np.ndarray) -> np.ndarray:
    """(N, 6) per driving frame: Euler 'xyz' degrees of the driver's own rotation (scale dropped) and its
    translation relative to frame 0, re-based on the reference's translation."""
    angles, translation = matrix_to_euler_and_translation(trans_mats)
    translation = (translation - translation[0]) + np.asarray(reference_trans_mat, dtype=np.float64)[:3, 3]
    return np.concatenate([angles, translation], axis=1)


def neutral_frame(blendshapes: np.ndarray) -> int:
    """Index of the frame with the smallest total blendshape activation (the first one on ties)."""
    return int(np.argmin(np.asarray(blendshapes).sum(axis=1)))


def retarget_motion(lmks3d: np.ndarray, trans_mats: np.ndarray, blendshapes: np.ndarray, reference: FaceAnalysis,
                    source_fps: float | None = None, target_fps: float | None = None,
                    window: int = DEFAULT_SMOOTHING) -> RetargetMotion:
    """Driving-frame MediaPipe results (N, 468, 3), (N, 4, 4), (N, 51) -> the retargeted motion.

    With both frame rates given and different, poses, meshes and blendshapes are resampled to ``target_fps``
    before the neutral frame is chosen and before smoothing (as the original subsamples 60 fps video first).
    """
    if len(trans_mats) == 0:
        raise ValueError("AniPortrait: the driving video has no frames to retarget.")
    poses = driving_poses(trans_mats, reference.trans_mat)
    lmks3d = np.asarray(lmks3d, dtype=np.float64)
    blendshapes = np.asarray(blendshapes, dtype=np.float64)
    if source_fps is not None and target_fps is not None and source_fps != target_fps:
        poses, lmks3d, blendshapes = (resample_to_fps(v, source_fps, target_fps)
                                      for v in (poses, lmks3d, blendshapes))
    neutral = neutral_frame(blendshapes)
    smoothed = smooth_pose_seq(poses, window)
    vertices = (lmks3d - lmks3d[neutral]) + np.asarray(reference.lmks3d, dtype=np.float64)
    return RetargetMotion(neutral_index=neutral, poses=poses, smoothed_poses=smoothed,
                          matrices=pose_vectors_to_matrices(smoothed), vertices=vertices)


def projection_size(driving_size: tuple[int, int], output_size: tuple[int, int], size_mode: str) -> tuple[int, int]:
    """(width, height) to project and draw at, before the final resize to ``output_size``."""
    if size_mode not in SIZE_MODES:
        raise ValueError(f"AniPortrait: unknown size mode '{size_mode}'; choose one of {', '.join(SIZE_MODES)}.")
    same_aspect = driving_size[0] * output_size[1] == driving_size[1] * output_size[0]
    if size_mode == "driving" or (size_mode == "auto" and same_aspect):
        return driving_size
    return output_size


def retarget_face(track: FaceTrack, reference: FaceAnalysis, fps: float | None = None,
                  window: int = DEFAULT_SMOOTHING, size_mode: str = "auto") -> LandmarkSequence:
    """2-D landmarks of the reference face performing the driving video, for pose images of the reference's size.

    ``fps``: output frame rate (None: the original's rule, see :func:`original_output_fps`). The landmarks are in
    pixels of the projection size (see :func:`projection_size`); ``output_size`` tells the renderer the
    reference's size to resize to.
    """
    target_fps = original_output_fps(track.fps) if fps is None else float(fps)
    motion = retarget_motion(track.lmks3d, track.trans_mat, track.blendshapes, reference,
                             source_fps=track.fps, target_fps=target_fps, window=window)
    output_size = (int(reference.width), int(reference.height))
    width, height = projection_size((int(track.width), int(track.height)), output_size, size_mode)
    points = project_points_with_trans(motion.vertices, motion.matrices, width, height)
    return LandmarkSequence(points=points, width=width, height=height, fps=target_fps, output_size=output_size)
