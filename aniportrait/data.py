"""Data passed between the stages (and between the ComfyUI nodes). Plain NumPy, no ComfyUI.

Conventions (docs/pipeline.md#data-conventions): landmark coordinates are MediaPipe's; 3-D meshes are in the canonical
face frame (cm, y up); poses are [rx, ry, rz] Euler degrees (SciPy 'xyz') + [tx, ty, tz]; pixel coordinates are
float64 with the origin at the top-left corner.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FPS_TOLERANCE = 1e-6  # frame rates closer than this are one rate (the same value through float arithmetic)


def same_fps(first: float, second: float, tolerance: float = FPS_TOLERANCE) -> bool:
    return abs(first - second) <= tolerance


def check_rgb_image(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` if it is one (H, W, 3) uint8 RGB array (how the stages pass images), else a ValueError naming
    ``what``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"AniPortrait: {what} must be an (H, W, 3) uint8 RGB image, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}.")
    return image


@dataclass
class FaceAnalysis:
    """MediaPipe FaceLandmarker result for one image (the original's LMKExtractor dictionary)."""

    lmks: np.ndarray          # (478, 3) float64: x/W, y/H, relative z
    lmks3d: np.ndarray        # (468, 3) float64: canonical-space metric mesh of this face (pose removed)
    trans_mat: np.ndarray     # (4, 4) float64: facial transformation matrix, canonical -> camera space
    blendshapes: np.ndarray   # (51,) float64: the 52 scores minus "_neutral"
    # size in pixels the face is projected into: the analysed image's (the reference's: the video's size, which
    # differs from the analysed image's only in the original's swapped analysis, see face/reference.py)
    width: int
    height: int
    faces_in_image: int = 1   # faces MediaPipe found; this one is the largest of them


@dataclass
class ReferenceFace:
    """The reference portrait as analysed: the (optionally cropped) image and its face."""

    face: FaceAnalysis
    image: np.ndarray                       # (h, w, 3) uint8 RGB, exactly what MediaPipe saw
    crop_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) in source pixels; may exceed it
    source_size: tuple[int, int] | None = None          # (W, H) of the image before cropping


@dataclass
class MeshSequence:
    """Per-frame 3-D vertex offsets from Audio2Mesh, added to a reference mesh."""

    offsets: np.ndarray       # (L, 468, 3)
    fps: float


@dataclass
class PoseSequence:
    """Per-frame relative head pose (Audio2Pose, a template, or a driving video)."""

    poses: np.ndarray         # (L, 6) float64: Euler xyz degrees, translation
    fps: float


@dataclass
class LandmarkSequence:
    """Per-frame 2-D landmarks in pixels of a width x height canvas."""

    points: np.ndarray        # (L, 468, 2) float64 pixel coordinates
    width: int
    height: int
    fps: float
    # (W, H) the pose images are resized to after drawing at width x height; None = width x height. Face
    # reenactment sets it: AniPortrait draws at the driving video's size, then resizes to the output size.
    output_size: tuple[int, int] | None = None


@dataclass
class FaceTrack:
    """MediaPipe results for every frame of a driving video (frames without a face are filled in)."""

    lmks: np.ndarray          # (N, 478, 3)
    lmks3d: np.ndarray        # (N, 468, 3)
    trans_mat: np.ndarray     # (N, 4, 4)
    blendshapes: np.ndarray   # (N, 51)
    width: int
    height: int
    fps: float
    detected: np.ndarray = field(default=None)  # (N,) bool: False where a frame was interpolated
