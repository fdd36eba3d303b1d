"""Audio side without ComfyUI: decoding and resampling, the chunk rule, incremental vs original Audio2Pose decoding,
the long-audio memory path, weight-norm key handling, silence, errors. (Numbers against the original: the golden
cases a_ and b_, ``python -m tests.golden``.)"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from aniportrait.audio.audio2mesh import load_audio2mesh
from aniportrait.audio.audio2pose import PositionalEncoding, alibi_causal_mask, decode_naive, load_audio2pose
from aniportrait.audio.head_pose import (head_pose_from_audio, load_pose_template, loop_pose_template, plan_pose_chunks,
                                    predict_head_pose)
from aniportrait.audio.wav2vec2 import (Wav2Vec2FrameEncoder, load_encoder_config, load_hub_weights,
                                        match_weight_norm_keys)
from aniportrait.audio.waveform import (decode_audio_file, frame_count, normalize_speech, resample_to_16k,
                                        resampled_length, speech_from_comfy_audio, speech_sample_count,
                                        speech_waveform)
from aniportrait.checkpoint import CheckpointMismatchError, read_state_dict
from aniportrait.position_table import sinusoidal_positions
from aniportrait.smoothing import smooth_pose_seq
from tests.reference_code import load_speech_file

POS_CONV = "encoder.pos_conv_embed.conv."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and keeps the tests quick on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(golden_dir: Path) -> Path:
    return golden_dir / "tiny"


@pytest.fixture(scope="module")
def mesh_model(tiny: Path):
    return load_audio2mesh(tiny / "audio2mesh.pt", tiny / "wav2vec2-base-960h")


@pytest.fixture(scope="module")
def pose_model(tiny: Path):
    return load_audio2pose(tiny / "audio2pose.pt", tiny / "wav2vec2-base-960h")


def _speech(seconds: float, seed: int = 0) -> torch.Tensor:
    """Standardised noise-like speech ``[1, N]``."""
    samples = np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32)
    return torch.from_numpy(normalize_speech(samples))[None]


# --- chunk rule (docs/departures.md#b4) -------------------------------------------------------------------------------

def _original_plan(num_samples: int, seq_len: int) -> list[tuple[int, int]] | None:
    """audio2vid's split (80000 samples / 150 frames, last two merged) as (samples, frames), None where it crashes."""
    count = math.ceil(num_samples / 80000)
    samples = [80000] * (count - 1) + [num_samples - 80000 * (count - 1)]
    frames = [150] * (count - 1) + [seq_len % 150]
    if count < 2:
        return None  # audio_chunks[-2] raises IndexError
    samples[-2:] = [samples[-2] + samples[-1]]
    frames[-2:] = [frames[-2] + frames[-1]]
    return list(zip(samples, frames))


@pytest.mark.parametrize("seconds", [0.5, 2.0, 4.99, 5.0, 5.0 + 1 / 16000, 5.5, 9.99, 10.0, 10.01, 15.0, 15.5,
                                     29.97, 30.0, 61.3, 600.0])
def test_chunks_cover_every_frame_and_match_the_original_where_it_works(seconds):
    num_samples = round(seconds * 16000)
    seq_len = frame_count(num_samples, 30)
    chunks = plan_pose_chunks(num_samples, seq_len, 30)
    assert chunks[0].start == 0 and chunks[-1].stop == num_samples
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    assert sum(c.frames for c in chunks) == seq_len
    assert all(c.frames >= 1 for c in chunks) and all(c.frames <= 300 for c in chunks)
    original = _original_plan(num_samples, seq_len)
    if original is not None and seq_len % 150:
        assert [(c.stop - c.start, c.frames) for c in chunks] == original


def test_short_clips_are_one_chunk_and_multiples_of_150_frames_keep_all_frames():
    assert [(c.start, c.stop, c.frames) for c in plan_pose_chunks(80000, 150, 30)] == [(0, 80000, 150)]
    assert [(c.start, c.stop, c.frames) for c in plan_pose_chunks(8000, 15, 30)] == [(0, 8000, 15)]
    # 15 s = 450 frames: the original's frame counts add up to 300 (150 lost); here the last chunk gets 300
    assert [(c.start, c.stop, c.frames) for c in plan_pose_chunks(240000, 450, 30)] == [(0, 80000, 150),
                                                                                       (80000, 240000, 300)]


