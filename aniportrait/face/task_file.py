"""The face-geometry metadata inside a MediaPipe FaceLandmarker ``.task`` file.

A ``.task`` file is a zip archive. Besides the TFLite models it holds
``geometry_pipeline_metadata_landmarks.binarypb``, a serialised ``GeometryPipelineMetadata`` protobuf message:

    GeometryPipelineMetadata: 1 canonical_mesh (Mesh3d), 2 procrustes_landmark_basis (repeated
                              WeightedLandmarkRef), 3 input_source (enum; 1 = FACE_LANDMARK_PIPELINE)
    Mesh3d:                   1 vertex_type (enum; 0 = VERTEX_PT: x, y, z, u, v per vertex), 2 primitive_type
                              (enum; 0 = TRIANGLE), 3 vertex_buffer (repeated float), 4 index_buffer
                              (repeated uint32)
    WeightedLandmarkRef:      1 landmark_id (uint32), 2 weight (float)

It is read with the small wire-format reader below, so that no protobuf runtime or generated MediaPipe
classes are needed.
"""
from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GEOMETRY_METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
FACE_LANDMARK_PIPELINE = 1
VERTEX_PT = 0
VERTEX_PT_SIZE = 5   # x, y, z, u, v
TRIANGLE = 0

TASK_FILE_HINT = ("Use MediaPipe's face landmarker model (face_landmarker_v2_with_blendshapes.task, also published as "
                  "face_landmarker.task); download it again if the file is damaged.")

# wire types
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class TaskFileError(ValueError):
    """The file is not a usable MediaPipe FaceLandmarker task file."""


@dataclass(frozen=True)
class GeometryMetadata:
    """Canonical face model and Procrustes weights of MediaPipe's face-geometry pipeline."""

    canonical_vertices: np.ndarray    # (V, 3) float32, cm, right-handed, y up
    texture_coords: np.ndarray        # (V, 2) float32
    triangles: np.ndarray             # (T, 3) int64, 0-based vertex indices
    landmark_weights: np.ndarray      # (V,) float32, zero except for the Procrustes basis landmarks

    @property
    def num_vertices(self) -> int:
        return len(self.canonical_vertices)


def read_geometry_metadata(task_path: Path | str) -> GeometryMetadata:
    """The face-geometry metadata of a FaceLandmarker ``.task`` file; TaskFileError names the file if it is
    not one."""
    task_path = Path(task_path)
    try:
        with zipfile.ZipFile(task_path) as archive:
            if GEOMETRY_METADATA_MEMBER not in archive.namelist():
                raise TaskFileError(f"{task_path} is not a MediaPipe FaceLandmarker task file: it has no "
                                    f"'{GEOMETRY_METADATA_MEMBER}' (it holds {sorted(archive.namelist())}). "
                                    f"{TASK_FILE_HINT}")
            payload = archive.read(GEOMETRY_METADATA_MEMBER)
    except zipfile.BadZipFile as exc:
        raise TaskFileError(f"{task_path} is not a MediaPipe task file (not a zip archive: {exc}). "
                            f"{TASK_FILE_HINT}") from exc
    try:
        return parse_geometry_metadata(payload)
    except TaskFileError as exc:
        raise TaskFileError(f"{task_path}: {exc} {TASK_FILE_HINT}") from exc


