"""Mesh + head pose -> 2-D pixel landmarks: AniPortrait's perspective projection (docs/pipeline.md#projection) and Euler
helpers.

The camera is MediaPipe's face-geometry camera (vertical FOV 63 deg, near 1, far 10000, origin top-left). The
matrix is AniPortrait's OpenGL-style one, stored in float32, used with row vectors; its homogeneous w is
``-n*F/(F-n) * Z = -1.0001 * Z`` rather than the textbook ``-Z`` (kept: it shifts every point slightly).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from ..data import FaceAnalysis
from .geometry import FAR, NEAR, VERTICAL_FOV_DEGREES


def perspective_matrix(aspect: float) -> np.ndarray:
    """(4, 4) float32 projection matrix for row vectors (``[x, y, z, 1] @ P``); ``aspect`` = width / height."""
    focal = 1.0 / math.tan(math.radians(VERTICAL_FOV_DEGREES) / 2.0)
    depth_scale = (NEAR + FAR) / (NEAR - FAR)
    depth_offset = NEAR * FAR / (NEAR - FAR)
    return np.array([[focal / aspect, 0.0, 0.0, 0.0],
                     [0.0, -focal, 0.0, 0.0],      # y flipped: image rows grow downwards
                     [0.0, 0.0, depth_scale, depth_offset],
                     [0.0, 0.0, -1.0, 0.0]], dtype=np.float32)


def euler_and_translation_to_matrix(angles_deg: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 rigid transform(s) from SciPy 'xyz' Euler angles in degrees (extrinsic, R = Rz Ry Rx) and a translation.

    Accepts single vectors (3,) or batches (..., 3); returns (..., 4, 4) float64.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    batch_shape = angles.shape[:-1]
    rotation = Rotation.from_euler("xyz", angles.reshape(-1, 3), degrees=True).as_matrix()
    matrix = np.zeros((rotation.shape[0], 4, 4), dtype=np.float64)
    matrix[:, :3, :3] = rotation
    matrix[:, :3, 3] = translation.reshape(-1, 3)
    matrix[:, 3, 3] = 1.0
    return matrix.reshape(batch_shape + (4, 4))


def matrix_to_euler_and_translation(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`euler_and_translation_to_matrix` for (..., 4, 4) matrices.

    SciPy projects the 3x3 block onto the nearest rotation first, so a uniform scale (MediaPipe's
    transformation matrices carry one) is dropped. Returns (angles_deg (..., 3), translation (..., 3)) float64.
    """
    matrix = np.asarray(matrix)
    batch_shape = matrix.shape[:-2]
    blocks = matrix[..., :3, :3].reshape(-1, 3, 3).astype(np.float64)
    angles = Rotation.from_matrix(blocks).as_euler("xyz", degrees=True)
    translation = matrix[..., :3, 3].astype(np.float64)
    return angles.reshape(batch_shape + (3,)), translation


def pose_vectors_to_matrices(poses: np.ndarray) -> np.ndarray:
    """(L, 6) [rx, ry, rz, tx, ty, tz] -> (L, 4, 4)."""
    poses = np.asarray(poses)
    return euler_and_translation_to_matrix(poses[:, :3], poses[:, 3:6])


def project_points_with_trans(points: np.ndarray, matrices: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates (L, N, 2) float64 of mesh points (L, N, 3) moved into camera space by (L, 4, 4) matrices.

    Same arithmetic as the original: ``([v, 1] @ M.T) @ P`` in float64 with P's float32 entries, divide by w,
    then ``(ndc + 1) / 2 * size``.
    """
    points = np.asarray(points, dtype=np.float64)
    matrices = np.asarray(matrices, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 3 or matrices.shape != (len(points), 4, 4):
        raise ValueError(f"AniPortrait: projection needs points (L, N, 3) and matrices (L, 4, 4); got "
                         f"{points.shape} and {matrices.shape}.")
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    camera = homogeneous @ np.swapaxes(matrices, 1, 2)
    clip = camera @ perspective_matrix(width / height).astype(np.float64)
    ndc = clip[..., :2] / clip[..., 3:4]
    return (ndc + 1.0) * 0.5 * np.array([width, height], dtype=np.float64)


PROJECTION_BATCH = 256


def project_points(points: np.ndarray, trans_mat: np.ndarray, poses: np.ndarray, width: int,
                   height: int) -> np.ndarray:
    """Audio-driven projection: frame i is posed by ``trans_mat @ E(poses[i])`` (relative head motion applied in
    the reference face's canonical frame, then the reference's own placement). ``poses`` needs >= L rows; row i
    drives mesh frame i."""
    points = np.asarray(points, dtype=np.float64)
    poses = np.asarray(poses)
    if len(poses) < len(points):
        raise ValueError(f"AniPortrait: {len(points)} mesh frames need at least as many head poses, "
                         f"got {len(poses)}.")
    motion = pose_vectors_to_matrices(poses[:len(points)])
    return project_points_with_trans(points, np.asarray(trans_mat, dtype=np.float64) @ motion, width, height)


def project_mesh_sequence(face: FaceAnalysis, offsets: np.ndarray, poses: np.ndarray,
                          frames_per_batch: int = PROJECTION_BATCH) -> np.ndarray:
    """Audio-driven landmarks (docs/pipeline.md#audio-driven-landmarks): the reference mesh plus per-frame offsets
    (L, 468, 3), posed by ``poses`` (>= L, 6) and the reference's transformation matrix, in pixels of the reference's
    analysed size.

    Projected ``frames_per_batch`` frames at a time (each frame on its own, so the numbers are the same): the float64
    temporaries of a whole long video at once would take several times the landmarks' own size."""
    offsets, poses = np.asarray(offsets), np.asarray(poses)
    if len(poses) < len(offsets):
        raise ValueError(f"AniPortrait: {len(offsets)} mesh frames need at least as many head poses, "
                         f"got {len(poses)}.")
    return np.concatenate([project_points(offsets[start:start + frames_per_batch] + face.lmks3d, face.trans_mat,
                                          poses[start:start + frames_per_batch], face.width, face.height)
                           for start in range(0, max(len(offsets), 1), frames_per_batch)])
