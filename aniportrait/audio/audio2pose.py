"""Audio2Pose (docs/pipeline.md#audio2pose): speech -> per-frame head pose
``[rx, ry, rz (Euler xyz degrees), tx, ty, tz]``.

An autoregressive ``nn.TransformerDecoder`` (8 heads, post-LN, ReLU): each new pose token is ``pose_map`` of the
previous prediction plus a sinusoidal position (``PPE``) and an identity embedding; self-attention carries an
ALiBi-style causal bias, and each frame attends to exactly one audio frame (its own) in cross-attention.

The original re-runs the whole decoder over all tokens for every new frame (O(L^2) decoder calls). Because the
mask is causal, earlier outputs never change, so ``Audio2PoseModel.decode`` computes each frame once with cached
keys/values; and because the memory mask is diagonal, frame i's cross-attention is exactly
``out_proj(v_proj(memory_i))`` (a softmax over a single unmasked entry is 1), computed for all frames up front.
``decode_naive`` is the original's loop, kept for the equality test and the benchmark.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointMismatchError, checkpoint_shapes, read_state_dict
from ..position_table import sinusoidal_positions
from .wav2vec2 import Wav2Vec2FrameEncoder, build_encoder, load_audio_model

NUM_HEADS = 8  # hard-coded in the original (not recoverable from tensor shapes)
_EXPECTED = "an AniPortrait audio2pose checkpoint"


class PositionalEncoding(nn.Module):
    """Holds the checkpoint's ``pe`` buffer ``[1, max_len, width]``; longer sequences continue the same formula."""

    def __init__(self, width: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, width).unsqueeze(0))

    def table(self, length: int) -> torch.Tensor:
        stored = self.pe[0, :length]
        if length <= stored.shape[0]:
            return stored
        extra = sinusoidal_positions(length - stored.shape[0], stored.shape[1], start=stored.shape[0])
        return torch.cat([stored, extra.to(stored)])


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi slopes for a power-of-two head count: 2^(-8/n), 2^(-16/n), ... (0.5 ... 1/256 for 8 heads)."""
    return torch.tensor([2.0 ** (-8.0 * (head + 1) / num_heads) for head in range(num_heads)])


def alibi_causal_mask(num_heads: int, length: int) -> torch.Tensor:
    """``[heads, length, length]`` float mask: ``-slope_h * (i - j)`` for ``j <= i``, ``-inf`` above the diagonal."""
    offset = torch.arange(length, dtype=torch.float)
    distance = offset[:, None] - offset[None, :]
    bias = -alibi_slopes(num_heads)[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))


class Audio2PoseModel(nn.Module):
    def __init__(self, encoder: Wav2Vec2FrameEncoder, latent_dim: int, out_dim: int, feedforward_dim: int,
                 num_layers: int, num_identities: int, max_positions: int) -> None:
        super().__init__()
        self.audio_encoder = encoder
        self.pose_map = nn.Linear(out_dim, latent_dim)
        self.in_fn = nn.Linear(encoder.config.hidden_size, latent_dim)
        self.PPE = PositionalEncoding(latent_dim, max_positions)
        layer = nn.TransformerDecoderLayer(d_model=latent_dim, nhead=NUM_HEADS, dim_feedforward=feedforward_dim,
                                           batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, num_layers=num_layers)
        self.pose_map_r = nn.Linear(latent_dim, out_dim)
        self.id_embed = nn.Embedding(num_identities, latent_dim)

    @property
    def num_identities(self) -> int:
        return self.id_embed.num_embeddings

    @torch.no_grad()
    def audio_memory(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Decoder memory ``[1, seq_len, latent]`` for standardised 16 kHz speech ``[1, N]``."""
        if input_values.shape[0] != 1:
            raise ValueError(f"Audio2Pose decodes one clip at a time, got a batch of {input_values.shape[0]}.")
        return self.in_fn(self.audio_encoder(input_values, seq_len))

    @torch.no_grad()
    def infer(self, input_values: torch.Tensor, seq_len: int, id_seed: int) -> torch.Tensor:
        """Head poses ``[1, seq_len, 6]`` for one clip, starting from the zero pose; ``id_seed`` picks the
        speaking-style embedding (0 .. num_identities-1)."""
        return self.decode(self.audio_memory(input_values, seq_len), id_seed)

    def identity(self, id_seed: int) -> torch.Tensor:
        if not 0 <= id_seed < self.num_identities:
            raise ValueError(f"id_seed must be in 0..{self.num_identities - 1}, got {id_seed}: this Audio2Pose "
                             f"checkpoint knows {self.num_identities} speaking styles. Pick one of them.")
        return self.id_embed.weight[id_seed]

    @torch.no_grad()
    def decode(self, memory: torch.Tensor, id_seed: int) -> torch.Tensor:
        """Incremental decoding with cached keys/values: ``[1, L, latent]`` memory -> ``[1, L, 6]`` poses."""
        layers = self.transformer_decoder.layers
        length, width = memory.shape[1], memory.shape[2]
        head_width = width // NUM_HEADS
        identity = self.identity(id_seed)
        positions = self.PPE.table(length)
        cross = [_cross_attention_outputs(layer, memory[0]) for layer in layers]
        keys = memory.new_empty(len(layers), NUM_HEADS, length, head_width)
        values = torch.empty_like(keys)
        slopes = alibi_slopes(NUM_HEADS).to(memory)[:, None, None]
        offsets = torch.arange(length, dtype=memory.dtype, device=memory.device)
        token = self.pose_map(memory.new_zeros(1, self.pose_map.in_features))
        poses = memory.new_empty(length, self.pose_map_r.out_features)
        for step in range(length):
            hidden = token + positions[step] + identity
            bias = -slopes * (step - offsets[:step + 1])
            for index, layer in enumerate(layers):
                hidden = _decoder_layer_step(layer, hidden, keys[index], values[index], step, bias, cross[index][step])
            pose = self.pose_map_r(hidden)
            poses[step] = pose[0]
            token = self.pose_map(pose)
        return poses[None]


