"""Fast preview frames of a landmark sequence: the pose-image line drawing (same lines and colours as the
PoseGuider's input) drawn straight at the output size, optionally over the dimmed portrait, so lip sync and head
motion can be judged in seconds before sampling. Not the sampler's input (that is Render Pose Image, which draws
on AniPortrait's 512 canvas)."""
from __future__ import annotations

import cv2
import numpy as np

from ..data import LandmarkSequence
from ..face.drawing import EDGE_GROUPS, MESH_LANDMARKS

SUBPIXEL_BITS = 4           # cv2 fixed-point coordinates: lines sit at 1/16 pixel precision
BACKGROUND_DIMMING = 0.45   # portrait brightness behind the lines


def preview_size(landmarks: LandmarkSequence) -> tuple[int, int]:
    """(width, height) of the pose images the landmarks stand for."""
    return tuple(landmarks.output_size) if landmarks.output_size else (landmarks.width, landmarks.height)


def preview_frames(landmarks: LandmarkSequence, background: np.ndarray | None = None) -> np.ndarray:
    """(L, H, W, 3) uint8 display-RGB frames at the pose images' size: black, or ``background`` (an RGB uint8
    image, resized to fit and dimmed) behind the lines."""
    points = np.asarray(landmarks.points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1] < MESH_LANDMARKS or points.shape[2] != 2 or len(points) == 0:
        raise ValueError(f"AniPortrait: input 'landmarks' must hold (frames >= 1, >= {MESH_LANDMARKS}, 2) pixel "
                         f"coordinates, got {points.shape}.")
    width, height = preview_size(landmarks)
    base = np.zeros((height, width, 3), dtype=np.uint8)
    if background is not None:
        resized = cv2.resize(np.ascontiguousarray(background[..., :3]), (width, height), interpolation=cv2.INTER_AREA)
        base = (resized.astype(np.float32) * BACKGROUND_DIMMING).astype(np.uint8)
    scale = np.array([width / landmarks.width, height / landmarks.height]) * (1 << SUBPIXEL_BITS)
    with np.errstate(invalid="ignore"):
        fixed = np.nan_to_num(points * scale, nan=-1e6).clip(-1e6, 1e6).round().astype(np.int32)
    chains = [(np.array(chain), tuple(int(c) for c in reversed(colour))) for chain, colour in EDGE_GROUPS]
    frames = np.empty((len(points), height, width, 3), dtype=np.uint8)
    for frame, pixels in zip(frames, fixed):
        frame[:] = base
        for chain, colour in chains:
            cv2.polylines(frame, [pixels[chain]], False, colour, thickness=2, lineType=cv2.LINE_8,
                          shift=SUBPIXEL_BITS)
    return frames
