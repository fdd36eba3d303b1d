"""Golden cases ``j_`` (vid2vid face reenactment, landmark path) and ``k_`` (head-pose template), from the stored
per-frame MediaPipe arrays (MediaPipe itself differs across versions/CPUs; the retarget maths must not).

Compared in the pack's original-compatible modes: the reference analysed at the swapped size (``analysis_size``
"swapped (original)") and the face projected at the driving video's size (``size_mode`` "driving"). The driving
video is decoded by ``aniportrait.video_io`` and must give the original's frames byte for byte."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from aniportrait.data import FaceTrack
from aniportrait.face.drawing import draw_pose_canvas, draw_pose_image, draw_pose_images
from aniportrait.face.pose_template import (relative_head_matrices, relative_head_poses, resample_template,
                                       template_time_axes, pose_template)
from aniportrait.face.projection import matrix_to_euler_and_translation, perspective_matrix
from aniportrait.face.retarget import retarget_face, retarget_motion
from aniportrait.video_io import read_video_frames

from .cases_face import check_reference, original_reference
from .compare import Comparison, compare

# float64 numpy/scipy from the stored MediaPipe arrays: measured <= 5.7e-14 here; the golden README measured what
# scipy 1.11 vs 1.17 changes (Rotation.from_matrix orthonormalises differently): <= 3.3e-6 deg, 3.5e-8, 2.2e-6 px
POSE_TOL = 1e-5          # deg / translation
MATRIX_TOL = 1e-7
VERTEX_TOL = 1e-12       # plain float64 additions: measured 0
PROJECTION_TOL = 1e-5    # px
EXACT = 0.0
ORIGINAL_SIZE_MODE = "driving"  # project at the driving video's size, then resize (vid2vid)


def _track(data, args: dict, frames: np.ndarray) -> FaceTrack:
    return FaceTrack(lmks=data["src_lmks"][frames], lmks3d=data["src_lmks3d"][frames],
                     trans_mat=data["src_trans_mat"][frames], blendshapes=data["src_bs"][frames],
                     width=args["frame_width"], height=args["frame_height"], fps=float(args["src_fps"]))


def _check_variant(case: str, data, args: dict, reference, prefix: str) -> list[Comparison]:
    """One retarget run (full, -acc subsampled, or cut at the faceless frame) against the ``prefix`` arrays."""
    frames = data[f"{prefix}frame_indices"]
    track = _track(data, args, frames)
    motion = retarget_motion(track.lmks3d, track.trans_mat, track.blendshapes, reference)
    # the node path: fps None = the original's rate rule
    landmarks = retarget_face(track, reference, size_mode=ORIGINAL_SIZE_MODE)
    pose_images = draw_pose_images(landmarks)
    results = [
        compare(case, f"{prefix}min_bs_idx", motion.neutral_index, data[f"{prefix}min_bs_idx"], EXACT),
        compare(case, f"{prefix}pose_arr", motion.poses, data[f"{prefix}pose_arr"], POSE_TOL),
        compare(case, f"{prefix}pose_arr_smooth", motion.smoothed_poses, data[f"{prefix}pose_arr_smooth"], POSE_TOL),
        compare(case, f"{prefix}projected", landmarks.points, data[f"{prefix}projected"], PROJECTION_TOL),
        compare(case, f"{prefix}pose_images", pose_images, data[f"{prefix}pose_images"], EXACT,
                f"{int((pose_images != data[f'{prefix}pose_images']).sum())} values differ"),
    ]
    if f"{prefix}verts_retarget" in data:
        results.append(compare(case, f"{prefix}verts_retarget", motion.vertices, data[f"{prefix}verts_retarget"],
                               VERTEX_TOL))
    if prefix == "":
        results.append(compare(case, "pose_mat_smooth", motion.matrices, data["pose_mat_smooth"], MATRIX_TOL))
        lmk_images = np.stack([draw_pose_image(points, landmarks.width, landmarks.height)
                               for points in landmarks.points])
        results.append(compare(case, "lmk_images", lmk_images, data["lmk_images"], EXACT))
        results.append(compare(case, "canvas512_frame0",
                               draw_pose_canvas(landmarks.points[0] / [landmarks.width, landmarks.height]),
                               data["canvas512_frame0"], EXACT))
    return results


def check_reenactment(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    args = info["args"]
    reference = original_reference(golden / "cases" / args["ref_image"], data, "ref_", args["W"], args["H"])
    angles, translation = matrix_to_euler_and_translation(data["src_trans_mat"])
    results = [
        _check_driving_frames(case, golden, args, data["driving_frames"]),
        compare(case, "pose_arr_abs", np.concatenate([angles, translation], axis=1), data["pose_arr_abs"], POSE_TOL),
        compare(case, "perspective_P", perspective_matrix(args["frame_width"] / args["frame_height"]),
                data["perspective_P"], EXACT),
        *check_reference(case, data, reference),
    ]
    for prefix in ("", "acc_", "noface_"):
        results += _check_variant(case, data, args, reference.face, prefix)
    return results


def _case_video(golden: Path, description: str) -> Path:
    """The input video an index.json entry names (its first word: "driving_video_wide.mp4 (this folder; ...)")."""
    return golden / "cases" / description.split()[0]


def _check_driving_frames(case: str, golden: Path, args: dict, expected: np.ndarray) -> Comparison:
    """The stored driving frames from the pack's decoding of the case's video, prepared as the golden describes
    (optional crop, optional resize with the named OpenCV interpolation)."""
    preparation = args["driving_frame_preparation"]
    first, stop = args["driving_video_frames"]
    frames, _ = read_video_frames(_case_video(golden, args["driving_video"]))
    frames = frames[first:stop]
    box = preparation.get("crop_box_xyxy")
    if box:
        frames = frames[:, box[1]:box[3], box[0]:box[2]]
    if preparation.get("resize_wh"):
        interpolation = getattr(cv2, preparation["interpolation"].removeprefix("cv2."))
        frames = np.stack([cv2.resize(frame, tuple(preparation["resize_wh"]), interpolation=interpolation)
                           for frame in frames])
    return compare(case, "driving_frames", frames, expected, EXACT,
                   f"decoded by aniportrait.video_io; {int((frames != expected).sum())} values differ")


def _decoded_frame_md5(video: Path) -> list[str]:
    """md5 of every frame as the pack decodes it, in the BGR byte order the golden hashed."""
    frames, _ = read_video_frames(video)
    return [hashlib.md5(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR).tobytes()).hexdigest() for frame in frames]


def check_pose_template(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    args = info["args"]
    trans_mats, fps = data["trans_mat_f32"], float(args["fps"])
    poses = relative_head_poses(trans_mats)
    old_time, new_time = template_time_axes(len(trans_mats), fps)
    decoded = _decoded_frame_md5(_case_video(golden, args["video"]))[slice(*args["video_frames"])]
    expected = data["frame_md5"]
    md5_mismatches = sum(a != b for a, b in zip(decoded, expected)) + abs(len(decoded) - len(expected))
    return [
        compare(case, "frame_md5", md5_mismatches, 0, EXACT, "frames decoded by aniportrait.video_io that differ"),
        compare(case, "pose_mats", relative_head_matrices(trans_mats), data["pose_mats"], EXACT),
        compare(case, "pose_arr", poses, data["pose_arr"], POSE_TOL),
        compare(case, "old_time", old_time, data["old_time"], EXACT),
        compare(case, "new_time", new_time, data["new_time"], EXACT),
        compare(case, "pose_arr_interp", resample_template(poses, fps), data["pose_arr_interp"], POSE_TOL),
        compare(case, "pose_temp", pose_template(trans_mats, fps), data["pose_temp"], POSE_TOL),
    ]


CASES = {"j_": check_reenactment, "k_": check_pose_template}