def _cross_attention_outputs(layer: nn.TransformerDecoderLayer, memory: torch.Tensor) -> torch.Tensor:
    """Cross-attention output of every frame under the diagonal memory mask: ``out_proj(v_proj(memory))``."""
    attention = layer.multihead_attn
    width = memory.shape[-1]
    value = F.linear(memory, attention.in_proj_weight[2 * width:], attention.in_proj_bias[2 * width:])
    return attention.out_proj(value)


def _decoder_layer_step(layer: nn.TransformerDecoderLayer, hidden: torch.Tensor, keys: torch.Tensor,
                        values: torch.Tensor, step: int, bias: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    """One post-LN decoder layer for the newest token ``hidden [1, width]``; appends its key/value to the cache."""
    attention = layer.self_attn
    query, key, value = F.linear(hidden, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
    keys[:, step] = key.view(NUM_HEADS, -1)
    values[:, step] = value.view(NUM_HEADS, -1)
    # softmax by hand: aten's softmax/SDPA kernels start a thread team even for one row per head, which costs
    # more than the maths at this size
    scores = torch.baddbmm(bias, query.view(NUM_HEADS, 1, -1), keys[:, :step + 1].transpose(1, 2),
                           alpha=keys.shape[-1] ** -0.5)
    weights = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    context = torch.bmm(weights / weights.sum(dim=-1, keepdim=True), values[:, :step + 1])
    hidden = layer.norm1(hidden + attention.out_proj(context.reshape(1, -1)))
    hidden = layer.norm2(hidden + cross)
    return layer.norm3(hidden + layer.linear2(layer.activation(layer.linear1(hidden))))


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


def load_audio2pose(checkpoint: Path | str, wav2vec2_folder: Path | str,
                    only_last_features: bool = True) -> Audio2PoseModel:
    """Audio2PoseModel in eval mode, float32 on the CPU, from ``audio2pose.pt`` and the wav2vec2 folder."""
    state = read_state_dict(checkpoint)
    (latent_dim, hidden_size), (_, out_dim), (feedforward_dim, _), (num_identities, _), (_, max_positions, _) = \
        checkpoint_shapes(state, ("in_fn.weight", "pose_map.weight", "transformer_decoder.layers.0.linear1.weight",
                                  "id_embed.weight", "PPE.pe"), checkpoint, _EXPECTED)
    num_layers = len({key.split(".")[2] for key in state if key.startswith("transformer_decoder.layers.")})
    if latent_dim % NUM_HEADS:
        raise CheckpointMismatchError(f"{checkpoint}: the decoder width {latent_dim} is not divisible by "
                                      f"{NUM_HEADS} heads; this is not an AniPortrait audio2pose checkpoint.")
    encoder = build_encoder(wav2vec2_folder, hidden_size, checkpoint, only_last_features)
    model = Audio2PoseModel(encoder, latent_dim, out_dim, feedforward_dim, num_layers, num_identities, max_positions)
    return load_audio_model(model, checkpoint, state, wav2vec2_folder, _EXPECTED)
