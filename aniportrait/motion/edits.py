"""Edits of the audio-driven motion, each deterministic and in stated units.

Mesh edits work on :class:`MeshSequence` offsets (per-frame vertex offsets added to the reference's canonical
mesh, centimetres, y up); head-motion edits on :class:`PoseSequence` rows (Euler xyz degrees, translation in the
canonical frame's centimetres), both relative to the reference portrait.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data import MeshSequence, PoseSequence
from ..smoothing import smooth_pose_seq
from .regions import BROWS, LOWER_LIDS, UPPER_LIDS, checked_mesh, region_weights, soft_weights

MOUTH_FADE_CM = 1.5     # the mouth region's offsets fade out over this distance (cheeks, nose base)
BROW_FADE_CM = 1.0
# where closed eyelids meet, as a fraction of the opening above the lower lid (the upper lid does most of a blink)
LID_MEETING_POINT = 0.2
BLINK_CLOSING_SHARE = 0.4   # part of a blink spent closing; the rest is the slower opening
BLINK_JITTER = 0.35         # random shift of each blink, as a fraction of the interval between blinks


def checked_offsets(mesh: MeshSequence, reference_mesh: np.ndarray) -> np.ndarray:
    offsets = np.asarray(mesh.offsets, dtype=np.float64)
    if offsets.ndim != 3 or offsets.shape[1:] != checked_mesh(reference_mesh).shape or len(offsets) == 0:
        raise ValueError(f"AniPortrait: input 'mesh' must hold (frames >= 1, 468, 3) vertex offsets, got "
                         f"{offsets.shape}.")
    return offsets


def scale_mouth(mesh: MeshSequence, reference_mesh: np.ndarray, amplitude: float) -> MeshSequence:
    """Mouth-region offsets (lips, chin, fading out over MOUTH_FADE_CM) times ``amplitude``: 0 = the
    reference portrait's own mouth in every frame, 1 = unchanged, 2 = twice the movement."""
    offsets = checked_offsets(mesh, reference_mesh)
    weights = region_weights("mouth", reference_mesh, MOUTH_FADE_CM)[None, :, None]
    return MeshSequence(offsets * (1.0 + (amplitude - 1.0) * weights), mesh.fps)


def raise_brows(mesh: MeshSequence, reference_mesh: np.ndarray, raise_cm: float) -> MeshSequence:
    """Eyebrows moved up (canonical +y) by ``raise_cm`` in every frame, fading out over BROW_FADE_CM around
    them (the eyelids stay where they are); negative values lower them."""
    offsets = checked_offsets(mesh, reference_mesh).copy()
    weights = soft_weights(reference_mesh, np.array(BROWS), BROW_FADE_CM)
    weights[list(UPPER_LIDS + LOWER_LIDS)] = 0.0
    offsets[:, :, 1] += raise_cm * weights[None, :]
    return MeshSequence(offsets, mesh.fps)


@dataclass(frozen=True)
class HeadMotionEdit:
    rotation_scale: float = 1.0                       # times the rotations (0 = the portrait's own angle)
    translation_scale: float = 1.0                    # times the translations
    offset: tuple[float, ...] = (0.0,) * 6            # added to [rx, ry, rz] degrees and [tx, ty, tz] cm
    window: int = 1                                   # moving-average frames (1 = no smoothing)


