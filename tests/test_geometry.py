"""Geometry beyond the golden cases: Euler helpers, projection, pose drawing rules, retarget options (size, fps),
smoothing, and a head-pose template made from the real video."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from aniportrait.data import FaceAnalysis, FaceTrack
from aniportrait.face.drawing import CANVAS_SIZE, EDGE_GROUPS, draw_pose_canvas, draw_pose_image, raw_to_display
from aniportrait.face.pose_template import pose_template
from aniportrait.face.projection import (euler_and_translation_to_matrix, matrix_to_euler_and_translation,
                                    perspective_matrix, project_points, project_points_with_trans)
from aniportrait.face.retarget import resample_to_fps, retarget_face, retarget_motion
from aniportrait.smoothing import smooth_pose_seq



def _reference(case, width: int = 128, height: int = 128) -> FaceAnalysis:
    return FaceAnalysis(lmks=case["ref_lmks"], lmks3d=case["ref_lmks3d"], trans_mat=case["ref_trans_mat"],
                        blendshapes=case["ref_bs"], width=width, height=height)


def _track(case, fps: float, width: int = 192, height: int = 192, frames=slice(None)) -> FaceTrack:
    return FaceTrack(lmks=case["src_lmks"][frames], lmks3d=case["src_lmks3d"][frames],
                     trans_mat=case["src_trans_mat"][frames], blendshapes=case["src_bs"][frames],
                     width=width, height=height, fps=fps)


# --- Euler helpers and projection -------------------------------------------------------------------------------

def test_euler_round_trip_and_convention():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-170, -80, -170], [170, 80, 170], size=(50, 3))
    translation = rng.normal(size=(50, 3)) * 10
    matrices = euler_and_translation_to_matrix(angles, translation)
    assert matrices.shape == (50, 4, 4)
    np.testing.assert_array_equal(matrices[:, 3], np.tile([0, 0, 0, 1.0], (50, 1)))
    back_angles, back_translation = matrix_to_euler_and_translation(matrices)
    np.testing.assert_allclose(back_angles, angles, atol=1e-9)
    np.testing.assert_array_equal(back_translation, translation)
    # 'xyz' = extrinsic x, then y, then z: R = Rz Ry Rx
    rx, ry, rz = (Rotation.from_euler(axis, a, degrees=True).as_matrix() for axis, a in zip("xyz", angles[0]))
    np.testing.assert_allclose(matrices[0, :3, :3], rz @ ry @ rx, atol=1e-12)
    # single vectors work too
    np.testing.assert_array_equal(euler_and_translation_to_matrix(angles[0], translation[0]), matrices[0])


def test_matrix_to_euler_drops_uniform_scale():
    matrix = euler_and_translation_to_matrix([10.0, -20.0, 5.0], [1.0, 2.0, -30.0])
    scaled = matrix.copy()
    scaled[:3, :3] *= 1.7
    angles, translation = matrix_to_euler_and_translation(scaled)
    np.testing.assert_allclose(angles, [10.0, -20.0, 5.0], atol=1e-9)
    np.testing.assert_array_equal(translation, [1.0, 2.0, -30.0])


def test_perspective_matrix_constants():
    matrix = perspective_matrix(1.0)
    assert matrix.dtype == np.float32
    assert matrix[0, 0] == np.float32(1.6318517) and matrix[1, 1] == -np.float32(1.6318517)
    assert matrix[2, 3] == np.float32(-10000 / 9999)       # the 1.0001 depth factor of docs/pipeline.md#projection
    assert perspective_matrix(16 / 9)[0, 0] == np.float32(1 / math.tan(math.radians(31.5)) / (16 / 9))


@pytest.mark.parametrize("prefix, size", [("mp", 128), ("mp512", 512)])
def test_identity_pose_reproduces_mediapipe_landmarks(mesh_case, prefix, size):
    """Spec Appendix A: trans_mat · lmks3d projected with no extra pose lands on MediaPipe's own landmarks."""
    lmks3d, trans_mat = mesh_case[f"{prefix}_lmks3d"], mesh_case[f"{prefix}_trans_mat"]
    projected = project_points(lmks3d[None], trans_mat, np.zeros((1, 6)), size, size)[0]
    error = np.abs(projected - mesh_case[f"{prefix}_lmks"][:468, :2] * size).max()
    assert error < 0.05, f"{error:.4f} px"