@pytest.mark.parametrize("fps", [1.0, 12.5, 24.0, 25.0, 29.97, 60.0, 120.0])
def test_chunks_at_other_frame_rates_cover_every_frame(fps):
    for seconds in (0.5, 5.0, 7.3, 12.0, 121.7):
        num_samples = round(seconds * 16000)
        seq_len = frame_count(num_samples, fps)
        chunks = plan_pose_chunks(num_samples, seq_len, fps)
        assert sum(c.frames for c in chunks) == seq_len and all(c.frames >= 1 for c in chunks)
        assert chunks[-1].stop == num_samples


# --- post-processing --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", [3, 5, 7])
def test_smoothing_is_a_centred_mean_truncated_at_the_ends(window):
    poses = np.random.default_rng(window).standard_normal((11, 6))
    smoothed = smooth_pose_seq(poses, window)
    half = window // 2
    for i in range(len(poses)):
        np.testing.assert_allclose(smoothed[i], poses[max(0, i - half):min(11, i + half + 1)].mean(axis=0))
    assert smooth_pose_seq(poses.astype(np.float32), window).dtype == np.float32


def test_template_is_mirrored_and_looped():
    template = np.arange(4, dtype=np.float64)[:, None].repeat(6, axis=1)
    np.testing.assert_array_equal(loop_pose_template(template, 11)[:, 0], [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2])
    np.testing.assert_array_equal(loop_pose_template(template[:1], 3)[:, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        loop_pose_template(np.zeros((5, 3)), 10)


def test_template_files_load_as_float64_and_unusable_ones_are_named(tmp_path):
    template = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    np.save(tmp_path / "pose_temp.npy", template)
    loaded = load_pose_template(tmp_path / "pose_temp.npy")
    assert loaded.dtype == np.float64 and np.array_equal(loaded, template.astype(np.float64))
    np.save(tmp_path / "three_columns.npy", np.zeros((5, 3)))
    np.save(tmp_path / "pickled.npy", np.array([{"pose": 1}], dtype=object))
    (tmp_path / "not_numpy.npy").write_bytes(b"not a numpy file")
    for name in ("three_columns.npy", "pickled.npy", "not_numpy.npy", "missing.npy"):
        with pytest.raises(ValueError, match=rf"(?s){name}.*\(frames, 6\)"):
            load_pose_template(tmp_path / name)


# --- Audio2Pose decoding ----------------------------------------------------------------------------------------

def test_alibi_mask_follows_its_definition():
    mask = alibi_causal_mask(8, 6)
    for head in range(8):
        for i in range(6):
            for j in range(6):
                expected = -(0.5 ** (head + 1)) * (i - j) if j <= i else float("-inf")
                assert mask[head, i, j].item() == expected


def test_positional_table_is_the_checkpoint_buffer_and_continues_past_it(pose_model):
    stored = pose_model.PPE.pe[0]
    torch.testing.assert_close(stored, sinusoidal_positions(*stored.shape), rtol=0, atol=1e-6)
    longer = pose_model.PPE.table(stored.shape[0] + 50)
    assert torch.equal(longer[:stored.shape[0]], stored)
    torch.testing.assert_close(longer, sinusoidal_positions(stored.shape[0] + 50, stored.shape[1]), rtol=0, atol=1e-5)
    assert torch.equal(PositionalEncoding(8, 4).table(3), sinusoidal_positions(3, 8))


def test_incremental_decoder_equals_the_original_loop(pose_model):
    speech = _speech(1.5, seed=3)
    memory = pose_model.audio_memory(speech, 45)
    for id_seed in (0, 99):
        incremental = pose_model.decode(memory, id_seed)
        original = decode_naive(pose_model, memory, id_seed)
        assert incremental.shape == original.shape == (1, 45, 6)
        torch.testing.assert_close(incremental, original, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(pose_model.decode(memory, 0), pose_model.decode(memory, 99))


def test_decoding_is_causal_and_not_limited_to_the_600_frame_table(pose_model):
    memory = pose_model.audio_memory(_speech(21.0, seed=6), 630)
    poses = pose_model.decode(memory, 11)
    assert poses.shape == (1, 630, 6) and torch.isfinite(poses).all()
    torch.testing.assert_close(pose_model.decode(memory[:, :40], 11), poses[:, :40], rtol=1e-5, atol=1e-5)


def test_pose_chunks_restart_from_the_zero_pose_with_the_same_identity(pose_model):
    speech = _speech(11.0, seed=4)  # two chunks: 0-5 s and 5-11 s
    seq_len = frame_count(speech.shape[1], 30)
    interrupt_checks, reported = [], []
    poses = predict_head_pose(pose_model, speech[0].numpy(), seq_len, 30, 7,
                              progress=lambda done, total: reported.append((done, total)),
                              check_interrupt=lambda: interrupt_checks.append(len(reported)))
    assert interrupt_checks == [0, 1] and reported == [(150, seq_len), (seq_len, seq_len)]
    second = pose_model.infer(speech[:, 80000:], seq_len - 150, 7)[0].numpy()
    second[:, :3] *= 0.5
    np.testing.assert_allclose(poses[150:], second, rtol=1e-5, atol=1e-5)
    smoothed = head_pose_from_audio(pose_model, speech[0].numpy(), seq_len, 30, 7)
    assert smoothed.shape == (seq_len, 6) and smoothed.dtype == np.float64
    np.testing.assert_allclose(smoothed, smooth_pose_seq(poses, 7), rtol=0, atol=1e-6)


def test_cancel_stops_before_the_first_chunk_is_decoded(pose_model, monkeypatch):
    class Cancelled(Exception):
        pass

    def cancel() -> None:
        raise Cancelled

    monkeypatch.setattr(pose_model, "infer", lambda *args: pytest.fail("decoded although cancelled"))
    with pytest.raises(Cancelled):
        head_pose_from_audio(pose_model, _speech(0.5)[0].numpy(), 15, 30, 0, check_interrupt=cancel)


def test_id_seed_outside_the_table_is_refused(pose_model):
    with pytest.raises(ValueError, match="id_seed"):
        pose_model.infer(_speech(0.5), 15, 100)


# --- wav2vec2: long audio, RNG, weights -------------------------------------------------------------------------

def test_long_audio_path_equals_the_direct_path_and_bounds_its_blocks(mesh_model, monkeypatch):
    encoder = mesh_model.audio_encoder
    speech = _speech(20.0, seed=5)
    seq_len = frame_count(speech.shape[1], 30)
    direct_features = encoder.cnn_features(speech)
    direct = mesh_model.infer(speech, seq_len)

    heads = encoder.config.num_attention_heads
    monkeypatch.setattr(encoder, "max_cnn_block_frames", 150)
    monkeypatch.setattr(encoder, "max_attention_scores", heads * seq_len * 64)
    score_blocks, conv_inputs = [], []
    attention = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: score_blocks.append(q.shape[1] * q.shape[2] * k.shape[2])
                        or attention(q, k, v, **kw))
    first_conv = encoder.feature_extractor.conv_layers[0].conv
    first_conv.register_forward_pre_hook(lambda module, args: conv_inputs.append(args[0].shape[-1]))
    with torch.no_grad():
        blocked_features = encoder.cnn_features(speech)
    blocked = mesh_model.infer(speech, seq_len)
    first_conv._forward_pre_hooks.clear()

    assert max(score_blocks) <= encoder.max_attention_scores and len(score_blocks) > encoder.config.num_hidden_layers
    assert max(conv_inputs) <= 150 * 320 + 80 and len(conv_inputs) > 2
    torch.testing.assert_close(blocked_features, direct_features, rtol=0, atol=1e-5)
    torch.testing.assert_close(blocked, direct, rtol=0, atol=1e-4)


def test_inference_never_draws_from_the_global_rng(mesh_model, pose_model):
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    mesh_model.infer(_speech(1.0), 30)
    pose_model.infer(_speech(1.0), 30, 3)
    assert torch.equal(torch.rand(4), expected)


def test_checkpoint_pos_conv_weight_norm_is_loaded_not_skipped(tiny, mesh_model):
    state = read_state_dict(tiny / "audio2mesh.pt")
    loaded = mesh_model.audio_encoder.state_dict()
    magnitude, direction = (state[f"audio_encoder.{POS_CONV}weight_{name}"] for name in "gv")
    # folded after loading: the weight that g * v / |v| (norm over all but the kernel axis) gives
    assert torch.equal(loaded[POS_CONV + "weight"], torch._weight_norm(direction, magnitude, 2))
    assert not torch.equal(loaded[POS_CONV + "weight"], direction)
    assert all(torch.equal(loaded[key[len("audio_encoder."):]], value) for key, value in state.items()
               if key.startswith("audio_encoder.") and not key.endswith(("weight_g", "weight_v")))


def test_hub_weights_load_with_their_prefix_and_weight_norm_names(tiny):
    encoder = Wav2Vec2FrameEncoder(load_encoder_config(tiny / "wav2vec2-base-960h"))
    load_hub_weights(encoder, tiny / "wav2vec2-base-960h")
    hub = read_state_dict(tiny / "wav2vec2-base-960h" / "pytorch_model.bin")
    loaded = encoder.state_dict()
    assert torch.equal(loaded[POS_CONV + "parametrizations.weight.original1"], hub["wav2vec2." + POS_CONV + "weight_v"])
    assert torch.equal(loaded["encoder.layers.1.attention.q_proj.weight"],
                       hub["wav2vec2.encoder.layers.1.attention.q_proj.weight"])


def test_weight_norm_names_are_matched_in_both_directions():
    tensor = torch.zeros(1)
    legacy = {"a.conv.weight_g", "a.conv.weight_v"}
    parametrized = {"a.conv.parametrizations.weight.original0", "a.conv.parametrizations.weight.original1"}
    assert set(match_weight_norm_keys(dict.fromkeys(parametrized, tensor), legacy)) == legacy
    assert set(match_weight_norm_keys(dict.fromkeys(legacy, tensor), parametrized)) == parametrized
    assert set(match_weight_norm_keys(dict.fromkeys(legacy, tensor), legacy)) == legacy


def test_a_checkpoint_with_foreign_keys_is_refused_naming_the_file(tiny, tmp_path):
    state = read_state_dict(tiny / "audio2mesh.pt")
    state["audio_encoder.encoder.pos_conv_embed.conv.weight_q"] = state.pop(
        "audio_encoder.encoder.pos_conv_embed.conv.weight_g")
    bad = tmp_path / "renamed.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointMismatchError, match="renamed.pt.*weight_q"):
        load_audio2mesh(bad, tiny / "wav2vec2-base-960h")
    with pytest.raises(CheckpointMismatchError, match="audio2mesh"):
        load_audio2mesh(tiny / "audio2pose.pt", tiny / "wav2vec2-base-960h")


def test_a_mesh_checkpoint_without_xyz_per_vertex_is_refused_naming_the_file(tiny, tmp_path):
    state = read_state_dict(tiny / "audio2mesh.pt")
    state["out_fn.weight"], state["out_fn.bias"] = state["out_fn.weight"][:-1], state["out_fn.bias"][:-1]
    bad = tmp_path / "not_xyz.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointMismatchError, match="not_xyz.pt.*x, y, z per vertex"):
        load_audio2mesh(bad, tiny / "wav2vec2-base-960h")


# --- silence, short and long clips ------------------------------------------------------------------------------

def test_silence_gives_finite_motion(mesh_model, pose_model):
    silence = normalize_speech(np.zeros(16000, dtype=np.float32))
    assert not silence.any()
    speech = torch.from_numpy(silence)[None]
    mesh = mesh_model.infer(speech, 30)
    poses = head_pose_from_audio(pose_model, silence, 30, 30, 0)
    assert mesh.shape == (1, 30, 1404) and torch.isfinite(mesh).all()
    assert poses.shape == (30, 6) and np.isfinite(poses).all()


def test_too_short_audio_is_refused_clearly(mesh_model):
    with pytest.raises(ValueError, match="too short"):
        mesh_model.infer(_speech(0.02), 1)


# --- decoding files ---------------------------------------------------------------------------------------------

def _stereo_tone(seconds: float, rate: int) -> np.ndarray:
    """[2, T] float32: 440 Hz on the left, 440 Hz at half amplitude plus 1 kHz on the right."""
    time = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * time)
    right = 0.25 * np.sin(2 * np.pi * 440 * time) + 0.1 * np.sin(2 * np.pi * 1000 * time)
    return np.stack([left, right]).astype(np.float32)


def _encode(path: Path, codec: str, samples: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo", format="fltp")
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="stereo")
        frame.sample_rate, frame.time_base, frame.pts = rate, Fraction(1, rate), 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _dominant_frequency(waveform: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(len(waveform))))
    return float(np.argmax(spectrum) * 16000 / len(waveform))


