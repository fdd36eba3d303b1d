"""Head-pose post-processing of audio2vid (docs/pipeline.md#head-pose).

Audio2Pose runs on 5-second chunks, each starting again from the zero pose with the same ``id_seed``; the
rotations are halved, the chunks concatenated and smoothed with a 7-frame centred mean. The chunk rule is the
fixed one of docs/departures.md#b4: identical to the original whenever the original does not crash, and also valid for
clips of 5 s or less (the original raises IndexError) and for ``seq_len`` a multiple of 150 (where it loses
150 frames).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..motion.looping import ping_pong
from ..progress import InterruptCheck, ProgressFn
from ..smoothing import smooth_pose_seq
from .audio2pose import Audio2PoseModel
from .wav2vec2 import speech_input
from .waveform import SAMPLE_RATE

CHUNK_SECONDS = 5
ROTATION_SCALE = 0.5
AUDIO_POSE_SMOOTHING = 7


@dataclass(frozen=True)
class PoseChunk:
    start: int    # first sample (16 kHz) of the chunk's audio
    stop: int     # one past its last sample
    frames: int   # video frames decoded from it


def plan_pose_chunks(num_samples: int, seq_len: int, fps: float) -> list[PoseChunk]:
    """Split a clip into chunks of ``CHUNK_SECONDS``; the last chunk also takes the shorter remainder, so it is
    5 to 10 s long. At 30 fps this is the original's 80000-sample / 150-frame split with the last two merged."""
    chunk_frames = max(1, round(CHUNK_SECONDS * fps))
    chunk_samples = round(chunk_frames * SAMPLE_RATE / fps)
    count = -(-num_samples // chunk_samples)
    full = max(0, count - 2)  # every chunk but the (merged) last one
    chunks = [PoseChunk(i * chunk_samples, (i + 1) * chunk_samples, chunk_frames) for i in range(full)]
    chunks.append(PoseChunk(full * chunk_samples, num_samples, seq_len - full * chunk_frames))
    return chunks


def predict_head_pose(model: Audio2PoseModel, input_values: np.ndarray, seq_len: int, fps: float, id_seed: int,
                      progress: ProgressFn | None = None,
                      check_interrupt: InterruptCheck | None = None) -> np.ndarray:
    """Per-chunk Audio2Pose, rotations scaled by 0.5, concatenated: float32 ``[seq_len, 6]`` (before smoothing).
    ``input_values`` is the whole clip, standardised once; ``check_interrupt()`` before each chunk (it raises to
    cancel), ``progress(done_frames, seq_len)`` after each."""
    speech = speech_input(input_values, model)
    poses, done = [], 0
    for chunk in plan_pose_chunks(speech.shape[1], seq_len, fps):
        if check_interrupt is not None:
            check_interrupt()
        chunk_poses = model.infer(speech[:, chunk.start:chunk.stop], chunk.frames, id_seed)[0].float().cpu().numpy()
        chunk_poses[:, :3] *= ROTATION_SCALE
        poses.append(chunk_poses)
        done += chunk.frames
        if progress is not None:
            progress(done, seq_len)
    return np.concatenate(poses)


def head_pose_from_audio(model: Audio2PoseModel, input_values: np.ndarray, seq_len: int, fps: float, id_seed: int,
                         progress: ProgressFn | None = None,
                         check_interrupt: InterruptCheck | None = None) -> np.ndarray:
    """audio2vid's head pose: float64 ``[seq_len, 6]`` (Euler xyz degrees, translation)."""
    poses = predict_head_pose(model, input_values, seq_len, fps, id_seed, progress, check_interrupt)
    return smooth_pose_seq(poses, AUDIO_POSE_SMOOTHING).astype(np.float64)


def load_pose_template(path: Path | str) -> np.ndarray:
    """The float64 ``[frames, 6]`` rows of a head-pose template file (``.npy``, e.g. AniPortrait's pose_temp.npy)."""
    try:
        return _checked_template(np.load(path, allow_pickle=False).astype(np.float64))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"Head-pose template {path} is not usable: {exc} Use a .npy array of shape (frames, 6) "
                         "such as AniPortrait's pose_temp.npy.") from exc


def loop_pose_template(template: np.ndarray, length: int) -> np.ndarray:
    """A head-pose template ``[M, 6]`` played forwards then backwards (``t + t[-2:0:-1]``), repeated and cut
    to ``length`` rows, as audio2vid's ``pose_temp`` branch (no scaling, no smoothing)."""
    return ping_pong(_checked_template(template), length)


def _checked_template(template: np.ndarray) -> np.ndarray:
    template = np.asarray(template)
    if template.ndim != 2 or template.shape[1] != 6 or len(template) == 0:
        raise ValueError(f"A head-pose template must be an array of shape (frames, 6), got {template.shape}.")
    return template
