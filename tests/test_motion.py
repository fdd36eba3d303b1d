"""The motion library (aniportrait/motion, feathered paste-back), measured on projected landmarks: each edit's effect
is checked where an artist sees it (lip gap, eyelid opening, brow height, head path), on the golden reference
face and on synthetic motions built here."""
from __future__ import annotations

import numpy as np
import pytest

from aniportrait.audio.head_pose import loop_pose_template
from aniportrait.data import FaceAnalysis, FaceTrack, LandmarkSequence, MeshSequence, PoseSequence
from aniportrait.face.crop import feather_mask, paste_back
from aniportrait.face.drawing import EDGE_GROUPS
from aniportrait.face.projection import project_mesh_sequence
from aniportrait.motion.edits import (HeadMotionEdit, blink_curve, blink_times, edit_head_motion, insert_blinks,
                                 parse_times, raise_brows, scale_mouth)
from aniportrait.motion.looping import ping_pong
from aniportrait.motion.mix import mix_meshes, track_motion
from aniportrait.motion.motion_file import Motion, load_motion, save_motion
from aniportrait.motion.preview import preview_frames
from aniportrait.motion.regions import (BROWS, EYES, LID_MIDDLES, LIPS, LOWER_INNER_LIP, LOWER_LIDS, UPPER_INNER_LIP,
                                   UPPER_LIDS, region_core, region_weights)

FPS = 30.0
FRAMES = 90
SIZE = 512
NOSE_TIP = 1


@pytest.fixture(scope="module", params=["audio reference", "reenactment reference"])
def face(request, mesh_case, reenactment_case) -> FaceAnalysis:
    """Two different analysed portraits (golden cases c and j), at 512 x 512."""
    if request.param == "audio reference":
        case, prefix = mesh_case, "mp_"
    else:
        case, prefix = reenactment_case, "ref_"
    return FaceAnalysis(lmks=case[f"{prefix}lmks"], lmks3d=case[f"{prefix}lmks3d"],
                        trans_mat=case[f"{prefix}trans_mat"], blendshapes=case[f"{prefix}bs"], width=SIZE, height=SIZE)


def speaking(face: FaceAnalysis, seed: int = 0) -> MeshSequence:
    """A mouth opening and closing (lower lip, chin and jaw drop up to 0.8 cm) plus small random motion of every
    vertex, as Audio2Mesh-like offsets."""
    rng = np.random.default_rng(seed)
    mesh = face.lmks3d
    opening = 0.4 * (1 - np.cos(np.linspace(0, 6 * np.pi, FRAMES)))
    below_gap = (mesh[:, 1] <= mesh[LOWER_INNER_LIP, 1]).astype(float)
    offsets = rng.normal(0, 0.02, (FRAMES, 468, 3))
    offsets[:, :, 1] -= opening[:, None] * below_gap[None, :]
    return MeshSequence(offsets, FPS)


def landmarks(face: FaceAnalysis, mesh: MeshSequence, poses: np.ndarray | None = None) -> np.ndarray:
    poses = np.zeros((len(mesh.offsets), 6)) if poses is None else poses
    return project_mesh_sequence(face, mesh.offsets, poses)


