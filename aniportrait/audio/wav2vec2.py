"""AniPortrait's customised wav2vec2 (docs/pipeline.md#wav2vec2): transformers' ``Wav2Vec2Model`` whose CNN features are
linearly resampled to the video frame count BEFORE the feature projection; only the last hidden state is used.

The forward is written here on top of the stock sub-modules (same parameter names, so every checkpoint loads
unchanged) because three things must not depend on the installed transformers version:

* no randomness in inference: newer transformers draw ``torch.rand`` for LayerDrop in every layer, which would
  advance the global RNG that later seeds the video noise; this forward never calls the encoder's own loop;
* bounded memory for long clips: self-attention runs through ``scaled_dot_product_attention`` in query blocks
  (each row's softmax still spans every key, so the numbers are those of full attention), and the CNN runs in
  time blocks with the first layer's GroupNorm statistics gathered over the whole clip first;
* the weight-normalised positional convolution: checkpoints name it ``weight_g``/``weight_v`` (legacy
  ``nn.utils.weight_norm``), current transformers ``parametrizations.weight.original0/1``;
  ``match_weight_norm_keys`` renames whichever way the module needs, so nothing is silently skipped; after
  loading, ``fold_weight_norm`` turns it into the plain weight it computes.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from transformers import Wav2Vec2Config, Wav2Vec2Model

from ..checkpoint import CheckpointMismatchError, device_and_dtype, load_weights, read_state_dict
from ..files import with_safetensors_variant
from .waveform import SAMPLE_RATE

log = logging.getLogger("aniportrait")

HUB_WEIGHTS = "pytorch_model.bin"
_HUB_PREFIX = "wav2vec2."
_WEIGHT_NORM_NAMES = {"weight_g": "parametrizations.weight.original0",
                      "weight_v": "parametrizations.weight.original1"}
# unused at inference (SpecAugment mask vector): present or not depending on the config's mask probabilities
_OPTIONAL_KEY = "masked_spec_embed"


class Wav2Vec2FrameEncoder(Wav2Vec2Model):
    """wav2vec2 that outputs one hidden state per video frame: ``forward(input_values [B, N], seq_len)``
    -> ``[B, seq_len, hidden_size]``."""

    # memory limits for long clips (the defaults keep golden-sized inputs on the single-block path)
    max_cnn_block_frames: int = 1500        # 30 s of 50 Hz CNN frames per block
    max_attention_scores: int = 1 << 26     # elements of one block of attention scores (256 MB in fp32)
    # the inference config's ``only_last_fetures`` (sic) false: the mean of all hidden states (the projected input
    # and every layer's output) instead of the last one; the released config says true
    average_hidden_states: bool = False

    def cnn_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """Stock CNN feature encoder, ``[B, N]`` -> ``[B, C, T]`` (about 50 frames per second)."""
        total = self.cnn_frame_count(input_values.shape[-1])
        if total <= self.max_cnn_block_frames:
            return self.feature_extractor(input_values)
        return self._cnn_features_in_blocks(input_values, total)

    def cnn_frame_count(self, num_samples: int) -> int:
        frames = num_samples
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            frames = (frames - kernel) // stride + 1
        if frames < 1:
            raise ValueError(f"The audio is too short: {num_samples} samples ({num_samples / SAMPLE_RATE:.3f} s at "
                             f"16 kHz) give no wav2vec2 frame; it needs at least {self._receptive_field()[0]} "
                             "samples. Use a longer clip.")
        return frames

    def frame_features(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:
        """CNN features linearly resampled (align_corners=True) to ``seq_len`` frames: ``[B, seq_len, C]``."""
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}.")
        features = self.cnn_features(input_values)
        return F.interpolate(features, size=seq_len, mode="linear", align_corners=True).transpose(1, 2)

    def forward(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:  # type: ignore[override]
        hidden, _ = self.feature_projection(self.frame_features(input_values, seq_len))
        encoder = self.encoder
        hidden = encoder.layer_norm(hidden + encoder.pos_conv_embed(hidden))
        total = hidden if self.average_hidden_states else None
        for layer in encoder.layers:
            hidden = self._encoder_layer(layer, hidden)
            if total is not None:
                total = total + hidden
        return hidden if total is None else total / (len(encoder.layers) + 1)

    def _encoder_layer(self, layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Post-LN encoder layer (base models: ``do_stable_layer_norm`` false), eval mode."""
        attention = layer.attention
        batch, frames, width = hidden.shape

        def heads(projection: torch.nn.Module) -> torch.Tensor:
            return projection(hidden).view(batch, frames, attention.num_heads, -1).transpose(1, 2)

        context = self._attention(heads(attention.q_proj), heads(attention.k_proj), heads(attention.v_proj))
        hidden = hidden + attention.out_proj(context.transpose(1, 2).reshape(batch, frames, width))
        hidden = layer.layer_norm(hidden)
        return layer.final_layer_norm(hidden + layer.feed_forward(hidden))

    def _attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        batch, num_heads, frames, _ = query.shape
        rows = max(1, self.max_attention_scores // (batch * num_heads * key.shape[2]))
        if rows >= frames:
            return F.scaled_dot_product_attention(query, key, value)
        return torch.cat([F.scaled_dot_product_attention(query[:, :, start:start + rows], key, value)
                          for start in range(0, frames, rows)], dim=2)

    def _receptive_field(self) -> tuple[int, int]:
        """Input samples seen by one CNN output frame, and the samples between two frames."""
        field, step = 1, 1
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            field += (kernel - 1) * step
            step *= stride
        return field, step

    def _cnn_features_in_blocks(self, input_values: torch.Tensor, total: int) -> torch.Tensor:
        """The CNN over time blocks of ``max_cnn_block_frames`` output frames. Convolutions only see their
        receptive field, so blocks cut at multiples of the total stride give the same frames; the first layer's
        GroupNorm (one group per channel) normalises over the whole clip, so its statistics come first."""
        first, *rest = self.feature_extractor.conv_layers
        mean, inv_std = self._first_layer_statistics(input_values)
        norm = first.layer_norm
        field, stride = self._receptive_field()
        blocks = []
        for start in range(0, total, self.max_cnn_block_frames):
            stop = min(total, start + self.max_cnn_block_frames)
            hidden = first.conv(input_values[:, None, start * stride:(stop - 1) * stride + field])
            hidden = (hidden - mean) * inv_std * norm.weight[:, None] + norm.bias[:, None]
            hidden = first.activation(hidden)
            for layer in rest:
                hidden = layer(hidden)
            blocks.append(hidden)
        return torch.cat(blocks, dim=2)

    def _first_layer_statistics(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and 1/sqrt(var + eps) of the first convolution's output over the whole clip."""
        first = self.feature_extractor.conv_layers[0]
        kernel, stride = self.config.conv_kernel[0], self.config.conv_stride[0]
        frames = (input_values.shape[-1] - kernel) // stride + 1
        block = self.max_cnn_block_frames * (self._receptive_field()[1] // stride)  # as many as the main pass's
        count, mean, squares = 0, 0.0, 0.0  # running mean and sum of squared deviations (Chan et al.)
        for start in range(0, frames, block):
            stop = min(frames, start + block)
            out = first.conv(input_values[:, None, start * stride:(stop - 1) * stride + kernel])
            block_var, block_mean = torch.var_mean(out, dim=2, keepdim=True, correction=0)
            size, total = out.shape[2], count + out.shape[2]
            delta = block_mean - mean
            mean = mean + delta * (size / total)
            squares = squares + block_var * size + delta.square() * (count * size / total)
            count = total
        return mean, (squares / count + first.layer_norm.eps).rsqrt()


# the architecture part of facebook/wav2vec2-base-960h's config.json (docs/pipeline.md#wav2vec2): the encoder the
# released audio2mesh.pt / audio2pose.pt were trained on
WAV2VEC2_BASE_960H_CONFIG = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "feat_extract_norm": "group", "do_stable_layer_norm": False,
    "conv_bias": False, "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
    "mask_time_prob": 0.05,
}


def load_encoder_config(folder: Path | str) -> Wav2Vec2Config:
    """The wav2vec2 architecture from ``folder/config.json`` (inference settings: no LayerDrop, no SpecAugment)."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: the wav2vec2 folder must hold the config.json of "
                                "facebook/wav2vec2-base-960h (or the model you trained with).")
    return inference_config(Wav2Vec2Config.from_json_file(str(config_file)), config_file)


def inference_config(config: Wav2Vec2Config, source: Path | str) -> Wav2Vec2Config:
    """``config`` checked to be a variant our forward implements, with LayerDrop and SpecAugment off."""
    if config.do_stable_layer_norm or config.feat_extract_norm != "group" or config.add_adapter:
        raise ValueError(f"{source} describes a wav2vec2 variant AniPortrait does not use "
                         "(stable layer norm, layer-norm feature extractor or adapter); use wav2vec2-base-960h.")
    config.layerdrop = 0.0
    config.apply_spec_augment = False
    return config


def match_weight_norm_keys(state_dict: Mapping[str, torch.Tensor], module_keys: set[str]) -> dict[str, torch.Tensor]:
    """Rename the positional convolution's weight-norm tensors to the naming ``module_keys`` use (legacy
    ``weight_g``/``weight_v`` <-> parametrized ``parametrizations.weight.original0/1``)."""
    renamed = {}
    for key, tensor in state_dict.items():
        for legacy, parametrized in _WEIGHT_NORM_NAMES.items():
            if key.endswith("." + legacy) and key[:-len(legacy)] + parametrized in module_keys:
                key = key[:-len(legacy)] + parametrized
            elif key.endswith("." + parametrized) and key[:-len(parametrized)] + legacy in module_keys:
                key = key[:-len(parametrized)] + legacy
        renamed[key] = tensor
    return renamed


def hub_weights_file(folder: Path | str) -> Path:
    folder = Path(folder)
    found = with_safetensors_variant(folder / HUB_WEIGHTS)
    if found is None:
        raise FileNotFoundError(f"{folder / HUB_WEIGHTS} is missing: put the weights of "
                                "facebook/wav2vec2-base-960h there (or model.safetensors).")
    return found


def load_hub_weights(encoder: Wav2Vec2FrameEncoder, folder: Path | str) -> None:
    """Load the wav2vec2 folder's own weights (a Wav2Vec2ForCTC checkpoint: ``wav2vec2.`` prefix + CTC head)."""
    path = hub_weights_file(folder)
    state = read_state_dict(path)
    if any(key.startswith(_HUB_PREFIX) for key in state):
        state = {key[len(_HUB_PREFIX):] if key.startswith(_HUB_PREFIX) else key: value
                 for key, value in state.items()}
    state = match_weight_norm_keys(state, set(encoder.state_dict()))
    load_weights(encoder, state, path, "wav2vec2 weights (Wav2Vec2ForCTC or Wav2Vec2Model)",
                 may_be_missing=lambda key: key == _OPTIONAL_KEY,
                 may_be_extra=lambda key: key.startswith("lm_head.") or key == _OPTIONAL_KEY)


def speech_input(input_values: np.ndarray, model: torch.nn.Module) -> torch.Tensor:
    """One standardised 16 kHz clip as the ``[1, N]`` float32 input of ``model``, on the model's device."""
    device, _ = device_and_dtype(model)
    return torch.from_numpy(np.ascontiguousarray(input_values, dtype=np.float32)).to(device)[None]


def build_encoder(wav2vec2_folder: Path | str, hidden_size: int, checkpoint: Path | str,
                  only_last_features: bool = True) -> Wav2Vec2FrameEncoder:
    """An (untrained) encoder from the folder's config.json, checked against the width the checkpoint expects;
    ``only_last_features``: the inference config's ``only_last_fetures`` (true for the released models)."""
    config = load_encoder_config(wav2vec2_folder)
    if config.hidden_size != hidden_size:
        raise CheckpointMismatchError(f"{checkpoint} was trained on a wav2vec2 with {hidden_size} channels, but "
                                      f"{Path(wav2vec2_folder) / 'config.json'} describes {config.hidden_size}. "
                                      "Select the matching wav2vec2 folder (wav2vec2-base-960h).")
    encoder = Wav2Vec2FrameEncoder(config)
    encoder.average_hidden_states = not only_last_features
    return encoder


def load_audio_model(model: torch.nn.Module, checkpoint: Path | str, state: Mapping[str, torch.Tensor],
                     wav2vec2_folder: Path | str, expected: str) -> torch.nn.Module:
    """Fill ``model`` (with its wav2vec2 under ``audio_encoder``) the way the original does: wav2vec2 weights
    from the folder, then everything the checkpoint holds on top. A checkpoint carrying the complete encoder
    overrides every folder weight, so the folder's weights are then not read at all."""
    prefix = "audio_encoder."
    state = match_weight_norm_keys(state, set(model.state_dict()))
    encoder_keys = {prefix + key for key in model.audio_encoder.state_dict() if key != _OPTIONAL_KEY}
    file_has_encoder = encoder_keys <= state.keys()
    if not file_has_encoder:
        log.info("AniPortrait: %s has no complete wav2vec2; using the weights in %s", checkpoint, wav2vec2_folder)
        load_hub_weights(model.audio_encoder, wav2vec2_folder)
    load_weights(model, state, checkpoint, expected,
                 may_be_missing=lambda key: key == prefix + _OPTIONAL_KEY
                 or (not file_has_encoder and key.startswith(prefix)),
                 may_be_extra=lambda key: key == prefix + _OPTIONAL_KEY)
    fold_weight_norm(model.audio_encoder)
    return model.eval()


def fold_weight_norm(encoder: Wav2Vec2FrameEncoder) -> None:
    """Replace the positional convolution's weight norm by the weight it yields, once the weights are loaded:
    the same tensor every call, not recomputed, and a plain parameter for ComfyUI's model management to move."""
    conv = encoder.encoder.pos_conv_embed.conv
    if parametrize.is_parametrized(conv, "weight"):
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    else:
        torch.nn.utils.remove_weight_norm(conv)
