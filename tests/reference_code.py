"""Code only the tests use: the original's speech-file loader, a reference for the library's ComfyUI-facing audio
path."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aniportrait.audio.waveform import decode_audio_file, speech_waveform


def load_speech_file(path: Path | str) -> np.ndarray:
    """float32 mono 16 kHz waveform of an audio file (librosa.load(path, sr=16000) of the original)."""
    return speech_waveform(*decode_audio_file(path))
