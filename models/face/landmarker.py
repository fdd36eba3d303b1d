"""MediaPipe FaceLandmarker as AniPortrait uses it (spec §4.1), plus the face-geometry port for ``lmks3d``.

Settings as in the original: IMAGE mode (every image on its own, no tracking), one face, blendshapes and
transformation matrices on, default confidences (0.5), CPU.

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

from ..data import FaceAnalysis
from .geometry import FaceGeometryError, face_geometry
from .task_file import TASK_FILE_HINT, read_geometry_metadata

NUM_LANDMARKS = 478
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
            num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
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
        """Landmarks, metric mesh, pose and blendshapes of the face in an (H, W, 3) uint8 RGB image, or None when
        MediaPipe finds no face (or one too small for a geometry estimate, where the original also gets none)."""
        result = self.detect(rgb)
        if len(result.face_landmarks) != 1 or len(result.face_blendshapes) != 1:
            return None
        lmks = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]], dtype=np.float64)
        if lmks.shape != (NUM_LANDMARKS, 3):
            raise ValueError(f"AniPortrait: {self.task_path} gave {len(lmks)} face landmarks instead of "
                             f"{NUM_LANDMARKS}; use MediaPipe's face_landmarker (v2) task file.")
        height, width = rgb.shape[:2]
        try:
            lmks3d, trans_mat = face_geometry(lmks, width, height, self.metadata)
        except FaceGeometryError:
            return None
        scores = np.array([c.score for c in result.face_blendshapes[0]], dtype=np.float64)
        return FaceAnalysis(lmks=lmks, lmks3d=lmks3d, trans_mat=trans_mat, blendshapes=scores[1:],  # drop "_neutral"
                            width=width, height=height)

    def close(self) -> None:
        with self._lock:
            if self._landmarker is not None:
                self._landmarker.close()
                self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"AniPortrait: the face landmarker needs an (H, W, 3) uint8 RGB image, got "
                         f"{getattr(rgb, 'shape', type(rgb))} {getattr(rgb, 'dtype', '')}.")
    if min(rgb.shape[:2]) < 1:
        raise ValueError(f"AniPortrait: the image to analyse is empty ({rgb.shape[1]}x{rgb.shape[0]}).")
    return np.ascontiguousarray(rgb)