def parse_geometry_metadata(payload: bytes) -> GeometryMetadata:
    """Decode a serialised ``GeometryPipelineMetadata`` message."""
    message = _read_message(payload)
    input_source = _single_varint(message, 3, default=0)
    if input_source not in (0, FACE_LANDMARK_PIPELINE):  # 0 = DEFAULT, which MediaPipe treats as landmarks
        raise TaskFileError(f"the geometry metadata is for input source {input_source}, not for face landmarks.")
    if 1 not in message:
        raise TaskFileError("the geometry metadata has no canonical mesh.")
    mesh = _read_message(_single_bytes(message, 1))
    if _single_varint(mesh, 1, default=VERTEX_PT) != VERTEX_PT or _single_varint(mesh, 2, default=TRIANGLE) != TRIANGLE:
        raise TaskFileError("the canonical mesh is not a triangle mesh with (x, y, z, u, v) vertices.")
    vertex_buffer = _repeated_floats(mesh.get(3, []))
    index_buffer = _repeated_varints(mesh.get(4, []))
    if vertex_buffer.size == 0 or vertex_buffer.size % VERTEX_PT_SIZE or index_buffer.size % 3:
        raise TaskFileError(f"the canonical mesh buffers have unexpected sizes "
                            f"({vertex_buffer.size} vertex floats, {index_buffer.size} indices).")
    vertices = vertex_buffer.reshape(-1, VERTEX_PT_SIZE)
    num_vertices = len(vertices)
    triangles = index_buffer.reshape(-1, 3).astype(np.int64)
    if triangles.size and triangles.max() >= num_vertices:
        raise TaskFileError("the canonical mesh has triangle indices beyond its vertices.")

    weights = np.zeros(num_vertices, dtype=np.float32)
    for _, raw in message.get(2, []):
        reference = _read_message(raw)
        landmark_id = _single_varint(reference, 1, default=0)
        if landmark_id >= num_vertices:
            raise TaskFileError(f"Procrustes landmark {landmark_id} is beyond the {num_vertices} mesh vertices.")
        weights[landmark_id] = _single_float(reference, 2, default=0.0)
    if not np.all(weights >= 0) or weights.sum() <= 0:
        raise TaskFileError("the Procrustes landmark weights are missing or negative.")
    return GeometryMetadata(canonical_vertices=np.ascontiguousarray(vertices[:, :3]),
                            texture_coords=np.ascontiguousarray(vertices[:, 3:]),
                            triangles=triangles, landmark_weights=weights)


# --- protobuf wire format -------------------------------------------------------------------------------------

def _read_varint(buffer: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buffer):
            raise TaskFileError("the geometry metadata is truncated (unfinished varint).")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _read_message(buffer: bytes) -> dict[int, list[tuple[int, object]]]:
    """``{field number: [(wire type, value), ...]}`` in file order; values are ints (varints) or bytes."""
    fields: dict[int, list[tuple[int, object]]] = {}
    pos = 0
    while pos < len(buffer):
        key, pos = _read_varint(buffer, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buffer, pos)
        elif wire_type == _LENGTH_DELIMITED:
            length, pos = _read_varint(buffer, pos)
            value, pos = buffer[pos:pos + length], pos + length
        elif wire_type in (_FIXED32, _FIXED64):
            size = 4 if wire_type == _FIXED32 else 8
            value, pos = buffer[pos:pos + size], pos + size
        else:
            raise TaskFileError(f"the geometry metadata uses an unsupported protobuf wire type {wire_type}.")
        if pos > len(buffer):
            raise TaskFileError("the geometry metadata is truncated.")
        fields.setdefault(number, []).append((wire_type, value))
    return fields


def _single_varint(message: dict, number: int, default: int) -> int:
    values = [v for wire, v in message.get(number, []) if wire == _VARINT]
    return values[-1] if values else default   # protobuf: the last occurrence wins


def _single_float(message: dict, number: int, default: float) -> float:
    values = _repeated_floats(message.get(number, []))
    return float(values[-1]) if values.size else default


def _single_bytes(message: dict, number: int) -> bytes:
    return b"".join(v for wire, v in message[number] if wire == _LENGTH_DELIMITED)  # repeated parts are merged


def _repeated_floats(entries: list[tuple[int, object]]) -> np.ndarray:
    """A repeated float field, packed (one length-delimited blob) or not (one fixed32 per value)."""
    raw = b"".join(v for wire, v in entries if wire in (_FIXED32, _LENGTH_DELIMITED))
    if len(raw) % 4:
        raise TaskFileError("a float array of the geometry metadata has a broken length.")
    return np.array(struct.unpack(f"<{len(raw) // 4}f", raw), dtype=np.float32)


def _repeated_varints(entries: list[tuple[int, object]]) -> np.ndarray:
    values: list[int] = []
    for wire, value in entries:
        if wire == _VARINT:
            values.append(value)
        elif wire == _LENGTH_DELIMITED:   # packed
            pos = 0
            while pos < len(value):
                number, pos = _read_varint(value, pos)
                values.append(number)
    return np.array(values, dtype=np.int64)
