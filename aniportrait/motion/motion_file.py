"""The motion file: mesh, head-pose and landmark sequences in one NumPy ``.npz`` (readable anywhere with
``numpy.load``; no pickles).

Arrays (each part optional, at least one present):

=====================  =============  =========================================================================
key                    shape, dtype   meaning
=====================  =============  =========================================================================
``format``             () str         ``"aniportrait-motion"``
``version``            () int         1
``fps``                () float64     frames per second of every sequence in the file
``mesh_offsets``       (L, 468, 3)    per-frame offsets of MediaPipe's 468 canonical face-mesh vertices, cm
``poses``              (L, 6)         per-frame head pose: Euler xyz degrees, translation cm (relative)
``landmarks``          (L, N, 2)      per-frame 2-D landmarks in pixels of ``landmarks_size``
``landmarks_size``     (2,) int64     [width, height] the landmarks are measured in
``landmarks_output``   (2,) int64     [width, height] the pose images are resized to (only when it differs)
=====================  =============  =========================================================================
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import LandmarkSequence, MeshSequence, PoseSequence, same_fps

FORMAT = "aniportrait-motion"
VERSION = 1


@dataclass
class Motion:
    mesh: MeshSequence | None = None
    pose: PoseSequence | None = None
    landmarks: LandmarkSequence | None = None

    def parts(self) -> dict[str, MeshSequence | PoseSequence | LandmarkSequence]:
        return {name: part for name, part in (("mesh", self.mesh), ("pose", self.pose),
                                              ("landmarks", self.landmarks)) if part is not None}

    def describe(self) -> str:
        lengths = {"mesh": lambda p: len(p.offsets), "pose": lambda p: len(p.poses),
                   "landmarks": lambda p: len(p.points)}
        return ", ".join(f"{name} ({lengths[name](part)} frames)" for name, part in self.parts().items())


def common_fps(motion: Motion) -> float:
    parts = motion.parts()
    if not parts:
        raise ValueError("AniPortrait: nothing to save; connect a mesh, a pose or landmarks.")
    rates = {name: float(part.fps) for name, part in parts.items()}
    first = next(iter(rates.values()))
    if not all(same_fps(rate, first) for rate in rates.values()):
        raise ValueError(f"AniPortrait: the sequences to save differ in frame rate ({rates}); a motion file holds "
                         "one fps. Make them at the same fps.")
    return first


def save_motion(path: str | Path, motion: Motion) -> None:
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT), "version": np.array(VERSION),
                                     "fps": np.array(common_fps(motion), dtype=np.float64)}
    if motion.mesh is not None:
        arrays["mesh_offsets"] = np.asarray(motion.mesh.offsets)
    if motion.pose is not None:
        arrays["poses"] = np.asarray(motion.pose.poses)
    if motion.landmarks is not None:
        landmarks = motion.landmarks
        arrays["landmarks"] = np.asarray(landmarks.points)
        arrays["landmarks_size"] = np.array([landmarks.width, landmarks.height], dtype=np.int64)
        if landmarks.output_size is not None:
            arrays["landmarks_output"] = np.array(landmarks.output_size, dtype=np.int64)
    with open(path, "wb") as file:
        np.savez_compressed(file, **arrays)


def load_motion(path: str | Path) -> Motion:
    """The motion in ``path``; a file that is not a motion file is refused with what is wrong with it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"AniPortrait: '{path}' is not a readable .npz motion file ({exc}). Save one with Save "
                         "Motion (AniPortrait).") from exc
    if str(arrays.get("format", "")) != FORMAT:
        raise ValueError(f"AniPortrait: '{path}' is not an AniPortrait motion file (no format "
                         f"'{FORMAT}'). Save one with Save Motion (AniPortrait), or add the keys described "
                         "in aniportrait/motion/motion_file.py.")
    if int(arrays.get("version", 0)) > VERSION:
        raise ValueError(f"AniPortrait: '{path}' is a motion file of version {int(arrays['version'])}; this pack "
                         f"reads up to version {VERSION}. Update the pack.")
    try:
        return _motion_from_arrays(arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"AniPortrait: the motion file '{path}' is damaged: {exc}") from exc


def _motion_from_arrays(arrays: dict[str, np.ndarray]) -> Motion:
    fps = float(arrays["fps"])
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    motion = Motion()
    if "mesh_offsets" in arrays:
        offsets = _float_array(arrays["mesh_offsets"], "mesh_offsets", (None, 468, 3))
        motion.mesh = MeshSequence(offsets, fps)
    if "poses" in arrays:
        motion.pose = PoseSequence(_float_array(arrays["poses"], "poses", (None, 6)), fps)
    if "landmarks" in arrays:
        width, height = (int(v) for v in arrays["landmarks_size"])
        output = tuple(int(v) for v in arrays["landmarks_output"]) if "landmarks_output" in arrays else None
        if min(width, height) <= 0 or (output is not None and (len(output) != 2 or min(output) <= 0)):
            raise ValueError(f"landmark sizes must be positive, got {width}x{height} and {output}")
        points = _float_array(arrays["landmarks"], "landmarks", (None, None, 2))
        motion.landmarks = LandmarkSequence(points, width, height, fps, output_size=output)
    if not motion.parts():
        raise ValueError("it holds none of mesh_offsets, poses, landmarks")
    return motion


def _float_array(array: np.ndarray, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    matches = array.ndim == len(shape) and all(want is None or want == have for want, have in zip(shape, array.shape))
    if not matches or not np.issubdtype(array.dtype, np.floating) or len(array) == 0:
        wanted = "(" + ", ".join("N" if v is None else str(v) for v in shape) + ")"
        raise ValueError(f"'{key}' must be a non-empty float array of shape {wanted}, got {array.dtype} "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"'{key}' holds NaN or infinite values")
    return array.astype(np.float64)

