"""Code only the tests and benchmarks use: the original's own loops and loaders, kept as references for the
library's faster or ComfyUI-facing equivalents."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aniportrait.audio.audio2pose import NUM_HEADS, Audio2PoseModel, alibi_causal_mask
from aniportrait.audio.waveform import decode_audio_file, speech_waveform


def load_speech_file(path: Path | str) -> np.ndarray:
    """float32 mono 16 kHz waveform of an audio file (librosa.load(path, sr=16000) of the original)."""
    return speech_waveform(*decode_audio_file(path))


@torch.no_grad()
def decode_naive(model: Audio2PoseModel, memory: torch.Tensor, id_seed: int) -> torch.Tensor:
    """The original's decoding loop: the full decoder re-run over all tokens for every new frame.
    Reference for tests and the benchmark only (``Audio2PoseModel.decode`` gives the same numbers)."""
    length = memory.shape[1]
    identity = model.identity(id_seed)[None, None]
    positions = model.PPE.table(length)[None]
    tokens = model.pose_map(memory.new_zeros(1, 1, model.pose_map.in_features))
    memory_mask = ~torch.eye(length, dtype=torch.bool, device=memory.device)
    for step in range(length):
        count = step + 1
        hidden = tokens + positions[:, :count] + identity
        output = model.transformer_decoder(hidden, memory, tgt_mask=alibi_causal_mask(NUM_HEADS, count).to(memory),
                                           memory_mask=memory_mask[:count])
        poses = model.pose_map_r(output)
        tokens = torch.cat([tokens, model.pose_map(poses[:, -1]).unsqueeze(1)], dim=1)
    return poses
