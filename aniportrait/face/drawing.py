"""Pose-image rendering: face landmarks -> the line drawing the PoseGuider was trained on
(docs/pipeline.md#pose-images).

Lines are drawn with OpenCV itself (its thick-line rasteriser decides the pixels) on a 512x512 canvas that is then
resized bilinearly, exactly as AniPortrait does through MediaPipe's ``drawing_utils``. Colours are written as
given, so the arrays are in the network's raw channel order (BGR semantics); reverse the channels for display.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..data import LandmarkSequence

CANVAS_SIZE = 512
LINE_THICKNESS = 2

# (landmark chain, colour) in drawing order; each chain contributes its consecutive pairs as edges. Later groups
# overwrite the pixels they share with earlier ones, so the order matters.
EDGE_GROUPS: tuple[tuple[tuple[int, ...], tuple[int, int, int]], ...] = (
    # face oval without the forehead
    ((21, 162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361,
      323, 454, 356, 389, 251), (10, 200, 10)),
    ((263, 249, 390, 373, 374, 380, 381, 382, 362), (180, 200, 10)),    # left eye, lower lid
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (180, 200, 10)),    # left eye, upper lid
    ((276, 283, 282, 295, 285), (180, 220, 10)),                        # left eyebrow, lower
    ((300, 293, 334, 296, 336), (180, 220, 10)),                        # left eyebrow, upper
    ((33, 7, 163, 144, 145, 153, 154, 155, 133), (10, 200, 180)),       # right eye, lower lid
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (10, 200, 180)),     # right eye, upper lid
    ((46, 53, 52, 65, 55), (10, 220, 180)),                             # right eyebrow, lower
    ((70, 63, 105, 66, 107), (10, 220, 180)),                           # right eyebrow, upper
    ((61, 146, 91, 181, 84, 17), (10, 180, 20)),                        # lips outer bottom left
    ((17, 314, 405, 321, 375, 291), (20, 10, 180)),                     # lips outer bottom right
    ((78, 95, 88, 178, 87, 14), (100, 100, 30)),                        # lips inner bottom left
    ((14, 317, 402, 318, 324, 308), (100, 150, 50)),                    # lips inner bottom right
    ((61, 185, 40, 39, 37, 0), (20, 80, 100)),                          # lips outer top left
    ((0, 267, 269, 270, 409, 291), (80, 100, 20)),                      # lips outer top right
    ((78, 191, 80, 81, 82, 13), (120, 100, 200)),                       # lips inner top left
    ((13, 312, 311, 310, 415, 308), (150, 120, 100)),                   # lips inner top right
)

# flattened: one row per edge (start, end, c0, c1, c2), in drawing order
EDGES = np.array([(a, b, *colour) for chain, colour in EDGE_GROUPS for a, b in zip(chain[:-1], chain[1:])],
                 dtype=np.int64)
MESH_LANDMARKS = 468   # the face mesh; the 10 iris points of MediaPipe's 478 are never drawn


def _inside_unit_interval(values: np.ndarray) -> np.ndarray:
    """MediaPipe's validity test: 0 <= v <= 1, the ends widened by ``math.isclose``'s default rel_tol (1e-9)."""
    near_one = np.isfinite(values) & (np.abs(values - 1.0) <= 1e-9 * np.maximum(1.0, np.abs(values)))
    return ((values > 0) | (values == 0)) & ((values < 1) | near_one)


def canvas_pixels(normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer canvas pixels of (N, >=2) normalised landmarks and which of them are drawable.

    The coordinates go through float32 first (MediaPipe's landmark proto stores floats), then
    ``min(floor(v * 512), 511)``; landmarks outside [0, 1] (or NaN) are dropped.
    """
    with np.errstate(over="ignore"):   # far-off points become inf in float32 and are dropped like the original
        coords = np.asarray(normalized, dtype=np.float64)[:, :2].astype(np.float32).astype(np.float64)
    valid = _inside_unit_interval(coords).all(axis=1)
    pixels = np.zeros(coords.shape, dtype=np.int64)
    pixels[valid] = np.minimum(np.floor(coords[valid] * CANVAS_SIZE), CANVAS_SIZE - 1).astype(np.int64)
    return pixels, valid


def draw_pose_canvas(normalized: np.ndarray) -> np.ndarray:
    """The 512x512x3 uint8 canvas with the face's edges for (N, >=2) normalised landmarks (N >= 468)."""
    if normalized.ndim != 2 or normalized.shape[0] < MESH_LANDMARKS or normalized.shape[1] < 2:
        raise ValueError(f"AniPortrait: pose drawing needs (N >= {MESH_LANDMARKS}, 2) landmarks, "
                         f"got an array of shape {normalized.shape}.")
    pixels, valid = canvas_pixels(normalized)
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE, 3), dtype=np.uint8)
    for start, end, c0, c1, c2 in EDGES[valid[EDGES[:, 0]] & valid[EDGES[:, 1]]].tolist():
        cv2.line(canvas, tuple(pixels[start].tolist()), tuple(pixels[end].tolist()), (c0, c1, c2),
                 thickness=LINE_THICKNESS, lineType=cv2.LINE_8)
    return canvas


def draw_pose_image(points: np.ndarray, width: int, height: int, normalized: bool = False,
                    output_size: tuple[int, int] | None = None) -> np.ndarray:
    """Pose image (height, width, 3) uint8 in raw (network) channel order.

    ``points`` (N, >=2) are pixel coordinates of a ``width`` x ``height`` image, or already divided by the image
    size when ``normalized``. The canvas is drawn at 512x512 and resized (INTER_LINEAR) to (width, height); with
    ``output_size`` = (W, H) it is resized once more, as AniPortrait's vid2vid does (driving-frame size, then
    output size).
    """
    points = np.asarray(points, dtype=np.float64)
    if normalized:
        normalized_points = points[:, :2]
    else:
        normalized_points = points[:, :2] / np.array([width, height], dtype=np.float64)
    image = cv2.resize(draw_pose_canvas(normalized_points), (int(width), int(height)),
                       interpolation=cv2.INTER_LINEAR)
    if output_size is not None and tuple(output_size) != (width, height):
        image = cv2.resize(image, (int(output_size[0]), int(output_size[1])), interpolation=cv2.INTER_LINEAR)
    return image


def draw_pose_images(landmarks: LandmarkSequence, frames: slice | list[int] = slice(None)) -> np.ndarray:
    """Pose images (F, H, W, 3) uint8, raw channel order, of the ``frames`` of a landmark sequence: drawn at its
    width x height, then resized to its ``output_size`` if it has one."""
    return np.stack([draw_pose_image(points, landmarks.width, landmarks.height, output_size=landmarks.output_size)
                     for points in landmarks.points[frames]])


def raw_to_display(images: np.ndarray) -> np.ndarray:
    """Raw pose images (network channel order) -> display RGB, and back: the channels are reversed."""
    return np.ascontiguousarray(images[..., ::-1])


__all__ = ["CANVAS_SIZE", "EDGE_GROUPS", "canvas_pixels", "draw_pose_canvas", "draw_pose_image", "draw_pose_images",
           "raw_to_display"]
