"""Face regions on MediaPipe's 468-vertex face mesh, and soft per-vertex weights for them.

The index groups follow MediaPipe's documented landmark groups (lips, eyelid contours, eyebrows). Weights are
measured on a face's own canonical mesh (``FaceAnalysis.lmks3d``: pose removed, centimetres, y up), so a region
fades out over a stated distance in cm around its vertices whatever the face's proportions.
"""
from __future__ import annotations

import numpy as np

MESH_VERTICES = 468

# outer and inner lip contours, left mouth corner to right
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14   # the middle of the inner lip contour, top and bottom

# eyelid contours between the eye corners; entry i of an upper lid faces entry i of its lower lid
RIGHT_EYE_CORNERS = (33, 133)
RIGHT_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)
RIGHT_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_CORNERS = (263, 362)
LEFT_UPPER_LID = (466, 388, 387, 386, 385, 384, 398)
LEFT_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
UPPER_LIDS = RIGHT_UPPER_LID + LEFT_UPPER_LID
LOWER_LIDS = RIGHT_LOWER_LID + LEFT_LOWER_LID
EYES = RIGHT_EYE_CORNERS + LEFT_EYE_CORNERS + UPPER_LIDS + LOWER_LIDS
# the middle of each eye's lids (right, left): where the eyelid opening is measured
LID_MIDDLES = ((159, 145), (386, 374))

RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
BROWS = RIGHT_BROW + LEFT_BROW

REGIONS = ("mouth", "eyes", "brows")


def region_core(name: str, mesh: np.ndarray) -> np.ndarray:
    """Vertex indices that fully belong to a region. The mouth is the lips plus everything below them (the
    chin and jaw, which open with the mouth), found on the face's canonical ``mesh`` (468, 3), y up."""
    if name == "mouth":
        below_lips = np.flatnonzero(mesh[:, 1] < mesh[list(LIPS), 1].min())
        return np.union1d(np.array(LIPS), below_lips)
    if name == "eyes":
        return np.array(EYES)
    if name == "brows":
        return np.array(BROWS)
    raise ValueError(f"AniPortrait: unknown face region '{name}'; choose one of {', '.join(REGIONS)}.")


def soft_weights(mesh: np.ndarray, core: np.ndarray, fade_cm: float) -> np.ndarray:
    """(468,) weights: 1 on the ``core`` vertices, falling smoothly (smoothstep of the distance) to 0 at
    ``fade_cm`` centimetres from the nearest core vertex of the canonical ``mesh``; 0 = a hard border."""
    mesh = checked_mesh(mesh)
    distance = np.linalg.norm(mesh[:, None, :] - mesh[None, np.asarray(core), :], axis=-1).min(axis=1)
    if fade_cm <= 0:
        return (distance == 0).astype(np.float64)
    inside = np.clip(1.0 - distance / fade_cm, 0.0, 1.0)
    return inside * inside * (3.0 - 2.0 * inside)


def region_weights(name: str, mesh: np.ndarray, fade_cm: float) -> np.ndarray:
    """Soft (468,) weights of the named region on a face's canonical mesh."""
    return soft_weights(mesh, region_core(name, checked_mesh(mesh)), fade_cm)


def checked_mesh(mesh: np.ndarray) -> np.ndarray:
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.shape != (MESH_VERTICES, 3):
        raise ValueError(f"AniPortrait: a face mesh has shape ({MESH_VERTICES}, 3), got {mesh.shape}.")
    return mesh