def test_projection_of_driving_frames_is_sub_pixel(reenactment_case):
    projected = project_points_with_trans(reenactment_case["src_lmks3d"], reenactment_case["src_trans_mat"], 192, 192)
    error = np.abs(projected - reenactment_case["src_lmks"][:, :468, :2] * 192).max()
    assert error < 0.05, f"{error:.4f} px"


def test_projection_aspect_ratio(mesh_case):
    """Vertical pixels depend only on the height; horizontal NDC shrinks by the aspect ratio (W / H)."""
    points = mesh_case["pred_mesh"][:3]
    poses = mesh_case["pose_seq"]
    square = project_points(points, mesh_case["mp_trans_mat"], poses, 128, 128)
    wide = project_points(points, mesh_case["mp_trans_mat"], poses, 256, 128)
    np.testing.assert_allclose(wide[..., 1], square[..., 1], atol=1e-9)
    np.testing.assert_allclose(wide[..., 0] / 256 * 2 - 1, (square[..., 0] / 128 * 2 - 1) / 2, atol=1e-7)


def test_projection_needs_a_pose_per_mesh_frame(mesh_case):
    with pytest.raises(ValueError, match="at least as many head poses"):
        project_points(mesh_case["pred_mesh"][:5], mesh_case["mp_trans_mat"], np.zeros((4, 6)), 128, 128)


# --- drawing ----------------------------------------------------------------------------------------------------

def _single_edge_landmarks(start: tuple[float, float], end: tuple[float, float]) -> np.ndarray:
    """468 normalised landmarks, all off-canvas except the two endpoints of the lips' first edge (61 -> 146)."""
    points = np.full((468, 2), 2.0)
    points[61], points[146] = start, end
    return points


def _expected_single_line(start_px, end_px) -> np.ndarray:
    canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE, 3), np.uint8)
    cv2.line(canvas, start_px, end_px, (10, 180, 20), thickness=2)
    return canvas


def test_drawing_maps_coordinates_like_mediapipe():
    # x * 512 floored after float32 rounding; 1.0 maps to the last pixel, not outside
    points = _single_edge_landmarks((0.25, 0.5), (1.0, 0.0))
    np.testing.assert_array_equal(draw_pose_canvas(points), _expected_single_line((128, 256), (511, 0)))
    # 0.1 is stored as float32 0.100000001490116..., so 0.1 * 512 = 51.2000... -> 51
    points = _single_edge_landmarks((0.1, 0.7), (0.3, 0.9))
    np.testing.assert_array_equal(draw_pose_canvas(points), _expected_single_line((51, 358), (153, 460)))


@pytest.mark.parametrize("outside", [(1.0000002, 0.5), (0.5, -1e-7), (-0.3, 0.2), (np.nan, 0.5), (np.inf, 0.5)])
def test_drawing_drops_out_of_range_landmarks(outside):
    assert draw_pose_canvas(_single_edge_landmarks((0.5, 0.5), outside)).max() == 0


def test_drawing_keeps_the_range_ends():
    # 1 + 1e-10 rounds to exactly 1.0 in float32; -0.0 counts as 0
    points = _single_edge_landmarks((1 + 1e-10, -0.0), (0.5, 0.5))
    np.testing.assert_array_equal(draw_pose_canvas(points), _expected_single_line((511, 0), (256, 256)))


def test_dropped_landmark_removes_only_its_edges(mesh_case):
    lmks = mesh_case["mp_lmks"]
    full = draw_pose_canvas(lmks)
    without = lmks.copy()
    without[17, :2] = (-1.0, 0.5)    # shared by both bottom outer-lip groups
    canvas = draw_pose_canvas(without)
    changed = np.argwhere((canvas != full).any(axis=2))
    assert len(changed) > 0
    centre = np.floor(lmks[17, :2] * CANVAS_SIZE)[::-1]
    reach = np.linalg.norm(lmks[[84, 314], :2] - lmks[17, :2], axis=1).max() * CANVAS_SIZE + 3
    assert np.linalg.norm(changed - centre, axis=1).max() <= reach


def test_draw_order_and_colours(mesh_case):
    canvas = draw_pose_canvas(mesh_case["mp_lmks"])
    colours = {tuple(c) for c in canvas.reshape(-1, 3).tolist()} - {(0, 0, 0)}
    assert colours == {colour for _, colour in EDGE_GROUPS}
    # lip corner 61 is shared; the last group touching it (outer top left) wins at its pixel
    x, y = np.floor(mesh_case["mp_lmks"][61, :2] * CANVAS_SIZE).astype(int)
    assert tuple(canvas[y, x]) == (20, 80, 100)


