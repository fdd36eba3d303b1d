"""Where the sampler's pose images come from, a context window at a time.

A whole video of pose images is large (0.75 MB per frame at 512² as uint8, 3 MB as a ComfyUI IMAGE), while the
landmarks they are drawn from are 7.5 KB per frame. ``LandmarkPoseImages`` draws a window's images when the
sampler needs them, so no stage holds the video's pose images at once; ``PoseImageArray`` serves images made
elsewhere (a pose video). Both give uint8 (n, H, W, 3) frames in the drawing's raw channel order at the video size.
"""
from __future__ import annotations

import logging
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from ..data import LandmarkSequence
from ..face.drawing import draw_pose_images

log = logging.getLogger("aniportrait")


@runtime_checkable
class PoseSource(Protocol):
    """Pose images of a video, given by frame index."""

    num_frames: int

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 (len(indices), H, W, 3), raw channel order, at the size the source was made for."""


def resize_note(size: tuple[int, int], width: int, height: int) -> None:
    log.warning("AniPortrait: pose images are %dx%d, the reference was encoded for %dx%d; resizing them.",
                size[0], size[1], width, height)


def resize_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2 bilinear, as AniPortrait's scripts resize pose images."""
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


class PoseImageArray:
    """Pose images that already exist as one array (checked and resized by ``prepare_pose_images``)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.num_frames = images.shape[0]

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        return self.images[list(indices)]


class LandmarkPoseImages:
    """Pose images drawn on demand from a landmark sequence, for a ``width`` x ``height`` video: exactly the images
    Render Pose Image makes (drawn at the landmarks' size, then their output size), resized to the video size
    like pose images passed as an array."""

    def __init__(self, landmarks: LandmarkSequence, width: int, height: int) -> None:
        points = np.asarray(landmarks.points)
        if points.ndim != 3 or points.shape[-1] < 2 or len(points) == 0:
            raise ValueError(f"AniPortrait: the landmarks must hold (frames >= 1, points, 2) coordinates, got "
                             f"{points.shape}. Connect Project Landmarks or Retarget Face.")
        self.landmarks = landmarks
        self.num_frames = len(points)
        self.size = (width, height)
        drawn = tuple(landmarks.output_size or (landmarks.width, landmarks.height))
        self.resize = drawn != self.size
        if self.resize:
            resize_note(drawn, width, height)

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        images = draw_pose_images(self.landmarks, list(indices))
        return np.stack([resize_frame(image, *self.size) for image in images]) if self.resize else images
