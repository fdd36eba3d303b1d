"""Speech input for the audio models: decoding, 16 kHz mono, whole-clip standardisation, frame count
(docs/pipeline.md#speech-input).

The original reads audio with ``librosa.load(path, sr=16000)`` and standardises it with transformers'
``Wav2Vec2FeatureExtractor``. Here every file goes through PyAV (the decoder ComfyUI itself uses), so wav, flac,
mp3, m4a/aac, ogg and the audio track of video files all load the same way.

Resampling (only when the input is not already 16 kHz; the golden data is 16 kHz and is never touched) reproduces
librosa 0.9.2's default, resampy's ``kaiser_best`` (resampy >= 0.3): a Kaiser-windowed sinc with 50 zero crossings,
roll-off 0.9173474 and beta 12.9845853, tabulated with 8192 entries per zero crossing, linearly interpolated, taps
spaced by whole table entries. The table is rebuilt from those parameters and applied as a bank of per-phase
filters (rational rate ratio), in float64 where resampy accumulates in float32: results agree to about 1e-6.
Like librosa, the output has ``ceil(n * 16000 / rate)`` samples, of which those past resampy's
``int(n * 16000 / rate)`` are zero.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import av
import numpy as np

SAMPLE_RATE = 16000

# resampy's "kaiser_best" filter (librosa 0.9.2's default resampler), the parameters its stored table was made with
_SINC_ZERO_CROSSINGS = 50
_SINC_ROLLOFF = 0.9173473712608761
_KAISER_BETA = 12.984585309891854
_TABLE_STEPS = 2 ** 13  # table entries per zero crossing (resampy's "precision")


def decode_audio_file(path: Path | str) -> tuple[np.ndarray, int]:
    """All samples of the first audio track of ``path`` as float32 ``[channels, samples]`` in [-1, 1], and its
    sample rate. Integer PCM is scaled by 2**-(bits-1) as soundfile/librosa do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Audio file not found: {path}. Check the name, or put the file into ComfyUI's "
                                "input folder.")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path} could not be opened as audio ({exc}). Use a wav, flac, mp3, m4a/aac or ogg "
                         "file (or a video with an audio track).") from exc
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio track. Pick a file that contains speech.")
        stream = container.streams.audio[0]
        blocks, rates = [], set()
        try:
            for frame in container.decode(stream):
                blocks.append(_frame_samples(frame))
                rates.add(frame.sample_rate)
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path} is damaged: decoding its audio failed ({exc}). Re-export the file and "
                             "try again.") from exc
    if not blocks or sum(b.shape[1] for b in blocks) == 0:
        raise ValueError(f"{path} contains no audio samples (zero length). Pick a file with speech in it.")
    if len(rates) != 1:
        raise ValueError(f"{path} changes its sample rate mid-stream ({sorted(rates)} Hz); convert it to a "
                         "constant rate (e.g. a 16 kHz wav) first.")
    return np.concatenate(blocks, axis=1), rates.pop()


def _frame_samples(frame: Any) -> np.ndarray:
    """One decoded PyAV frame as float32 ``[channels, samples]``."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed formats interleave the channels in one row
        data = data.reshape(-1, channels).T
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / np.float32(2 ** (8 * data.dtype.itemsize - 1))
    return data.astype(np.float32)


def speech_waveform(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[channels, samples]`` (or 1-D) audio -> float32 mono at 16 kHz, mixed down before resampling as
    librosa does (channel mean in float32)."""
    samples = np.asarray(samples, dtype=np.float32)
    mono = samples if samples.ndim == 1 else samples.mean(axis=0)
    return resample_to_16k(mono, int(sample_rate))


def speech_from_comfy_audio(audio: Mapping[str, Any], input_name: str = "audio") -> np.ndarray:
    """float32 mono 16 kHz waveform of a ComfyUI AUDIO value (``{"waveform": [B, C, T], "sample_rate"}``, as
    made by core LoadAudio, VideoHelperSuite and this pack). Only one clip (B = 1) is accepted."""
    return speech_waveform(*_comfy_audio_samples(audio, input_name))


def speech_sample_count(audio: Mapping[str, Any], input_name: str = "audio") -> int:
    """Length in 16 kHz samples of a ComfyUI AUDIO value, without resampling it."""
    samples, sample_rate = _comfy_audio_samples(audio, input_name)
    return resampled_length(samples.shape[-1], sample_rate)


def _comfy_audio_samples(audio: Mapping[str, Any], input_name: str) -> tuple[np.ndarray, int]:
    """The one clip of an AUDIO value as float32 ``[channels, samples]`` and its sample rate, checked."""
    if not isinstance(audio, Mapping) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError(f"Input '{input_name}' is not an AUDIO value (a dict with 'waveform' and "
                         "'sample_rate'). Connect a Load Audio node.")
    waveform, sample_rate = audio["waveform"], int(audio["sample_rate"])
    array = waveform.detach().cpu().float().numpy() if hasattr(waveform, "detach") else np.asarray(waveform)
    if array.ndim == 3:
        if array.shape[0] != 1:
            raise ValueError(f"Input '{input_name}' holds a batch of {array.shape[0]} audio clips; AniPortrait "
                             "animates one clip at a time. Split the batch or load a single file.")
        array = array[0]
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"Input '{input_name}' has no audio samples (waveform shape {tuple(array.shape)}). "
                         "Load a file with speech in it.")
    if not np.isfinite(array).all():
        raise ValueError(f"Input '{input_name}' contains NaN or infinite samples; check the node that made it.")
    if sample_rate <= 0:
        raise ValueError(f"Input '{input_name}' has an invalid sample rate ({sample_rate} Hz); check the node that "
                         "made it.")
    return np.asarray(array, dtype=np.float32), sample_rate