def test_non_square_pose_image(mesh_case):
    pixels = mesh_case["mp_lmks"][:, :2] * [96, 160]
    image = draw_pose_image(pixels, 96, 160)
    assert image.shape == (160, 96, 3) and image.dtype == np.uint8
    # the same normalised coordinates, so the same canvas, resized to the requested size
    expected = cv2.resize(draw_pose_canvas(mesh_case["mp_lmks"]), (96, 160), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(image, expected)
    # a second size resizes once more
    twice = draw_pose_image(pixels, 96, 160, output_size=(64, 64))
    np.testing.assert_array_equal(twice, cv2.resize(expected, (64, 64), interpolation=cv2.INTER_LINEAR))


def test_drawing_rejects_too_few_landmarks():
    with pytest.raises(ValueError, match="468"):
        draw_pose_canvas(np.zeros((100, 2)))


def test_raw_to_display_reverses_channels():
    raw = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(raw_to_display(raw)[..., 0], raw[..., 2])
    np.testing.assert_array_equal(raw_to_display(raw_to_display(raw)), raw)


# --- smoothing --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_smoothing_is_a_truncated_centred_mean(window):
    rng = np.random.default_rng(window)
    seq = rng.normal(size=(12, 6))
    half = window // 2
    expected = np.stack([seq[max(0, i - half):i + half + 1].mean(axis=0) for i in range(len(seq))])
    np.testing.assert_allclose(smooth_pose_seq(seq, window), expected, rtol=0, atol=1e-13)
    assert smooth_pose_seq(seq.astype(np.float32), window).dtype == np.float32


def test_smoothing_rejects_empty_window():
    with pytest.raises(ValueError, match="window"):
        smooth_pose_seq(np.zeros((3, 6)), 0)


# --- retarget: sizes and frame rates -----------------------------------------------------------------------------

def test_retarget_size_modes(reenactment_case):
    """Driving video 16:9, reference square: 'auto' projects at the output size (no stretch), 'driving' is the
    original (face squeezed horizontally by the driving aspect ratio)."""
    track = _track(reenactment_case, 25.0, width=192, height=108)
    reference = _reference(reenactment_case)
    auto = retarget_face(track, reference, size_mode="auto")
    output = retarget_face(track, reference, size_mode="output")
    driving = retarget_face(track, reference, size_mode="driving")
    assert (auto.width, auto.height, auto.output_size) == (128, 128, (128, 128))
    np.testing.assert_array_equal(auto.points, output.points)
    assert (driving.width, driving.height, driving.output_size) == (192, 108, (128, 128))
    # same vertical NDC; horizontal NDC scaled by 1 / aspect(192/108) in the original
    np.testing.assert_allclose(driving.points[..., 1] / 108, output.points[..., 1] / 128, atol=1e-9)
    np.testing.assert_allclose(driving.points[..., 0] / 192 * 2 - 1, (output.points[..., 0] / 128 * 2 - 1) * 108 / 192,
                               atol=1e-6)
    image = draw_pose_image(driving.points[0], driving.width, driving.height, output_size=driving.output_size)
    assert image.shape == (128, 128, 3)
    with pytest.raises(ValueError, match="size mode"):
        retarget_face(track, reference, size_mode="stretch")


def test_retarget_same_aspect_keeps_the_original_path(reenactment_case):
    landmarks = retarget_face(_track(reenactment_case, 25.0, 384, 384), _reference(reenactment_case, 256, 256))
    assert (landmarks.width, landmarks.height, landmarks.output_size) == (384, 384, (256, 256))


def test_resample_to_fps_is_linear_in_time():
    times = np.arange(40) / 25.0
    values = np.stack([3.0 + 2.0 * times, -times], axis=1)
    resampled = resample_to_fps(values, 25.0, 30.0)
    assert len(resampled) == 47                         # instants k/30 up to the last frame at 39/25 s
    new_times = np.arange(47) / 30.0
    np.testing.assert_allclose(resampled, np.stack([3.0 + 2.0 * new_times, -new_times], axis=1), atol=1e-12)
    np.testing.assert_array_equal(resampled[::6], values[::5])   # shared instants are exact source frames
    np.testing.assert_array_equal(resample_to_fps(values, 25.0, 25.0), values)


def test_sixty_fps_becomes_every_second_frame(reenactment_case):
    """AniPortrait's vid2vid takes every 2nd frame of a 60 fps video; fps=None keeps that rule, 30 gives the same."""
    reference = _reference(reenactment_case)
    sixty = _track(reenactment_case, 60.0)
    halved = _track(reenactment_case, 30.0, frames=slice(None, None, 2))
    expected = retarget_face(halved, reference)
    for fps in (None, 30.0):
        landmarks = retarget_face(sixty, reference, fps=fps)
        assert landmarks.fps == 30.0 and len(landmarks.points) == 20
        np.testing.assert_array_equal(landmarks.points, expected.points)


def test_retarget_resamples_25_to_30_fps(reenactment_case):
    reference = _reference(reenactment_case)
    track = _track(reenactment_case, 25.0)
    motion = retarget_motion(track.lmks3d, track.trans_mat, track.blendshapes, reference, source_fps=25.0,
                             target_fps=30.0)
    original = retarget_motion(track.lmks3d, track.trans_mat, track.blendshapes, reference)
    assert len(motion.poses) == 47 and len(original.poses) == 40
    # instants shared by both rates (every 0.2 s) carry the original per-frame pose exactly
    np.testing.assert_array_equal(motion.poses[::6], original.poses[::5])
    # in between: on the segment of the two neighbouring frames
    np.testing.assert_allclose(motion.poses[1], original.poses[0] + (original.poses[1] - original.poses[0]) * (25 / 30),
                               atol=1e-9)
    landmarks = retarget_face(track, reference, fps=30.0)
    assert landmarks.fps == 30.0 and landmarks.points.shape == (47, 468, 2)
    # unchanged rate = the original rule
    np.testing.assert_array_equal(retarget_face(track, reference, fps=25.0).points, retarget_face(track, reference).points)


def test_retarget_expression_is_relative_to_the_most_neutral_frame(reenactment_case):
    reference = _reference(reenactment_case)
    track = _track(reenactment_case, 25.0)
    motion = retarget_motion(track.lmks3d, track.trans_mat, track.blendshapes, reference)
    neutral = int(np.argmin(track.blendshapes.sum(axis=1)))
    assert motion.neutral_index == neutral
    np.testing.assert_array_equal(motion.vertices[neutral], reference.lmks3d)
    # translation starts at the reference's; rotation is the driver's own
    np.testing.assert_array_equal(motion.poses[0, 3:], reference.trans_mat[:3, 3])
    driver_angles, _ = matrix_to_euler_and_translation(track.trans_mat)
    np.testing.assert_array_equal(motion.poses[:, :3], driver_angles)


# --- head-pose template -----------------------------------------------------------------------------------------

def test_pose_template_from_the_video(golden_dir, assets_dir):
    """Video -> MediaPipe -> template, end to end, against the template the original made from the same video
    (MediaPipe 1.2.2 + the geometry port instead of 0.10.11: measured <= 1.9e-3 deg / cm)."""
    from aniportrait.face.landmarker import FaceLandmarker
    from aniportrait.face.track import track_faces
    from aniportrait.video_io import read_video_frames

    frames, fps = read_video_frames(golden_dir / "cases" / "pose_ref_video.mp4")
    with FaceLandmarker(assets_dir / "face_landmarker_v2_with_blendshapes.task") as landmarker:
        track = track_faces(frames, landmarker, float(fps))
    template = pose_template(track.trans_mat, track.fps)
    expected = np.load(golden_dir / "cases" / "k_pose_template.npz")["pose_temp"]
    assert template.shape == expected.shape == (150, 6)
    np.testing.assert_allclose(template, expected, rtol=0, atol=2e-2)


def test_pose_template_at_30_fps_only_smooths():
    rng = np.random.default_rng(3)
    matrices = euler_and_translation_to_matrix(rng.normal(size=(20, 3)) * 5, rng.normal(size=(20, 3)))
    template = pose_template(matrices, 30.0)
    assert template.shape == (20, 6)
    relative = np.linalg.inv(matrices[0].astype(np.float32)) @ matrices.astype(np.float32)
    angles, translation = matrix_to_euler_and_translation(relative)
    np.testing.assert_allclose(template, smooth_pose_seq(np.concatenate([angles, translation], axis=1), 5),
                               atol=1e-12)


def test_pose_template_rejects_too_short_videos():
    with pytest.raises(ValueError, match="at least 2 frames"):
        pose_template(np.eye(4)[None], 25.0)
    with pytest.raises(ValueError, match="positive"):
        pose_template(np.tile(np.eye(4), (3, 1, 1)), 0.0)
