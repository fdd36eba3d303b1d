"""MediaPipe's face-geometry pipeline in NumPy: screen landmarks -> metric face mesh + pose matrix.

MediaPipe's Python Tasks API returns the facial transformation matrix but not the face-geometry mesh that
AniPortrait reads (``lmks3d``). This recomputes both from the normalised landmarks the same way MediaPipe's
C++ ``GeometryPipeline`` does (docs/pipeline.md#face-geometry):

1. project the screen landmarks onto the near plane of a perspective camera (vertical FOV 63°, near 1,
   origin at the top-left corner); their relative z is scaled like x;
2. estimate the canonical-to-runtime scale with a weighted Procrustes fit on those projected landmarks
   (z flipped: screen space is left-handed, metric space right-handed);
3. unproject with that scale (depth moved to the near plane, x and y scaled by depth) and estimate a second
   scale the same way;
4. unproject again with the product of both scales -> metric landmarks in camera space;
5. solve the weighted orthogonal Procrustes problem canonical -> metric: ``trans_mat`` (rotation, uniform
   scale, translation);
6. ``lmks3d = inv(trans_mat) · metric landmarks``: the face without its pose, aligned with the canonical model.

MediaPipe computes in float32; this runs in float64, so results agree to float32 precision.
"""
from __future__ import annotations

import math

import numpy as np

from .task_file import GeometryMetadata

# MediaPipe's face-geometry camera (origin at the top-left corner); AniPortrait projects with the same one
VERTICAL_FOV_DEGREES = 63.0
NEAR = 1.0
FAR = 10000.0
# MediaPipe drops faces whose landmarks all lie within this normalised radius of their mean
TOO_COMPACT_RADIUS = 1e-3
_EPS = 1e-9


class FaceGeometryError(ValueError):
    """The landmarks do not allow a face-geometry estimate (MediaPipe reports no geometry for them)."""


def face_geometry(lmks: np.ndarray, width: int, height: int,
                  metadata: GeometryMetadata) -> tuple[np.ndarray, np.ndarray]:
    """Metric face mesh and pose of one face.

    ``lmks``: (≥V, 3) MediaPipe normalised landmarks (x/W, y/H, relative z) of an image of ``width`` x
    ``height`` pixels; only the first V (= 468 canonical vertices) are used (not the irises).
    Returns ``(lmks3d (V, 3), trans_mat (4, 4))``, both float64: the pose-free metric mesh and the
    canonical -> camera transformation (with uniform scale), so that ``trans_mat · [lmks3d; 1]`` is the face in
    camera space.
    """
    if width <= 0 or height <= 0:
        raise FaceGeometryError(f"image size {width}x{height} is not positive.")
    num_vertices = metadata.num_vertices
    lmks = np.asarray(lmks, dtype=np.float64)
    if lmks.ndim != 2 or lmks.shape[0] < num_vertices or lmks.shape[1] != 3:
        raise FaceGeometryError(f"expected at least {num_vertices} landmarks with (x, y, z), got shape {lmks.shape}.")
    screen = lmks[:num_vertices].T.copy()          # (3, V)
    if _too_compact(screen):
        raise FaceGeometryError("the face landmarks are too compact for a geometry estimate (face too small).")

    canonical = metadata.canonical_vertices.astype(np.float64).T
    weights = metadata.landmark_weights.astype(np.float64)
    half_height = NEAR * math.tan(math.radians(VERTICAL_FOV_DEGREES) / 2)
    half_width = half_height * width / height

    # (1) onto the near plane; y flipped because the origin is the top-left corner
    projected = np.stack([(screen[0] - 0.5) * 2 * half_width,
                          (0.5 - screen[1]) * 2 * half_height,
                          screen[2] * 2 * half_width])
    depth_offset = projected[2].mean()

    def metric_from_screen(scale: float) -> np.ndarray:
        depth = (projected[2] - depth_offset + NEAR) / scale
        return np.stack([projected[0] * depth / NEAR, projected[1] * depth / NEAR, -depth])

    # (2)-(4) the relative screen z only allows unprojecting once a scale is known
    first_scale = _procrustes_scale(canonical, _flip_z(projected), weights)
    second_scale = _procrustes_scale(canonical, metric_from_screen(first_scale), weights)
    metric = metric_from_screen(first_scale * second_scale)

    # (5)-(6)
    trans_mat = weighted_procrustes(canonical, metric, weights)
    homogeneous = np.vstack([metric, np.ones((1, num_vertices))])
    lmks3d = (np.linalg.inv(trans_mat) @ homogeneous)[:3].T
    return lmks3d, trans_mat


def weighted_procrustes(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 4x4 similarity transform (uniform scale · rotation, translation) that best maps the (3, N)
    ``source`` points onto ``target`` in the weighted least-squares sense; reflections are not allowed."""
    total_weight = weights.sum()
    source_mean = (source * weights).sum(axis=1, keepdims=True) / total_weight
    sqrt_w = np.sqrt(weights)
    centred_source = (source - source_mean) * sqrt_w
    weighted_target = target * sqrt_w
    cross = weighted_target @ centred_source.T
    if np.linalg.norm(cross) <= _EPS:
        raise FaceGeometryError("degenerate landmarks: the Procrustes design matrix vanishes.")
    u, _, vt = np.linalg.svd(cross)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        u[:, 2] *= -1
    rotation = u @ vt
    # optimal scale with that rotation (MediaPipe's formula: projections on the centred source)
    numerator = np.sum((rotation @ centred_source) * weighted_target)
    denominator = np.sum(centred_source * source * sqrt_w)
    if denominator <= _EPS or numerator / denominator <= _EPS:
        raise FaceGeometryError("degenerate landmarks: the Procrustes scale is not positive.")
    rotation_and_scale = rotation * (numerator / denominator)
    translation = ((target - rotation_and_scale @ source) * weights).sum(axis=1) / total_weight
    transform = np.eye(4)
    transform[:3, :3] = rotation_and_scale
    transform[:3, 3] = translation
    return transform


def _procrustes_scale(canonical: np.ndarray, runtime: np.ndarray, weights: np.ndarray) -> float:
    return float(np.linalg.norm(weighted_procrustes(canonical, runtime, weights)[:3, 0]))


def _flip_z(points: np.ndarray) -> np.ndarray:
    """Screen space is left-handed, metric space right-handed."""
    return points * np.array([[1.0], [1.0], [-1.0]])


def _too_compact(screen: np.ndarray) -> bool:
    centre = screen[:2].mean(axis=1, keepdims=True)
    return float(np.sqrt(((screen[:2] - centre) ** 2).sum(axis=0).max())) <= TOO_COMPACT_RADIUS
