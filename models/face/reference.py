"""The reference portrait prepared as AniPortrait prepares it: optionally the app's face crop (spec §13.3), then
resized to the generation size and analysed there (spec §1.1)."""
from __future__ import annotations

import cv2
import numpy as np

from ..data import ReferenceFace
from .crop import crop_face
from .landmarker import FaceLandmarker


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
            raise ValueError("AniPortrait: MediaPipe found no face in the reference image (at its own size), so it "
                             "cannot be cropped. Use a portrait with a clearly visible face.")
        portrait, box = crop_face(source, found.lmks)
    # dsize is (width, height): the original passed (H, W) here (bug B1, only visible for W != H)
    analysed = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_LINEAR)
    face = landmarker.analyse(analysed)
    if face is None:
        hint = ("a portrait where the face is larger" if crop
                else "crop 'auto' (a square around the face) or a larger face")
        raise ValueError(f"AniPortrait: MediaPipe found no face in the reference image resized to {width}x{height}. "
                         f"Try {hint}.")
    reference = ReferenceFace(face=face, image=analysed, crop_box=box, source_size=(source.shape[1], source.shape[0]))
    return reference, portrait
