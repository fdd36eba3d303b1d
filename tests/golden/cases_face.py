"""Golden cases ``c_``: audio-driven landmarks (mesh + pose -> projection) and pose-image rendering, from the stored
MediaPipe arrays of the reference (``mp_*``) and the stored Audio2Mesh output (a_audio2mesh.npz).

The original analyses the reference at the swapped size (docs/departures.md#b1); the pack does so with its "swapped
(original)" analysis size, which is what is compared here (the default analyses at the video size)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from aniportrait.data import FaceAnalysis, LandmarkSequence, ReferenceFace
from aniportrait.face.drawing import draw_pose_canvas, draw_pose_images
from aniportrait.face.projection import project_mesh_sequence, project_points
from aniportrait.face.reference import ANALYSIS_SIZES, reference_pose_image, resize_for_analysis

from .compare import Comparison, compare

# px, float64 numpy from the stored inputs: measured 0 (README: atol 1e-6 for float64 re-derivations)
PROJECTION_TOL = 1e-6
EXACT = 0.0             # rendering is integer data
ORIGINAL_ANALYSIS = ANALYSIS_SIZES[1]


def original_reference(portrait_path: Path, data, prefix: str, width: int, height: int) -> ReferenceFace:
    """The reference as the pack prepares it in the original's mode, with the stored MediaPipe results (MediaPipe
    itself varies across builds/CPUs): the image it analyses is resized by the pack, the face comes from the
    golden."""
    portrait = np.array(Image.open(portrait_path).convert("RGB"))
    face = FaceAnalysis(lmks=data[f"{prefix}lmks"], lmks3d=data[f"{prefix}lmks3d"],
                        trans_mat=data[f"{prefix}trans_mat"], blendshapes=data[f"{prefix}bs"], width=width,
                        height=height)
    return ReferenceFace(face=face, image=resize_for_analysis(portrait, width, height, ORIGINAL_ANALYSIS))


def check_reference(case: str, data, reference: ReferenceFace) -> list[Comparison]:
    """The analysed image (the original stored it in BGR) and the reference pose image drawn from it."""
    return [compare(case, "ref_bgr_for_mediapipe", cv2.cvtColor(reference.image, cv2.COLOR_RGB2BGR),
                    data["ref_bgr_for_mediapipe"], EXACT, "the pack's resize, analysis size 'swapped (original)'"),
            compare(case, "ref_pose", reference_pose_image(reference), data["ref_pose"], EXACT)]


def check_mesh_projection(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    offsets = np.load(golden / "cases" / "a_audio2mesh.npz")["a2m_out"].reshape(-1, 468, 3)
    width, height = info["args"]["W"], info["args"]["H"]
    reference = original_reference(golden / "cases" / info["args"]["ref_image"], data, "mp_", width, height)
    face = reference.face
    results = check_reference(case, data, reference) + [
        # the ProjectLandmarks path: reference mesh + Audio2Mesh offsets, posed and projected
        compare(case, "projected", project_mesh_sequence(face, offsets, data["pose_seq"]), data["projected"],
                PROJECTION_TOL, "from a2m_out + mp_*"),
        compare(case, "projected", project_points(data["pred_mesh"], face.trans_mat, data["pose_seq"], width, height),
                data["projected"], PROJECTION_TOL, "from the stored pred_mesh"),
        compare(case, "canvas512_frame0", draw_pose_canvas(data["projected"][0] / [width, height]),
                data["canvas512_frame0"], EXACT),
    ]
    # what Render Pose Image draws from Project Landmarks' output
    pose_images = draw_pose_images(LandmarkSequence(points=data["projected"], width=width, height=height, fps=30.0))
    differing = int((pose_images != data["pose_images"]).sum())
    results.append(compare(case, "pose_images", pose_images, data["pose_images"], EXACT,
                           f"from the stored projected; {differing} values differ"))
    return results


CASES = {"c_": check_mesh_projection}
