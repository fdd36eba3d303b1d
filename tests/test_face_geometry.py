"""The face-geometry port (aniportrait/face/geometry.py) and the .task metadata reader against the golden files.

The golden ``lmks3d`` / ``trans_mat`` were read by the original code from MediaPipe 0.10.11's own face-geometry
mesh; here they are recomputed from the STORED golden landmarks, so any difference is the port's.
"""
from __future__ import annotations

import math
import zipfile
import numpy as np
import pytest

from aniportrait.face.geometry import FaceGeometryError, face_geometry, weighted_procrustes
from aniportrait.face.projection import project_points_with_trans
from aniportrait.face.task_file import TaskFileError, read_geometry_metadata

# MediaPipe computes in float32 (values up to ~30 cm); the port runs in float64. Observed: lmks3d <= 1.9e-5,
# trans_mat <= 4.1e-5 over all 43 golden faces.
PORT_ATOL = 1e-4


@pytest.fixture(scope="module")
def metadata(assets_dir):
    return read_geometry_metadata(assets_dir / "face_landmarker_v2_with_blendshapes.task")


def test_metadata_is_the_canonical_face_model(metadata, mesh_case):
    vertices = metadata.canonical_vertices
    assert vertices.shape == (468, 3)
    # bounds from docs/pipeline.md#face-geometry
    np.testing.assert_allclose(vertices.min(axis=0), [-7.74, -9.40, -2.44], atol=0.01)
    np.testing.assert_allclose(vertices.max(axis=0), [7.74, 8.26, 7.59], atol=0.01)
    # the triangle list is the one the original read from MediaPipe's mesh (stored 1-based)
    np.testing.assert_array_equal(metadata.triangles, mesh_case["mp_faces"] - 1)
    assert metadata.texture_coords.shape == (468, 2)
    assert 0.0 <= metadata.texture_coords.min() and metadata.texture_coords.max() <= 1.0
    weighted = np.flatnonzero(metadata.landmark_weights)
    assert len(weighted) == 33 and (metadata.landmark_weights >= 0).all()


def test_files_that_are_not_face_landmarkers_are_rejected(tmp_path):
    not_zip = tmp_path / "model.task"
    not_zip.write_bytes(b"not a zip archive")
    with pytest.raises(TaskFileError, match="model.task"):
        read_geometry_metadata(not_zip)
    other_task = tmp_path / "hand_landmarker.task"
    with zipfile.ZipFile(other_task, "w") as archive:
        archive.writestr("hand_landmarks_detector.tflite", b"\x00")
    with pytest.raises(TaskFileError, match="hand_landmarker.task.*geometry_pipeline_metadata"):
        read_geometry_metadata(other_task)
    broken = tmp_path / "broken.task"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("geometry_pipeline_metadata_landmarks.binarypb", b"\x0a\x05\x1d\x00")  # truncated mesh
    with pytest.raises(TaskFileError, match="broken.task"):
        read_geometry_metadata(broken)


@pytest.mark.parametrize("prefix, size", [("mp", 128), ("mp512", 512)])
def test_port_matches_golden_reference_analysis(metadata, mesh_case, prefix, size):
    lmks3d, trans_mat = face_geometry(mesh_case[f"{prefix}_lmks"], size, size, metadata)
    np.testing.assert_allclose(lmks3d, mesh_case[f"{prefix}_lmks3d"], rtol=0, atol=PORT_ATOL)
    np.testing.assert_allclose(trans_mat, mesh_case[f"{prefix}_trans_mat"], rtol=0, atol=PORT_ATOL)


def test_port_matches_golden_driving_frames(metadata, reenactment_case):
    for i, lmks in enumerate(reenactment_case["src_lmks"]):
        lmks3d, trans_mat = face_geometry(lmks, 192, 192, metadata)
        np.testing.assert_allclose(lmks3d, reenactment_case["src_lmks3d"][i], rtol=0, atol=PORT_ATOL,
                                   err_msg=f"frame {i}")
        np.testing.assert_allclose(trans_mat, reenactment_case["src_trans_mat"][i], rtol=0, atol=PORT_ATOL,
                                   err_msg=f"frame {i}")


def _pinhole_pixels(camera_points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Textbook perspective projection of MediaPipe's geometry camera (FOV 63°, y up, looking down -z)."""
    focal = 1.0 / math.tan(math.radians(63.0) / 2)
    x_ndc = focal * height / width * camera_points[:, 0] / -camera_points[:, 2]
    y_ndc = focal * camera_points[:, 1] / -camera_points[:, 2]
    return np.stack([(x_ndc + 1) / 2 * width, (1 - y_ndc) / 2 * height], axis=1)


@pytest.mark.parametrize("width, height", [(192, 192), (256, 192), (144, 256)])
def test_posed_mesh_projects_back_onto_the_landmarks(metadata, reenactment_case, width, height):
    lmks = reenactment_case["src_lmks"][7]
    lmks3d, trans_mat = face_geometry(lmks, width, height, metadata)
    camera = (trans_mat @ np.c_[lmks3d, np.ones(468)].T).T[:, :3]
    expected = lmks[:468, :2] * (width, height)
    np.testing.assert_allclose(_pinhole_pixels(camera, width, height), expected, rtol=0, atol=1e-6)
    # AniPortrait's own projection (with its 1.0001 depth factor) stays sub-pixel (docs/pipeline.md#projection)
    projected = project_points_with_trans(lmks3d[None], trans_mat[None], width, height)[0]
    assert np.abs(projected - expected).max() < 0.05


def test_procrustes_recovers_a_known_similarity(metadata):
    canonical = metadata.canonical_vertices.astype(np.float64).T
    angle = math.radians(25.0)
    rotation = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    target = 1.7 * rotation @ canonical + np.array([[3.0], [-2.0], [-40.0]])
    transform = weighted_procrustes(canonical, target, metadata.landmark_weights.astype(np.float64))
    np.testing.assert_allclose(transform[:3, :3], 1.7 * rotation, atol=1e-12)
    np.testing.assert_allclose(transform[:3, 3], [3.0, -2.0, -40.0], atol=1e-12)
    # a mirrored target must still give a proper rotation (no reflection)
    mirrored = target * np.array([[-1.0], [1.0], [1.0]])
    mirrored_transform = weighted_procrustes(canonical, mirrored, metadata.landmark_weights.astype(np.float64))
    assert np.linalg.det(mirrored_transform[:3, :3]) > 0


def test_degenerate_landmarks_raise(metadata, mesh_case):
    compact = np.full((478, 3), 0.5) + np.random.default_rng(0).normal(0, 1e-5, (478, 3))
    with pytest.raises(FaceGeometryError, match="too compact"):
        face_geometry(compact, 128, 128, metadata)
    with pytest.raises(FaceGeometryError, match="468"):
        face_geometry(mesh_case["mp_lmks"][:100], 128, 128, metadata)