def resample_to_16k(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample a float32 1-D waveform to 16 kHz as librosa 0.9.2 does (returned unchanged when already 16 kHz)."""
    if sample_rate == SAMPLE_RATE:
        return waveform
    up, down = _rate_ratio(sample_rate)
    taps, first_tap = _kaiser_best_phases(sample_rate)
    computed = int(len(waveform) * float(SAMPLE_RATE) / float(sample_rate))  # resampy's length; librosa pads
    padded = np.concatenate([np.zeros(-first_tap), waveform.astype(np.float64), np.zeros(taps.shape[1] + down)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps.shape[1])
    resampled = np.zeros(resampled_length(len(waveform), sample_rate))
    for phase in range(min(up, computed)):
        # output m = phase + k*up is centred on input sample (m*down)//up = (phase*down)//up + k*down
        count = len(range(phase, computed, up))
        start = (phase * down) // up
        resampled[phase:computed:up] = windows[start:start + count * down:down] @ taps[phase]
    return resampled.astype(np.float32)


def resampled_length(num_samples: int, sample_rate: int) -> int:
    """Number of samples ``resample_to_16k`` returns for ``num_samples`` at ``sample_rate``."""
    up, down = _rate_ratio(sample_rate)
    return -(-num_samples * up // down)


def _rate_ratio(sample_rate: int) -> tuple[int, int]:
    common = math.gcd(SAMPLE_RATE, sample_rate)
    return SAMPLE_RATE // common, sample_rate // common


@lru_cache(maxsize=1)
def _kaiser_best_table() -> np.ndarray:
    """resampy's kaiser_best half window: ``_TABLE_STEPS`` entries per zero crossing of the sinc."""
    size = _SINC_ZERO_CROSSINGS * _TABLE_STEPS
    time = np.linspace(0, _SINC_ZERO_CROSSINGS, size + 1)
    return _SINC_ROLLOFF * np.sinc(_SINC_ROLLOFF * time) * np.kaiser(2 * size + 1, _KAISER_BETA)[size:]


@lru_cache(maxsize=8)
def _kaiser_best_phases(sample_rate: int) -> tuple[np.ndarray, int]:
    """Weights ``[up, taps]`` of every output phase, as resampy applies its table: linear interpolation between
    entries, taps spaced by a whole number of entries (``int(scale * steps)``, rounded down as resampy does),
    the table scaled by the rate ratio when downsampling. Also the offset of tap 0 from the centre sample."""
    up, down = _rate_ratio(sample_rate)
    ratio = float(SAMPLE_RATE) / sample_rate
    scale = min(1.0, ratio)
    table = _kaiser_best_table() * (ratio if ratio < 1 else 1.0)
    step = int(scale * _TABLE_STEPS)
    wing = (len(table) - 1) // step + 1

    def wing_weights(position: np.ndarray) -> np.ndarray:
        """Interpolated table at ``position + i*step`` for i in 0..wing-1 (zero past the table's end)."""
        offset = position.astype(np.int64)
        index = offset[:, None] + step * np.arange(wing)
        valid = np.arange(wing) < ((len(table) - offset) // step)[:, None]
        index = np.where(valid, index, 0)
        upper = np.where(index + 1 < len(table), index + 1, index)
        values = table[index] + (position - offset)[:, None] * (table[upper] - table[index])
        return np.where(valid, values, 0.0)

    fraction = scale * ((np.arange(up) * down) % up) / up  # scaled distance of each phase past its centre sample
    left = wing_weights(fraction * _TABLE_STEPS)            # for samples centre, centre-1, ...
    right = wing_weights((scale - fraction) * _TABLE_STEPS)  # for samples centre+1, centre+2, ...
    return np.concatenate([left[:, ::-1], right], axis=1), -(wing - 1)


def normalize_speech(waveform: np.ndarray) -> np.ndarray:
    """Whole-clip standardisation ``(x - mean) / sqrt(var + 1e-7)`` in float32 (Wav2Vec2FeatureExtractor with
    do_normalize). Under numpy 1.x, which the original used, ``var + 1e-7`` and its square root are float64
    scalars applied as float32; the explicit casts give those same bits under numpy 2."""
    x = np.asarray(waveform, dtype=np.float32)
    scale = np.float32(np.sqrt(np.float64(x.var()) + 1e-7))
    return (x - x.mean()) / scale


def frame_count(num_samples: int, fps: float) -> int:
    """Video frames for ``num_samples`` of 16 kHz audio: ``ceil(N / 16000 * fps)`` evaluated as the original."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}.")
    return math.ceil(num_samples / SAMPLE_RATE * fps)