def edit_head_motion(pose: PoseSequence, edit: HeadMotionEdit) -> PoseSequence:
    """Scaled, offset and smoothed head pose (see :class:`HeadMotionEdit`); smoothing is
    :func:`smooth_pose_seq` (centred window, window // 2 frames each side, truncated at the ends)."""
    poses = np.asarray(pose.poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 6:
        raise ValueError(f"AniPortrait: input 'pose' must hold (frames, 6) head poses, got {poses.shape}.")
    scale = np.array([edit.rotation_scale] * 3 + [edit.translation_scale] * 3)
    edited = poses * scale + np.asarray(edit.offset, dtype=np.float64)
    return PoseSequence(smooth_pose_seq(edited, edit.window), pose.fps)


def blink_curve(frame_count: int, fps: float, centres_s: list[float], duration_s: float) -> np.ndarray:
    """(frames,) eyelid closure 0..1: each blink closes on a half cosine over BLINK_CLOSING_SHARE of
    ``duration_s``, is fully closed at its centre (moved to the nearest frame so every blink closes), then
    opens over the rest; overlapping blinks take the larger closure."""
    if duration_s <= 0:
        raise ValueError(f"AniPortrait: a blink must last longer than 0 s, got {duration_s}.")
    times = np.arange(frame_count) / fps
    closing, opening = duration_s * BLINK_CLOSING_SHARE, duration_s * (1.0 - BLINK_CLOSING_SHARE)
    closure = np.zeros(frame_count)
    for centre in centres_s:
        delta = times - round(centre * fps) / fps
        phase = np.where(delta < 0, -delta / closing, delta / opening)
        closure = np.maximum(closure, np.where(phase < 1, 0.5 * (1 + np.cos(np.pi * np.minimum(phase, 1))), 0))
    return closure


def blink_times(duration_s: float, rate_per_minute: float, seed: int) -> list[float]:
    """Blink centres over ``duration_s`` at an average ``rate_per_minute``: one per interval, shifted randomly by
    up to BLINK_JITTER of the interval (reproducible for a seed)."""
    if rate_per_minute <= 0:
        return []
    interval = 60.0 / rate_per_minute
    count = math.floor(duration_s / interval)
    jitter = np.random.default_rng(seed).uniform(-BLINK_JITTER, BLINK_JITTER, count)
    return [float((index + 0.5 + shift) * interval) for index, shift in enumerate(jitter)]


def close_eyelids(mesh: MeshSequence, reference_mesh: np.ndarray, closure: np.ndarray) -> MeshSequence:
    """Each upper/lower eyelid vertex pair moved towards their meeting point by ``closure`` (frames,) 0..1: the
    lid opening of frame i becomes (1 - closure[i]) times what it was (0 = unchanged, 1 = shut)."""
    offsets = checked_offsets(mesh, reference_mesh).copy()
    closure = np.asarray(closure, dtype=np.float64)
    if closure.shape != (len(offsets),):
        raise ValueError(f"AniPortrait: a blink curve needs one value per frame ({len(offsets)}), got "
                         f"{closure.shape}.")
    upper, lower = list(UPPER_LIDS), list(LOWER_LIDS)
    vertices = offsets + checked_mesh(reference_mesh)
    meeting = vertices[:, lower] + LID_MEETING_POINT * (vertices[:, upper] - vertices[:, lower])
    step = closure[:, None, None]
    offsets[:, upper] += step * (meeting - vertices[:, upper])
    offsets[:, lower] += step * (meeting - vertices[:, lower])
    return MeshSequence(offsets, mesh.fps)


def insert_blinks(mesh: MeshSequence, reference_mesh: np.ndarray, centres_s: list[float], duration_s: float,
                  strength: float) -> MeshSequence:
    """Blinks centred at ``centres_s`` seconds, ``strength`` 0..1 of a full closure."""
    closure = strength * blink_curve(len(mesh.offsets), mesh.fps, centres_s, duration_s)
    return close_eyelids(mesh, reference_mesh, closure)


def parse_times(text: str) -> list[float]:
    """'1.2, 3.5 4' -> [1.2, 3.5, 4.0] seconds (commas, semicolons or spaces between numbers)."""
    fields = text.replace(",", " ").replace(";", " ").split()
    try:
        times = [float(field) for field in fields]
    except ValueError:
        raise ValueError(f"AniPortrait: blink times must be numbers of seconds separated by commas, such as "
                         f"'0.8, 2.5', got '{text}'.") from None
    if any(not math.isfinite(t) or t < 0 for t in times):
        raise ValueError(f"AniPortrait: blink times must be seconds >= 0, got '{text}'.")
    return times