def distance(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(points[:, a] - points[:, b], axis=-1)


def lip_gap(points: np.ndarray) -> np.ndarray:
    """Vertical opening of the inner lips in pixels (image y grows downwards)."""
    return points[:, LOWER_INNER_LIP, 1] - points[:, UPPER_INNER_LIP, 1]


def eyelid_opening(points: np.ndarray) -> np.ndarray:
    return np.stack([distance(points, upper, lower) for upper, lower in LID_MIDDLES], axis=1)


# ---------------------------------------------------------------------------------------------------- regions


def test_regions_are_distinct_mesh_vertex_sets(face):
    for group in (LIPS, EYES, BROWS, UPPER_LIDS + LOWER_LIDS):
        assert len(set(group)) == len(group) and all(0 <= i < 468 for i in group)
    assert not set(LIPS) & set(EYES) and not set(EYES) & set(BROWS)
    drawn = {i for chain, _ in EDGE_GROUPS for i in chain}
    assert set(LIPS) | set(EYES) | set(BROWS) <= drawn   # the regions are what the pose images show
    mouth = region_core("mouth", face.lmks3d)
    assert face.lmks3d[mouth, 1].max() <= face.lmks3d[list(LIPS), 1].max()   # nothing above the lips
    assert 152 in mouth                                                        # the chin opens with the mouth


def test_region_weights_fade_with_distance(face):
    weights = region_weights("eyes", face.lmks3d, 1.0)
    assert (weights[list(EYES)] == 1).all()
    distance_to_eyes = np.linalg.norm(face.lmks3d[:, None] - face.lmks3d[None, list(EYES)], axis=-1).min(axis=1)
    assert (weights[distance_to_eyes >= 1.0] == 0).all()
    between = (distance_to_eyes > 0) & (distance_to_eyes < 1.0)
    assert between.any() and ((weights[between] > 0) & (weights[between] < 1)).all()
    order = np.argsort(distance_to_eyes[between])
    assert (np.diff(weights[between][order]) <= 1e-12).all()   # farther is never weighted more
    hard = region_weights("eyes", face.lmks3d, 0.0)
    assert set(np.flatnonzero(hard)) == set(EYES)


# ------------------------------------------------------------------------------------------------------ edits


@pytest.mark.parametrize("amplitude", [0.0, 0.5, 2.0, 3.0])
def test_mouth_amplitude_scales_the_lip_gap(face, amplitude):
    speech = speaking(face)
    reference = landmarks(face, MeshSequence(np.zeros((1, 468, 3)), FPS))
    reference_gap = lip_gap(reference)[0]
    predicted = lip_gap(landmarks(face, speech)) - reference_gap
    edited_points = landmarks(face, scale_mouth(speech, face.lmks3d, amplitude))
    edited = lip_gap(edited_points) - reference_gap
    assert np.ptp(predicted) > 10   # the synthetic speech opens the mouth visibly (pixels at 512)
    np.testing.assert_allclose(edited, amplitude * predicted, rtol=0.03, atol=0.15)
    if amplitude == 0:   # the portrait's own mouth in every frame
        lips = list(LIPS)
        np.testing.assert_allclose(edited_points[:, lips], np.broadcast_to(reference[:, lips], (FRAMES, 40, 2)),
                                   atol=1e-9)
    # eyes and brows keep the predicted motion exactly
    upper_face = list(EYES + BROWS)
    np.testing.assert_allclose(edited_points[:, upper_face], landmarks(face, speech)[:, upper_face], atol=1e-9)


def test_blinks_at_given_times_close_the_eyelids(face):
    speech = speaking(face)
    open_points = landmarks(face, speech)
    times = parse_times("0.5, 2.0")
    blinked_points = landmarks(face, insert_blinks(speech, face.lmks3d, times, duration_s=0.3, strength=1.0))
    opening, blinked = eyelid_opening(open_points), eyelid_opening(blinked_points)
    assert opening.min() > 5   # open eyes, in pixels at 512
    for centre in (15, 60):                       # the frames at 0.5 s and 2.0 s
        assert blinked[centre].max() < 1e-6       # both eyes shut
        closing = blinked[centre - 3:centre + 1, 0] / opening[centre - 3:centre + 1, 0]
        assert (np.diff(closing) < 0).all()       # closes gradually
    far_from_blinks = np.r_[0:10, 30:50, 75:90]
    np.testing.assert_array_equal(blinked[far_from_blinks], opening[far_from_blinks])
    # the lids meet between the reference's lids, nearer the lower one: the upper lid does most of the closing
    upper, lower = LID_MIDDLES[0]
    travel_upper = np.linalg.norm(blinked_points[15, upper] - open_points[15, upper])
    travel_lower = np.linalg.norm(blinked_points[15, lower] - open_points[15, lower])
    assert travel_upper > 2 * travel_lower > 0
    # the mouth is untouched
    np.testing.assert_array_equal(blinked_points[:, list(LIPS)], open_points[:, list(LIPS)])


@pytest.mark.parametrize("strength", [0.25, 0.5, 0.8])
def test_blink_strength_is_the_fraction_of_the_opening_closed(face, strength):
    speech = speaking(face)
    opening = eyelid_opening(landmarks(face, speech))
    blinked = eyelid_opening(landmarks(face, insert_blinks(speech, face.lmks3d, [1.0], 0.3, strength)))
    np.testing.assert_allclose(blinked[30] / opening[30], 1 - strength, rtol=0.02)


def test_blink_shape_and_rate():
    curve = blink_curve(60, FPS, [1.0], duration_s=0.4)
    assert curve[30] == 1 and curve.max() == 1
    closing, opening = np.flatnonzero(curve[:30] > 0), np.flatnonzero(curve[31:] > 0)
    assert len(opening) > len(closing)   # opens more slowly than it closes
    assert (np.diff(curve[30 - len(closing):31]) > 0).all() and (np.diff(curve[30:31 + len(opening)]) < 0).all()

    minute = blink_times(60.0, 15.0, seed=3)
    assert len(minute) == 15 and minute == blink_times(60.0, 15.0, seed=3) != blink_times(60.0, 15.0, seed=4)
    intervals = np.floor(np.array(minute) / 4.0)
    np.testing.assert_array_equal(intervals, np.arange(15))   # one blink in each 4-second interval
    assert blink_times(10.0, 0.0, seed=0) == []
    with pytest.raises(ValueError, match="seconds"):
        parse_times("1.0, soon")


def test_head_motion_scale_offset_and_smoothing(face):
    rng = np.random.default_rng(1)
    poses = np.cumsum(rng.normal(0, 0.4, (FRAMES, 6)), axis=0)
    pose = PoseSequence(poses, FPS)
    still = np.zeros((FRAMES, 468, 3))
    mesh = MeshSequence(still, FPS)

    frozen = edit_head_motion(pose, HeadMotionEdit(0.0, 0.0, (0.0, 10.0, 0.0, 0.0, 0.0, 0.0)))
    frozen_points = landmarks(face, mesh, frozen.poses)
    np.testing.assert_allclose(frozen_points, np.broadcast_to(frozen_points[0], frozen_points.shape), atol=1e-9)
    straight = landmarks(face, mesh)[0]
    assert abs(frozen_points[0, NOSE_TIP, 0] - straight[NOSE_TIP, 0]) > 10   # a 10 degree turn moves the nose

    # the directions the node's tooltips state, in image coordinates (y grows downwards)
    def nose_shift(index: int, value: float) -> np.ndarray:
        offset = np.zeros(6)
        offset[index] = value
        moved = edit_head_motion(PoseSequence(np.zeros((1, 6)), FPS), HeadMotionEdit(offset=tuple(offset))).poses
        return landmarks(face, MeshSequence(np.zeros((1, 468, 3)), FPS), moved)[0, NOSE_TIP] - straight[NOSE_TIP]

    assert nose_shift(0, 10)[1] > 5 and nose_shift(1, 10)[0] > 5          # pitch down, yaw to the image's right
    assert nose_shift(3, 1)[0] > 5 and nose_shift(4, 1)[1] < -5            # move right, move up
    chin = landmarks(face, MeshSequence(np.zeros((1, 468, 3)), FPS),
                     np.array([[0, 0, 10.0, 0, 0, 0]]))[0, 152] - straight[152]
    assert chin[0] > 5                                                     # roll counter-clockwise: chin goes right

    doubled = edit_head_motion(pose, HeadMotionEdit(2.0, 1.0)).poses
    np.testing.assert_allclose(doubled[:, :3], 2 * poses[:, :3])
    np.testing.assert_allclose(doubled[:, 3:], poses[:, 3:])
    np.testing.assert_array_equal(edit_head_motion(pose, HeadMotionEdit()).poses, poses)

    smoothed = edit_head_motion(pose, HeadMotionEdit(window=9)).poses
    nose_path = landmarks(face, mesh, poses)[:, NOSE_TIP]
    smooth_path = landmarks(face, mesh, smoothed)[:, NOSE_TIP]
    jitter = lambda path: np.abs(np.diff(path, n=2, axis=0)).mean()   # noqa: E731
    assert jitter(smooth_path) < 0.3 * jitter(nose_path)
    np.testing.assert_allclose(smoothed[40], poses[36:45].mean(axis=0))   # the stated centred window


def test_brow_raise_moves_the_brows_up_and_leaves_the_eyes(face):
    speech = speaking(face)
    before = landmarks(face, speech)
    after = landmarks(face, raise_brows(speech, face.lmks3d, 0.5))
    rise = before[:, list(BROWS), 1] - after[:, list(BROWS), 1]   # image y grows downwards
    eye_width_px = distance(before, 33, 133).mean()
    eye_width_cm = np.linalg.norm(face.lmks3d[33] - face.lmks3d[133])
    np.testing.assert_allclose(rise, 0.5 * eye_width_px / eye_width_cm, rtol=0.2)
    np.testing.assert_array_equal(after[:, list(EYES + LIPS)], before[:, list(EYES + LIPS)])
    lowered = landmarks(face, raise_brows(speech, face.lmks3d, -0.3))
    assert (lowered[:, list(BROWS), 1] > before[:, list(BROWS), 1]).all()


# -------------------------------------------------------------------------------------------------------- mix


def test_mix_takes_each_region_from_its_source_with_a_soft_border(face):
    speech, driving = speaking(face, seed=1), speaking(face, seed=2)
    sources = {"mouth": "speech", "eyes": "driving", "brows": "driving", "rest": "speech"}
    mixed = mix_meshes(speech, driving, face.lmks3d, sources, fade_cm=1.0).offsets
    np.testing.assert_array_equal(mixed[:, list(LIPS)], speech.offsets[:, list(LIPS)])
    np.testing.assert_allclose(mixed[:, list(EYES + BROWS)], driving.offsets[:, list(EYES + BROWS)], atol=1e-12)
    far = region_weights("eyes", face.lmks3d, 1.0) + region_weights("brows", face.lmks3d, 1.0) == 0
    np.testing.assert_array_equal(mixed[:, far], speech.offsets[:, far])
    border = (region_weights("eyes", face.lmks3d, 1.0) > 0.2) & (region_weights("eyes", face.lmks3d, 1.0) < 0.8)
    share = (mixed - speech.offsets)[:, border] / (driving.offsets - speech.offsets)[:, border]
    assert ((share > 0.1) & (share < 0.9)).all()   # in between the two sources

    mouth_only = mix_meshes(speech, driving, face.lmks3d, {**sources, "mouth": "driving", "eyes": "speech",
                                                           "brows": "speech"}, fade_cm=0.0).offsets
    assert lip_gap(landmarks(face, MeshSequence(mouth_only, FPS))) == pytest.approx(
        lip_gap(landmarks(face, driving)), abs=1e-9)


def test_mix_loops_a_short_driving_motion_and_refuses_other_rates(face):
    speech = speaking(face)
    short = MeshSequence(speaking(face, seed=5).offsets[:20], FPS)
    sources = {"mouth": "speech", "eyes": "driving", "brows": "driving", "rest": "driving"}
    mixed = mix_meshes(speech, short, face.lmks3d, sources, fade_cm=0.0).offsets
    assert mixed.shape == speech.offsets.shape
    looped = ping_pong(short.offsets, FRAMES)
    np.testing.assert_array_equal(mixed[:, list(EYES)], looped[:, list(EYES)])
    np.testing.assert_array_equal(looped[19:22], short.offsets[[19, 18, 17]])   # back and forth, no jump
    with pytest.raises(ValueError, match="25 fps"):
        mix_meshes(speech, MeshSequence(short.offsets, 25.0), face.lmks3d, sources, 1.0)


def test_ping_pong_is_the_pose_template_loop():
    template = np.arange(30, dtype=np.float64).reshape(5, 6)
    np.testing.assert_array_equal(loop_pose_template(template, 17), ping_pong(template, 17))


def test_driving_motion_is_relative_to_the_neutral_frame_and_the_first_pose(reenactment_case):
    case = reenactment_case
    track = FaceTrack(lmks=case["src_lmks"], lmks3d=case["src_lmks3d"], trans_mat=case["src_trans_mat"],
                      blendshapes=case["src_bs"], width=192, height=192, fps=25.0)
    mesh, pose = track_motion(track, 30.0, window=1)
    assert len(mesh.offsets) == len(pose.poses) == int((40 - 1) * 30 / 25) + 1
    assert mesh.fps == pose.fps == 30.0
    assert np.abs(mesh.offsets).max(axis=(1, 2)).min() == 0   # the most neutral frame has no offset
    np.testing.assert_allclose(pose.poses[0], 0, atol=1e-4)
    # output frame 6k is source frame 5k (30 vs 25 fps): the offsets differ by the source meshes' difference
    np.testing.assert_allclose(mesh.offsets[::6] - mesh.offsets[0], case["src_lmks3d"][::5] - case["src_lmks3d"][0],
                               atol=1e-6)


# ------------------------------------------------------------------------------------------ save and load


def test_motion_file_round_trip(tmp_path, face):
    speech = speaking(face)
    pose = PoseSequence(np.random.default_rng(0).normal(size=(FRAMES + 5, 6)), FPS)
    points = LandmarkSequence(landmarks(face, speech), SIZE, SIZE, FPS, output_size=(256, 256))
    save_motion(tmp_path / "motion.npz", Motion(speech, pose, points))
    loaded = load_motion(tmp_path / "motion.npz")
    np.testing.assert_array_equal(loaded.mesh.offsets, speech.offsets)
    np.testing.assert_array_equal(loaded.pose.poses, pose.poses)
    np.testing.assert_array_equal(loaded.landmarks.points, points.points)
    assert (loaded.landmarks.width, loaded.landmarks.height, loaded.landmarks.output_size) == (SIZE, SIZE, (256, 256))
    assert loaded.mesh.fps == loaded.pose.fps == loaded.landmarks.fps == FPS
    with np.load(tmp_path / "motion.npz", allow_pickle=False) as raw:   # readable without this pack
        assert str(raw["format"]) == "aniportrait-motion" and float(raw["fps"]) == FPS

    save_motion(tmp_path / "pose_only.npz", Motion(pose=pose))
    only = load_motion(tmp_path / "pose_only.npz")
    assert only.mesh is None and only.landmarks is None and only.describe() == f"pose ({FRAMES + 5} frames)"


def test_bad_motion_files_are_refused_with_the_reason(tmp_path, face):
    (tmp_path / "text.npz").write_text("not a zip")
    np.savez(tmp_path / "other.npz", poses=np.zeros((3, 6)))
    np.savez(tmp_path / "bad_shape.npz", format="aniportrait-motion", version=1, fps=30.0, poses=np.zeros((3, 5)))
    np.savez(tmp_path / "bad_fps.npz", format="aniportrait-motion", version=1, fps=0.0, poses=np.zeros((3, 6)))
    np.savez(tmp_path / "future.npz", format="aniportrait-motion", version=9, fps=30.0, poses=np.zeros((3, 6)))
    expected = {"text.npz": "not a readable", "other.npz": "not an AniPortrait motion file",
                "bad_shape.npz": r"shape \(N, 6\)", "bad_fps.npz": "fps must be positive", "future.npz": "version 9"}
    for name, message in expected.items():
        with pytest.raises(ValueError, match=message):
            load_motion(tmp_path / name)
    with pytest.raises(ValueError, match="frame rate"):
        save_motion(tmp_path / "mixed.npz", Motion(speaking(face), PoseSequence(np.zeros((3, 6)), 25.0)))
    with pytest.raises(ValueError, match="nothing to save"):
        save_motion(tmp_path / "empty.npz", Motion())


# ------------------------------------------------------------------------------------ preview, paste-back


def test_preview_draws_the_landmarks_at_the_pose_image_size(face):
    points = landmarks(face, speaking(face))[:4]
    frames = preview_frames(LandmarkSequence(points, SIZE, SIZE, FPS))
    assert frames.shape == (4, SIZE, SIZE, 3) and frames.dtype == np.uint8
    for frame, frame_points in zip(frames, points):
        lit = frame.max(axis=-1) > 0
        for index in LIPS + EYES:   # a line passes through every drawn landmark
            x, y = np.round(frame_points[index]).astype(int)
            assert lit[y - 1:y + 2, x - 1:x + 2].any()
        assert lit.mean() < 0.05
    resized = preview_frames(LandmarkSequence(points, SIZE, SIZE, FPS, output_size=(128, 96)))
    assert resized.shape == (4, 96, 128, 3)

    portrait = np.full((300, 200, 3), 200, np.uint8)
    over = preview_frames(LandmarkSequence(points, SIZE, SIZE, FPS), background=portrait)
    unlit = over[0][frames[0].max(axis=-1) == 0]
    assert 60 < unlit.mean() < 120   # the dimmed portrait behind the lines
    with pytest.raises(ValueError, match="landmarks"):
        preview_frames(LandmarkSequence(np.zeros((0, 468, 2)), SIZE, SIZE, FPS))


def test_paste_back_feathers_only_the_edges_inside_the_photo():
    source = np.full((200, 300, 3), 50, np.uint8)
    frames = np.full((2, 64, 64, 3), 250, np.uint8)
    box = (100, -20, 228, 108)   # leaves the photo at the top
    pasted = paste_back(source, frames, box, feather=16)
    assert pasted.shape == (2, 200, 300, 3)
    assert (pasted[:, 0, 164] == 250).all()              # top edge is the photo border: no fade there
    assert (pasted[:, 50, 164] == 250).all()             # centre of the box: the frame
    assert (pasted[:, 150, 164] == 50).all() and (pasted[:, 50, 50] == 50).all()   # outside: the photo
    row = pasted[0, 50, 100:120, 0].astype(int)
    assert (np.diff(row) >= 0).all() and 50 < row[0] < row[8] < 250 and row[-1] == 250   # linear fade in
    hard = paste_back(source, frames, box, feather=0)
    assert (hard[0, 50, 100] == 250).all() and (hard[0, 50, 99] == 50).all()
    mask = feather_mask(box, 300, 200, 16)
    assert mask.shape == (128, 128) and mask.max() == 1 and mask[-1].max() < 0.1
