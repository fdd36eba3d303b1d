"""Golden cases ``c_``: audio-driven landmarks (mesh + pose -> projection) and pose-image rendering, from the stored
MediaPipe arrays of the reference (``mp_*``) and the stored Audio2Mesh output (a_audio2mesh.npz)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data import FaceAnalysis, LandmarkSequence
from models.face.drawing import draw_pose_canvas, draw_pose_image, draw_pose_images
from models.face.projection import project_mesh_sequence, project_points

from .compare import Comparison, compare

PROJECTION_TOL = 1e-6   # px, float64 from the stored inputs (golden README)
EXACT = 0.0             # rendering is integer data


def check_mesh_projection(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    offsets = np.load(golden / "cases" / "a_audio2mesh.npz")["a2m_out"].reshape(-1, 468, 3)
    width, height = info["args"]["W"], info["args"]["H"]
    face = FaceAnalysis(lmks=data["mp_lmks"], lmks3d=data["mp_lmks3d"], trans_mat=data["mp_trans_mat"],
                        blendshapes=data["mp_bs"], width=width, height=height)
    results = [
        # the ProjectLandmarks path: reference mesh + Audio2Mesh offsets, posed and projected
        compare(case, "projected", project_mesh_sequence(face, offsets, data["pose_seq"]), data["projected"],
                PROJECTION_TOL, "from a2m_out + mp_*"),
        compare(case, "projected", project_points(data["pred_mesh"], face.trans_mat, data["pose_seq"], width, height),
                data["projected"], PROJECTION_TOL, "from the stored pred_mesh"),
        compare(case, "canvas512_frame0", draw_pose_canvas(data["projected"][0] / [width, height]),
                data["canvas512_frame0"], EXACT),
        compare(case, "ref_pose", draw_pose_image(face.lmks, width, height, normalized=True), data["ref_pose"], EXACT),
    ]
    # what Render Pose Image draws from Project Landmarks' output
    pose_images = draw_pose_images(LandmarkSequence(points=data["projected"], width=width, height=height, fps=30.0))
    differing = int((pose_images != data["pose_images"]).sum())
    results.append(compare(case, "pose_images", pose_images, data["pose_images"], EXACT,
                           f"from the stored projected; {differing} values differ"))
    return results


CASES = {"c_": check_mesh_projection}
