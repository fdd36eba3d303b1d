"""The reference portrait prepared as AniPortrait prepares it: optionally the app's face crop (docs/departures.md#b15),
then resized to the generation size and analysed there (docs/pipeline.md#reference-image)."""
from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np

from ..data import FaceAnalysis, ReferenceFace
from .crop import crop_face
from .drawing import draw_pose_image
from .landmarker import FaceLandmarker

log = logging.getLogger("aniportrait")
STRETCH_HINT_RATIO = 1.5  # aspect ratios further apart than this squeeze the face out of recognition

# How the portrait is sized for the face analysis. AniPortrait's scripts pass (H, W) where OpenCV expects
# (width, height) (docs/departures.md#b1): for W != H MediaPipe sees the portrait squashed to H x W, and the head pose
# measured there is then projected into the W x H video. Identical for square videos.
ANALYSIS_SIZES = ("video size", "swapped (original)")


def analysis_size(width: int, height: int, analysis: str = ANALYSIS_SIZES[0]) -> tuple[int, int]:
    """(width, height) of the image MediaPipe analyses for a ``width`` x ``height`` video."""
    if analysis not in ANALYSIS_SIZES:
        raise ValueError(f"AniPortrait: unknown reference analysis size '{analysis}'; choose one of "
                         f"{', '.join(ANALYSIS_SIZES)}.")
    return (height, width) if analysis == ANALYSIS_SIZES[1] else (width, height)


def resize_for_analysis(portrait: np.ndarray, width: int, height: int,
                        analysis: str = ANALYSIS_SIZES[0]) -> np.ndarray:
    """The portrait as MediaPipe gets it (bilinear, as the original's ``cv2.resize``)."""
    return cv2.resize(portrait, analysis_size(width, height, analysis), interpolation=cv2.INTER_LINEAR)


def reference_pose_image(reference: ReferenceFace) -> np.ndarray:
    """The reference face's pose image (raw channel order) at the size it was analysed at, as the original draws
    its ``ref_pose`` (for the swapped analysis: H rows x W columns swapped; the PoseGuider ignores it anyway)."""
    height, width = reference.image.shape[:2]
    return draw_pose_image(reference.face.lmks, width, height, normalized=True)


def analyse_reference(landmarker: FaceLandmarker, source: np.ndarray, width: int, height: int,
                      crop: bool = False, analysis: str = ANALYSIS_SIZES[0]) -> tuple[ReferenceFace, np.ndarray]:
    """The analysed reference of an (H, W, 3) uint8 RGB portrait, and the portrait it was made from at source
    resolution (the crop, or ``source`` itself), which the reference encoders resize themselves.

    With ``crop`` the face is first found at the source size and cropped like the app. The (cropped) portrait is
    resized bilinearly to ``width`` x ``height`` (or swapped, ``analysis``, see ``ANALYSIS_SIZES``) and analysed
    there; the face's width/height are the video's, which every later stage projects into.
    """
    box = None
    portrait = source
    if crop:
        found = landmarker.analyse(source)
        if found is None:
            raise ValueError("AniPortrait: MediaPipe found no face in the reference image (at its own size, also "
                             "searched in tiles when it is very wide or tall), so it cannot be cropped. Use a "
                             "portrait where one face is clearly visible, frontal and not tiny.")
        _warn_if_several(found)
        portrait, box = crop_face(source, found.lmks)
    analysed = resize_for_analysis(portrait, width, height, analysis)
    face = landmarker.analyse(analysed)
    if face is None:
        raise ValueError(f"AniPortrait: MediaPipe found no face in the reference image resized to "
                         f"{analysed.shape[1]}x{analysed.shape[0]}. "
                         f"{_no_face_hint(portrait, analysed.shape[1], analysed.shape[0], crop)}")
    face = dataclasses.replace(face, width=width, height=height)  # the video's size, also after a swapped analysis
    if not crop:
        _warn_if_several(face)
    reference = ReferenceFace(face=face, image=analysed, crop_box=box, source_size=(source.shape[1], source.shape[0]))
    return reference, portrait


def _warn_if_several(face: FaceAnalysis) -> None:
    if face.faces_in_image > 1:
        log.warning("AniPortrait: %d faces in the reference image; using the largest one. Crop the image to the "
                    "face you want if it is another.", face.faces_in_image)


def _no_face_hint(portrait: np.ndarray, width: int, height: int, crop: bool) -> str:
    """What to try that can work, given why the face was probably lost."""
    source_height, source_width = portrait.shape[:2]
    stretch = (source_width / source_height) / (width / height)
    if max(stretch, 1 / stretch) > STRETCH_HINT_RATIO:
        return (f"The {source_width}x{source_height} image is squeezed into {width}x{height}, which distorts the "
                "face: use crop 'auto' (it finds the face and crops a square around it) or a width and height with "
                "the image's aspect ratio.")
    if crop:
        return "Use a portrait where the face is larger and frontal."
    return "Use crop 'auto' (a square around the face) or a portrait where the face is larger."
