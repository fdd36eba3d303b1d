"""The reference portrait prepared as AniPortrait prepares it: optionally the app's face crop (spec §13.3), then
resized to the generation size and analysed there (spec §1.1)."""
from __future__ import annotations

import logging

import cv2
import numpy as np

from ..data import FaceAnalysis, ReferenceFace
from .crop import crop_face
from .landmarker import FaceLandmarker

log = logging.getLogger("aniportrait")
STRETCH_HINT_RATIO = 1.5  # aspect ratios further apart than this squeeze the face out of recognition


def analyse_reference(landmarker: FaceLandmarker, source: np.ndarray, width: int, height: int,
                      crop: bool = False) -> tuple[ReferenceFace, np.ndarray]:
    """The analysed reference of an (H, W, 3) uint8 RGB portrait, and the portrait it was made from at source
    resolution (the crop, or ``source`` itself), which the reference encoders resize themselves.

    With ``crop`` the face is first found at the source size and cropped like the app. The (cropped) portrait is
    resized bilinearly to ``width`` x ``height`` and analysed at that size, which is what every later stage
    measures in.
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
    # dsize is (width, height): the original passed (H, W) here (bug B1, only visible for W != H)
    analysed = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_LINEAR)
    face = landmarker.analyse(analysed)
    if face is None:
        raise ValueError(f"AniPortrait: MediaPipe found no face in the reference image resized to {width}x{height}. "
                         f"{_no_face_hint(portrait, width, height, crop)}")
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
