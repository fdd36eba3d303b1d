"""MediaPipe FaceLandmarker wrapper, crop, and driving-video tracking (aniportrait/face/)."""
from __future__ import annotations

import logging
import math
import re

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from aniportrait.data import FaceAnalysis
from aniportrait.face.crop import crop_box, crop_face, crop_image, paste_back
from aniportrait.face.landmarker import FaceLandmarker
from aniportrait.face.reference import analyse_reference
from aniportrait.face.task_file import TaskFileError
from aniportrait.face.track import fill_missing_faces, track_faces

# A fresh MediaPipe run is compared loosely: the goldens come from mediapipe 0.10.11, this is 1.2.2, and XNNPACK
# float code may differ across CPUs. Tolerances are the golden README's suggestions (landmarks 2e-3 normalised,
# trans_mat 5e-2); the mesh is in the same cm units as trans_mat's translation, the blendshape scores are in
# [0, 1]. Measured here: landmarks 2.0e-5, lmks3d 4.2e-4, trans_mat 3.6e-4, blendshapes 5.0e-4 (worst over the
# reference and the 40 driving frames).
LMKS_ATOL = 2e-3
TRANS_MAT_ATOL = 5e-2
LMKS3D_ATOL = 5e-2
BLENDSHAPES_ATOL = 2e-2
# our trans_mat (geometry port) against MediaPipe's own matrix for the SAME landmarks: float32 precision
SAME_LANDMARKS_ATOL = 1e-4


@pytest.fixture(scope="module")
def landmarker(assets_dir):
    with FaceLandmarker(assets_dir / "face_landmarker_v2_with_blendshapes.task") as instance:
        yield instance



def _assert_matches(face: FaceAnalysis, lmks, lmks3d, trans_mat, blendshapes, label: str) -> None:
    np.testing.assert_allclose(face.lmks, lmks, rtol=0, atol=LMKS_ATOL, err_msg=label)
    np.testing.assert_allclose(face.lmks3d, lmks3d, rtol=0, atol=LMKS3D_ATOL, err_msg=label)
    np.testing.assert_allclose(face.trans_mat, trans_mat, rtol=0, atol=TRANS_MAT_ATOL, err_msg=label)
    np.testing.assert_allclose(face.blendshapes, blendshapes, rtol=0, atol=BLENDSHAPES_ATOL, err_msg=label)


def test_reference_analysis_matches_golden(landmarker, mesh_case):
    rgb = np.ascontiguousarray(mesh_case["ref_bgr_for_mediapipe"][..., ::-1])
    face = landmarker.analyse(rgb)
    assert face is not None and (face.width, face.height) == (128, 128)
    assert face.lmks.shape == (478, 3) and face.lmks3d.shape == (468, 3) and face.blendshapes.shape == (51,)
    _assert_matches(face, mesh_case["mp_lmks"], mesh_case["mp_lmks3d"], mesh_case["mp_trans_mat"],
                    mesh_case["mp_bs"], "reference")
    mediapipe_matrix = landmarker.detect(rgb).facial_transformation_matrixes[0]
    np.testing.assert_allclose(face.trans_mat, mediapipe_matrix, rtol=0, atol=SAME_LANDMARKS_ATOL)


def test_driving_frames_match_golden(landmarker, reenactment_case):
    for i, frame in enumerate(reenactment_case["driving_frames"]):
        face = landmarker.analyse(frame)
        assert face is not None, f"frame {i}"
        case = reenactment_case
        _assert_matches(face, case["src_lmks"][i], case["src_lmks3d"][i], case["src_trans_mat"][i], case["src_bs"][i],
                        f"frame {i}")


def test_mesh_and_pose_reproduce_the_landmarks(landmarker, reenactment_case):
    """AniPortrait's projection of trans_mat · lmks3d lands on MediaPipe's landmarks (docs/pipeline.md#projection)."""
    from aniportrait.face.projection import project_points_with_trans

    frame = cv2.resize(reenactment_case["driving_frames"][3], (256, 192), interpolation=cv2.INTER_LINEAR)  # not square
    face = landmarker.analyse(frame)
    projected = project_points_with_trans(face.lmks3d[None], face.trans_mat[None], 256, 192)[0]
    assert np.abs(projected - face.lmks[:468, :2] * (256, 192)).max() < 0.05


def test_no_face_gives_none(landmarker):
    assert landmarker.analyse(np.zeros((128, 128, 3), dtype=np.uint8)) is None