@pytest.mark.parametrize("suffix,codec", [(".mp3", "mp3"), (".ogg", "vorbis"), (".m4a", "aac")])
def test_lossy_files_at_44k_stereo_decode_to_16k_mono(tmp_path, suffix, codec):
    path = tmp_path / f"tone{suffix}"
    _encode(path, codec, _stereo_tone(2.0, 44100), 44100)
    waveform = load_speech_file(path)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) - 32000) <= 0.05 * 32000  # codec priming/padding only
    assert abs(_dominant_frequency(waveform) - 440) < 2
    middle = waveform[4000:-4000]
    assert abs(np.sqrt(np.mean(middle ** 2)) - np.sqrt(0.375 ** 2 / 2 + 0.05 ** 2 / 2)) < 0.03


def test_lossless_flac_decodes_exactly_and_mixes_down_before_resampling(tmp_path):
    pcm = np.round(_stereo_tone(1.0, 44100) * 32767).astype(np.int16)
    path = tmp_path / "tone.flac"
    soundfile.write(path, pcm.T, 44100, subtype="PCM_16")
    samples, rate = decode_audio_file(path)
    assert rate == 44100 and np.array_equal(samples, pcm.astype(np.float32) / 32768)
    waveform = load_speech_file(path)
    assert len(waveform) == resampled_length(44100, 44100) == 16000
    np.testing.assert_array_equal(waveform, resample_to_16k(samples.mean(axis=0), 44100))


