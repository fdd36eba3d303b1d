"""Audio2Mesh (docs/pipeline.md#audio2mesh): speech -> per-frame offsets of the 468 MediaPipe face-mesh vertices.

``out_fn(in_fn(wav2vec2_last_hidden_state))`` with no non-linearity in between. Widths come from the checkpoint's
tensor shapes and the wav2vec2 folder's config.json, so the released weights and small test weights load alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointMismatchError, checkpoint_shapes, read_state_dict
from .wav2vec2 import Wav2Vec2FrameEncoder, build_encoder, load_audio_model, speech_input

_EXPECTED = "an AniPortrait audio2mesh checkpoint"


class Audio2MeshModel(nn.Module):
    def __init__(self, encoder: Wav2Vec2FrameEncoder, latent_dim: int, out_dim: int) -> None:
        super().__init__()
        self.audio_encoder = encoder
        self.in_fn = nn.Linear(encoder.config.hidden_size, latent_dim)
        self.out_fn = nn.Linear(latent_dim, out_dim)

    @torch.no_grad()
    def infer(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Standardised 16 kHz speech ``[B, N]`` -> vertex offsets ``[B, seq_len, out_dim]`` (x, y, z per vertex)."""
        return self.out_fn(self.in_fn(self.audio_encoder(input_values, seq_len)))


def vertex_offsets(model: Audio2MeshModel, input_values: np.ndarray, seq_len: int) -> np.ndarray:
    """float32 ``[seq_len, vertices, 3]`` offsets for one standardised 16 kHz clip ``[N]``."""
    return model.infer(speech_input(input_values, model), seq_len)[0].float().cpu().numpy().reshape(seq_len, -1, 3)


def load_audio2mesh(checkpoint: Path | str, wav2vec2_folder: Path | str,
                    only_last_features: bool = True) -> Audio2MeshModel:
    """Audio2MeshModel in eval mode, float32 on the CPU, from ``audio2mesh.pt`` and the wav2vec2 folder."""
    state = read_state_dict(checkpoint)
    (latent_dim, hidden_size), (out_dim, _) = checkpoint_shapes(state, ("in_fn.weight", "out_fn.weight"),
                                                               checkpoint, _EXPECTED)
    if out_dim % 3:
        raise CheckpointMismatchError(f"{checkpoint} predicts {out_dim} values per frame, not x, y, z per vertex; "
                                      "select AniPortrait's audio2mesh.pt.")
    encoder = build_encoder(wav2vec2_folder, hidden_size, checkpoint, only_last_features)
    model = Audio2MeshModel(encoder, latent_dim, out_dim)
    return load_audio_model(model, checkpoint, state, wav2vec2_folder, _EXPECTED)
