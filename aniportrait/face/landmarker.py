"""MediaPipe FaceLandmarker as AniPortrait uses it (docs/pipeline.md#mediapipe), plus the face-geometry port for
``lmks3d``.

Settings as in the original: IMAGE mode (every image on its own, no tracking), blendshapes and transformation
matrices on, default confidences (0.5), CPU. The original asks for one face (whichever MediaPipe ranks first);
here up to four are found and the largest is used, which gives the same numbers for an image with one face
(checked on the shared portraits) and a stated rule for an image with several.

``trans_mat`` comes from the geometry port, not from MediaPipe's own matrix: the two agree to float32 precision
(see the tests), and taking both ``lmks3d`` and ``trans_mat`` from the same solve keeps the pair exactly
consistent (projecting ``trans_mat · lmks3d`` gives back the landmarks).
"""
from __future__ import annotations

import atexit
import threading
import weakref
from pathlib import Path

import numpy as np

from ..data import FaceAnalysis, check_rgb_image
from .geometry import FaceGeometryError, face_geometry
from .task_file import TASK_FILE_HINT, read_geometry_metadata

NUM_LANDMARKS = 478
MAX_FACES = 4        # found at once; the largest is used
TILE_ASPECT = 2.0    # images at least this elongated are also searched in tiles
_OPEN_LANDMARKERS: "weakref.WeakSet[FaceLandmarker]" = weakref.WeakSet()


@atexit.register
def _close_open_landmarkers() -> None:
    # MediaPipe's own __del__ fails noisily when it only runs during interpreter shutdown (e.g. for a landmarker
    # still held by the model cache); closing them here, while the modules are intact, keeps the exit quiet
    for landmarker in list(_OPEN_LANDMARKERS):
        landmarker.close()


class FaceLandmarker:
    """One MediaPipe FaceLandmarker for a ``.task`` file. Close it (or use ``with``) when done."""

    def __init__(self, task_path: Path | str):
        # MediaPipe is imported on first use only: it adds ~0.7 s to ComfyUI's start-up
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_landmarker as mp_face

        self.task_path = Path(task_path)
        if not self.task_path.is_file():
            raise FileNotFoundError(f"AniPortrait: the MediaPipe face landmarker file {self.task_path} does not exist. "
                                    f"{TASK_FILE_HINT}")
        self.metadata = read_geometry_metadata(self.task_path)   # also rejects files that are not face landmarkers
        options = mp_face.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.task_path), delegate=BaseOptions.Delegate.CPU),
            num_faces=MAX_FACES, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
        try:
            self._landmarker = mp_face.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"AniPortrait: MediaPipe could not load {self.task_path} as a face landmarker: "
                             f"{exc}. {TASK_FILE_HINT}") from exc
        self._lock = threading.Lock()   # one MediaPipe graph: calls must not overlap
        _OPEN_LANDMARKERS.add(self)

    def detect(self, rgb: np.ndarray):
        """MediaPipe's raw ``FaceLandmarkerResult`` for an (H, W, 3) uint8 RGB image."""
        import mediapipe as mp

        rgb = _check_rgb(rgb)
        with self._lock:
            if self._landmarker is None:
                raise RuntimeError(f"AniPortrait: the face landmarker for {self.task_path} was closed.")
            return self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))

    def analyse(self, rgb: np.ndarray) -> FaceAnalysis | None:
        """Landmarks, metric mesh, pose and blendshapes of the largest face in an (H, W, 3) uint8 RGB image, or None
        when MediaPipe finds no face (or one too small for a geometry estimate, where the original also gets none).

        MediaPipe's detector sees the whole image shrunk to a small square, so a face in a very wide or tall image
        (a banner) comes out too small to detect; such an image is searched again in overlapping square tiles.
        Several faces: the one with the largest landmark box is used (``faces_in_image`` says how many there were).
        """
        rgb = _check_rgb(rgb)
        faces = self._faces(rgb)
        if not faces and max(rgb.shape[:2]) >= TILE_ASPECT * min(rgb.shape[:2]):
            faces = self._faces_on_tiles(rgb)
        if not faces:
            return None
        height, width = rgb.shape[:2]
        lmks, scores = max(faces, key=lambda face: _box_area(face[0], width, height))
        try:
            lmks3d, trans_mat = face_geometry(lmks, width, height, self.metadata)
        except FaceGeometryError:
            return None
        return FaceAnalysis(lmks=lmks, lmks3d=lmks3d, trans_mat=trans_mat, blendshapes=scores[1:],  # drop "_neutral"
                            width=width, height=height, faces_in_image=len(faces))

    def _faces(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(landmarks (478, 3) normalised to ``rgb``, blendshape scores) of every face MediaPipe finds."""
        result = self.detect(rgb)
        faces = []
        for landmarks, blendshapes in zip(result.face_landmarks, result.face_blendshapes):
            lmks = np.array([[p.x, p.y, p.z] for p in landmarks], dtype=np.float64)
            if lmks.shape != (NUM_LANDMARKS, 3):
                raise ValueError(f"AniPortrait: {self.task_path} gave {len(lmks)} face landmarks instead of "
                                 f"{NUM_LANDMARKS}; use MediaPipe's face_landmarker (v2) task file.")
            faces.append((lmks, np.array([c.score for c in blendshapes], dtype=np.float64)))
        return faces

    def _faces_on_tiles(self, rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``_faces`` of square tiles (side: the short side, half-overlapping) along the long side, mapped back to
        the whole image; a face seen in two tiles counts once."""
        height, width = rgb.shape[:2]
        side = min(height, width)
        length = max(height, width)
        starts = sorted(set(range(0, length - side + 1, max(1, side // 2))) | {length - side})
        found = []
        for start in starts:
            x0, y0 = (start, 0) if width > height else (0, start)
            for lmks, scores in self._faces(rgb[y0:y0 + side, x0:x0 + side]):
                whole = lmks.copy()
                whole[:, 0] = (lmks[:, 0] * side + x0) / width
                whole[:, 1] = (lmks[:, 1] * side + y0) / height
                whole[:, 2] = lmks[:, 2] * side / width   # MediaPipe's z is on the scale of the image width
                found.append((whole, scores))
        found.sort(key=lambda face: -_box_area(face[0], width, height))
        distinct: list[tuple[np.ndarray, np.ndarray]] = []
        for face in found:
            centre = face[0][:, :2].mean(axis=0)
            if not any(_contains(kept[0], centre) for kept in distinct):
                distinct.append(face)
        return distinct

    def close(self) -> None:
        with self._lock:
            if self._landmarker is not None:
                self._landmarker.close()
                self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _box_area(lmks: np.ndarray, width: int, height: int) -> float:
    """Area in pixels of the box around normalised landmarks: the "largest face" rule."""
    return float(np.ptp(lmks[:, 0]) * width * np.ptp(lmks[:, 1]) * height)


def _contains(lmks: np.ndarray, point: np.ndarray) -> bool:
    low, high = lmks[:, :2].min(axis=0), lmks[:, :2].max(axis=0)
    return bool(np.all(low <= point) and np.all(point <= high))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    check_rgb_image(rgb, "the face landmarker's image")
    if min(rgb.shape[:2]) < 1:
        raise ValueError(f"AniPortrait: the image to analyse is empty ({rgb.shape[1]}x{rgb.shape[0]}).")
    return np.ascontiguousarray(rgb)