def test_resampling_keeps_the_band_and_removes_what_would_alias():
    for rate in (8000, 22050, 44100, 48000):
        time = np.arange(rate) / rate
        waveform = resample_to_16k((0.5 * np.sin(2 * np.pi * 1000 * time)).astype(np.float32), rate)
        expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(waveform)) / 16000)
        assert len(waveform) == 16000
        np.testing.assert_allclose(waveform[1000:-1000], expected[1000:-1000], atol=1e-3)
    time = np.arange(44100) / 44100
    above_nyquist = resample_to_16k((0.5 * np.sin(2 * np.pi * 9000 * time)).astype(np.float32), 44100)
    assert np.abs(above_nyquist[1000:-1000]).max() < 1e-3
    tone = np.ones(16000, dtype=np.float32)
    assert resample_to_16k(tone, 16000) is tone  # 16 kHz input is never touched


def test_comfy_audio_values_are_accepted_and_batches_refused():
    stereo = torch.from_numpy(_stereo_tone(1.0, 44100))
    audio = {"waveform": stereo[None], "sample_rate": 44100}
    waveform = speech_from_comfy_audio(audio)
    np.testing.assert_array_equal(waveform, speech_waveform(stereo.numpy(), 44100))
    assert speech_sample_count(audio) == len(waveform) == 16000
    with pytest.raises(ValueError, match="batch of 2"):
        speech_from_comfy_audio({"waveform": stereo[None].repeat(2, 1, 1), "sample_rate": 44100}, "speech")
    with pytest.raises(ValueError, match="'speech'.*no audio samples"):
        speech_from_comfy_audio({"waveform": torch.zeros(1, 2, 0), "sample_rate": 44100}, "speech")
    with pytest.raises(ValueError, match="not an AUDIO"):
        speech_from_comfy_audio(torch.zeros(1, 1, 10))


def test_unreadable_empty_and_missing_files_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio")
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    silent_header = tmp_path / "no_samples.wav"
    soundfile.write(silent_header, np.zeros((0, 1), dtype=np.int16), 16000, subtype="PCM_16")
    for path in (garbage, empty, silent_header):
        with pytest.raises(ValueError, match=path.name):
            load_speech_file(path)
    with pytest.raises(ValueError, match="zero length"):
        load_speech_file(silent_header)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_speech_file(tmp_path / "missing.wav")