def test_bad_inputs_are_rejected(landmarker, tmp_path):
    with pytest.raises(ValueError, match="uint8 RGB"):
        landmarker.analyse(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        landmarker.analyse(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="missing.task"):
        FaceLandmarker(tmp_path / "missing.task")
    not_a_task = tmp_path / "not_a_task.task"
    not_a_task.write_bytes(b"hello")
    with pytest.raises(TaskFileError, match="not_a_task.task"):
        FaceLandmarker(not_a_task)


# --- crop (the app's crop_face) ---------------------------------------------------------------------------------

def _box_landmarks(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> np.ndarray:
    """Normalised landmarks spanning the pixel box (x0, y0)-(x1, y1)."""
    return np.array([[x0 / width, y0 / height, 0.0], [x1 / width, y1 / height, 0.0],
                     [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, 0.0]])


@pytest.mark.parametrize("width, height, expected", [
    (300, 200, (50, 0, 250, 200)),     # landscape: centred square of side H
    (200, 300, (0, 50, 200, 250)),     # portrait
    (201, 200, (0, 0, 200, 200)),      # |W - H| = 1: upstream returned an empty image (docs/departures.md#b15)
    (200, 203, (0, 1, 200, 201)),      # odd difference: upstream kept one extra row
    (256, 256, (0, 0, 256, 256)),      # square: unchanged
])
def test_large_face_gives_centred_square(width, height, expected):
    lmks = _box_landmarks(0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height, width, height)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop, box = crop_face(image, lmks)
    assert box == expected
    x0, y0, x1, y1 = expected
    assert crop.shape == (y1 - y0, x1 - x0, 3) and crop.shape[0] == crop.shape[1] == min(width, height)
    np.testing.assert_array_equal(crop, image[y0:y1, x0:x1])


def test_small_face_gives_expanded_box_with_black_padding():
    width, height = 400, 300
    lmks = _box_landmarks(10.0, 20.0, 70.0, 100.0, width, height)   # 60 x 80 box near the top-left corner
    image = np.full((height, width, 3), 200, dtype=np.uint8)
    crop, box = crop_face(image, lmks)
    # centre (40, 60), side 1.5 * 80 = 120 -> (-20, 0) .. (100, 120)
    assert box == (-20, 0, 100, 120)
    assert crop.shape == (120, 120, 3)
    assert (crop[:, :20] == 0).all()          # left of the image: black
    assert (crop[:, 20:] == 200).all()


def test_box_truncates_like_the_app():
    lmks = _box_landmarks(50.5, 60.25, 80.5, 90.25, 400, 400)   # 30 x 30 box, centre (65.5, 75.25), side 45
    assert crop_box(lmks, 400, 400) == (43, 52, 88, 97)
    lmks = _box_landmarks(-40.5, 5.0, 19.5, 65.0, 400, 400)     # centre (-10.5, 35), side 90
    assert crop_box(lmks, 400, 400) == (-55, -10, 34, 80)        # towards zero (-55.5 -> -55), not floor


def test_paste_back_restores_the_source():
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = (-20, 30, 100, 150)
    crop = crop_image(source, box)
    pasted = paste_back(source, np.stack([crop, crop]), box)
    assert pasted.shape == (2, 300, 400, 3)
    np.testing.assert_array_equal(pasted[1], source)
    changed = paste_back(source, np.zeros((1, 60, 60, 3), dtype=np.uint8), box)[0]
    assert (changed[30:150, 0:100] == 0).all() and (changed[:, 100:] == source[:, 100:]).all()


@pytest.fixture(scope="module")
def small_face_scene(assets_dir) -> np.ndarray:
    """An 800 x 600 black scene with a 200 x 200 portrait pasted at (80, 350): a small, off-centre face."""
    portrait = cv2.cvtColor(cv2.imread(str(assets_dir / "solo.png")), cv2.COLOR_BGR2RGB)
    scene = np.zeros((600, 800, 3), dtype=np.uint8)
    scene[350:550, 80:280] = cv2.resize(portrait, (200, 200), interpolation=cv2.INTER_AREA)
    return scene


def test_crop_of_a_small_real_face_is_centred_on_it(landmarker, small_face_scene):
    scene = small_face_scene
    face = landmarker.analyse(scene)
    crop, box = crop_face(scene, face.lmks)
    pixels = face.lmks[:, :2] * (800, 600)
    face_side = (pixels.max(axis=0) - pixels.min(axis=0)).max()
    assert abs((box[2] - box[0]) - 1.5 * face_side) <= 1 and abs((box[3] - box[1]) - 1.5 * face_side) <= 1
    refound = landmarker.analyse(crop)
    assert refound is not None
    centre = (refound.lmks[:, :2].min(axis=0) + refound.lmks[:, :2].max(axis=0)) / 2
    np.testing.assert_allclose(centre, [0.5, 0.5], atol=0.02)


# --- reference preparation (the Reference Face node) -----------------------------------------------------------

def test_reference_is_analysed_at_the_generation_size(landmarker, mesh_case, golden_dir):
    """The original resized the 327 x 330 (W x H) portrait to 128 x 128 for MediaPipe: same pixels, same face."""
    source = cv2.cvtColor(cv2.imread(str(golden_dir / "cases" / "ref_image.png")), cv2.COLOR_BGR2RGB)
    reference, portrait = analyse_reference(landmarker, source, 128, 128)
    np.testing.assert_array_equal(reference.image, mesh_case["ref_bgr_for_mediapipe"][..., ::-1])
    assert portrait is source and reference.crop_box is None and reference.source_size == (327, 330)
    _assert_matches(reference.face, mesh_case["mp_lmks"], mesh_case["mp_lmks3d"], mesh_case["mp_trans_mat"],
                    mesh_case["mp_bs"], "reference")


def test_reference_crop_then_resize_to_width_by_height(landmarker, small_face_scene):
    reference, portrait = analyse_reference(landmarker, small_face_scene, 96, 128, crop=True)
    expected_crop, expected_box = crop_face(small_face_scene, landmarker.analyse(small_face_scene).lmks)
    np.testing.assert_array_equal(portrait, expected_crop)
    assert reference.crop_box == expected_box and reference.source_size == (800, 600)
    # dsize (width, height): not the original's swapped (H, W) (docs/departures.md#b1)
    assert reference.image.shape == (128, 96, 3) and (reference.face.width, reference.face.height) == (96, 128)


def test_reference_without_a_face_says_what_to_do(landmarker):
    black = np.zeros((96, 96, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=re.escape("no face in the reference image resized to 64x80. Use crop 'auto'")):
        analyse_reference(landmarker, black, 64, 80)
    with pytest.raises(ValueError, match=r"no face in the reference image \(at its own size.*so it cannot be cropped"):
        analyse_reference(landmarker, black, 64, 80, crop=True)


# --- driving video tracking -------------------------------------------------------------------------------------

def _rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    ra = Rotation.from_matrix(a[:3, :3] / np.linalg.norm(a[:3, 0]))
    rb = Rotation.from_matrix(b[:3, :3] / np.linalg.norm(b[:3, 0]))
    return float((ra.inv() * rb).magnitude())


def test_track_fills_frames_without_a_face(landmarker, reenactment_case, caplog):
    frames = reenactment_case["driving_frames"][:10].copy()
    blank = [0, 1, 5, 6, 9]
    frames[blank] = 0
    calls = []
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        track = track_faces(frames, landmarker, fps=25.0, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i + 1, 10) for i in range(10)]
    assert "0-1, 5-6, 9" in caplog.text
    np.testing.assert_array_equal(track.detected, [i not in blank for i in range(10)])
    assert (track.width, track.height, track.fps) == (192, 192, 25.0)
    assert track.lmks.shape == (10, 478, 3) and track.trans_mat.shape == (10, 4, 4)

    own = {i: landmarker.analyse(frames[i]) for i in (2, 4, 7, 8)}
    np.testing.assert_array_equal(track.lmks[4], own[4].lmks)           # detected frames are untouched
    np.testing.assert_array_equal(track.trans_mat[7], own[7].trans_mat)
    for i in (0, 1):                                                     # before the first face: held
        np.testing.assert_array_equal(track.lmks3d[i], own[2].lmks3d)
    np.testing.assert_array_equal(track.blendshapes[9], own[8].blendshapes)  # after the last face: held
    # 5 and 6 lie 1/3 and 2/3 of the way from frame 4 to frame 7
    for i, t in ((5, 1 / 3), (6, 2 / 3)):
        for name in ("lmks", "lmks3d", "blendshapes"):
            start, end = getattr(own[4], name), getattr(own[7], name)
            np.testing.assert_allclose(getattr(track, name)[i], (1 - t) * start + t * end, atol=1e-12)
            assert (getattr(track, name)[i] >= np.minimum(start, end) - 1e-12).all()
            assert (getattr(track, name)[i] <= np.maximum(start, end) + 1e-12).all()
        full = _rotation_angle(own[4].trans_mat, own[7].trans_mat)
        assert math.isclose(_rotation_angle(own[4].trans_mat, track.trans_mat[i]), t * full, rel_tol=1e-6)
        np.testing.assert_allclose(track.trans_mat[i][:3, 3],
                                   (1 - t) * own[4].trans_mat[:3, 3] + t * own[7].trans_mat[:3, 3], atol=1e-12)
        scales = [np.linalg.norm(m[:3, 0]) for m in (own[4].trans_mat, track.trans_mat[i], own[7].trans_mat)]
        assert min(scales[0], scales[2]) - 1e-9 <= scales[1] <= max(scales[0], scales[2]) + 1e-9


def test_track_without_any_face_is_an_error(landmarker):
    with pytest.raises(ValueError, match="no face in any of the 3 video frames"):
        track_faces(np.zeros((3, 64, 64, 3), dtype=np.uint8), landmarker, fps=30.0)


def test_track_stops_when_interrupted(landmarker, reenactment_case):
    class Cancelled(Exception):
        pass

    seen = []

    def check_interrupt():
        if len(seen) == 2:
            raise Cancelled
        seen.append(1)

    with pytest.raises(Cancelled):
        track_faces(reenactment_case["driving_frames"][:5], landmarker, fps=30.0, check_interrupt=check_interrupt)


def test_fill_is_exact_on_synthetic_faces():
    def face(value: float, angle_deg: float) -> FaceAnalysis:
        matrix = np.eye(4)
        matrix[:3, :3] = 2.0 * Rotation.from_euler("y", angle_deg, degrees=True).as_matrix()
        matrix[:3, 3] = [value, 0.0, -30.0]
        return FaceAnalysis(lmks=np.full((478, 3), value), lmks3d=np.full((468, 3), value), trans_mat=matrix,
                            blendshapes=np.full(51, value), width=64, height=48)

    track = fill_missing_faces([None, face(0.0, 0.0), None, None, None, face(4.0, 40.0), None], fps=30.0)
    np.testing.assert_allclose(track.lmks[:, 0, 0], [0, 0, 1, 2, 3, 4, 4])
    angles = [Rotation.from_matrix(m[:3, :3] / 2.0).as_euler("xyz", degrees=True)[1] for m in track.trans_mat]
    np.testing.assert_allclose(angles, [0, 0, 10, 20, 30, 40, 40], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(track.trans_mat[:, :3, 0], axis=1), 2.0)
    np.testing.assert_array_equal(track.detected, [False, True, False, False, False, True, False])


# --- nodes in a real ComfyUI ------------------------------------------------------------------------------------

@pytest.mark.server
def test_reference_face_node_returns_the_crop_at_source_resolution(client, comfy_server, golden_dir):
    from tests.harness.graph import Graph

    graph = Graph(client.object_info())
    source = cv2.imread(str(golden_dir / "cases" / "ref_image.png"))
    image = graph.add("LoadImage", upload=client.upload(golden_dir / "cases" / "ref_image.png"))
    reference = graph.add("APK_ReferenceFace", image, width=128, height=128, crop="auto (face-centred square)")
    graph.add("SaveImage", reference.out("IMAGE"), filename_prefix="apk_reference_crop")
    graph.add("PreviewAny", reference.out("APK_REFERENCE_FACE"))
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    saved = sorted(comfy_server.output_dir.glob("apk_reference_crop*.png"))
    crop = cv2.imread(str(saved[-1]))
    side = min(source.shape[:2])   # this portrait's face is large: centred square, no resize
    assert crop.shape == (side, side, 3)


@pytest.mark.server
def test_reference_face_node_without_a_face_names_the_input(client, comfy_server, tmp_path):
    from tests.harness.graph import Graph

    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((96, 96, 3), dtype=np.uint8))
    graph = Graph(client.object_info())
    image = graph.add("LoadImage", upload=client.upload(black))
    reference = graph.add("APK_ReferenceFace", image, width=128, height=128)
    graph.add("PreviewAny", reference.out("APK_REFERENCE_FACE"))
    run = client.run(graph.prompt)
    assert run.status == "error"
    assert "found no face in the reference image" in run.error["exception_message"]


@pytest.mark.server
def test_video_face_landmarks_node_runs(client, comfy_server, golden_dir):
    from tests.harness.graph import Graph

    graph = Graph(client.object_info())
    frames = graph.add("LoadImage", upload=client.upload(golden_dir / "cases" / "j_frame_0000.png"))
    track = graph.add("APK_VideoFaceLandmarks", frames, fps=25.0)
    graph.add("PreviewAny", track)
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
