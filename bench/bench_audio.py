"""Audio models speed at FULL size (wav2vec2-base config, latent 512, random weights built from the config, no
download): Audio2Mesh and Audio2Pose frames/s on 60 s of speech-like noise, Audio2Pose's incremental decoder
against the original's re-run-everything loop on one 150-frame chunk, and a 10-minute clip through the tiny golden
Audio2Mesh (the long-audio path: blocked CNN and attention) with the process's peak memory.

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_audio [--seconds 60] [--threads 1]

One process, CPU, one pass each. One thread by default: decoding is a chain of matrix-vector products, which a
second thread does not speed up and which slow down badly when the cores are shared. Writes
bench/results/audio.json and .md.
"""
from __future__ import annotations

import argparse
import resource

import numpy as np
import torch
from transformers import Wav2Vec2Config

from bench.common import SHARED, machine_description, timed, write_results
from aniportrait.audio.audio2mesh import Audio2MeshModel, load_audio2mesh
from aniportrait.audio.audio2pose import Audio2PoseModel, decode_naive
from aniportrait.audio.head_pose import head_pose_from_audio
from aniportrait.audio.wav2vec2 import Wav2Vec2FrameEncoder
from aniportrait.audio.waveform import SAMPLE_RATE, frame_count, normalize_speech

TINY = SHARED / "golden" / "tiny"
FPS = 30.0
CHUNK_FRAMES = 150


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def speech(seconds: float, seed: int) -> np.ndarray:
    """Standardised noise with a slow syllable-like envelope."""
    rng = np.random.default_rng(seed)
    time_axis = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * time_axis)
    return normalize_speech((rng.standard_normal(len(time_axis)) * envelope).astype(np.float32))


def full_size_models() -> tuple[Audio2MeshModel, Audio2PoseModel]:
    torch.manual_seed(0)
    config = Wav2Vec2Config()  # the defaults are wav2vec2-base's architecture
    config.layerdrop, config.apply_spec_augment = 0.0, False
    mesh = Audio2MeshModel(Wav2Vec2FrameEncoder(config), latent_dim=512, out_dim=1404).eval()
    pose = Audio2PoseModel(Wav2Vec2FrameEncoder(config), latent_dim=512, out_dim=6, feedforward_dim=1024,
                           num_layers=8, num_identities=100, max_positions=600).eval()
    return mesh, pose


def long_tiny_run(minutes: float) -> dict:
    model = load_audio2mesh(TINY / "audio2mesh.pt", TINY / "wav2vec2-base-960h")
    values = torch.from_numpy(speech(minutes * 60, seed=2))[None]
    seq_len = frame_count(values.shape[1], FPS)
    before = peak_rss_gib()
    seconds, offsets = timed(lambda: model.infer(values, seq_len))
    assert offsets.shape == (1, seq_len, 1404) and torch.isfinite(offsets).all()
    return {"minutes": minutes, "frames": seq_len, "seconds": seconds, "peak_rss_gib_before": before,
            "peak_rss_gib_after": peak_rss_gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="speech length for the full-size models")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="clip length for the tiny long run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    long_run = long_tiny_run(args.long_minutes)
    mesh_model, pose_model = full_size_models()
    values = speech(args.seconds, seed=1)
    seq_len = frame_count(len(values), FPS)
    mesh_s, _ = timed(lambda: mesh_model.infer(torch.from_numpy(values)[None], seq_len))
    pose_s, poses = timed(lambda: head_pose_from_audio(pose_model, values, seq_len, FPS, 0))
    assert poses.shape == (seq_len, 6)
    memory_s, memory = timed(lambda: pose_model.audio_memory(torch.from_numpy(values[:80000])[None], CHUNK_FRAMES))
    decode_s, incremental = timed(lambda: pose_model.decode(memory, 0))
    naive_s, naive = timed(lambda: decode_naive(pose_model, memory, 0))
    difference = float((naive - incremental).abs().max())

    result = {
        "speech_seconds": args.seconds, "frames": seq_len, "fps": FPS, "threads": args.threads,
        "audio2mesh_fps": seq_len / mesh_s,
        "audio2mesh_seconds": mesh_s,
        "audio2pose_fps": seq_len / pose_s,
        "audio2pose_seconds": pose_s,
        "chunk_frames": CHUNK_FRAMES,
        "chunk_wav2vec2_seconds": memory_s,
        "chunk_decode_incremental_seconds": decode_s,
        "chunk_decode_original_loop_seconds": naive_s,
        "decode_incremental_fps": CHUNK_FRAMES / decode_s,
        "decode_original_loop_fps": CHUNK_FRAMES / naive_s,
        "decode_speedup": naive_s / decode_s,
        "decode_max_abs_difference": difference,
        "long_tiny_audio2mesh": long_run,
        "machine": f"{machine_description()}, torch {torch.__version__}",
    }
    markdown = (
        f"# Audio models speed\n\n"
        f"Full size (wav2vec2-base architecture, latent 512, random weights), {args.seconds:.0f} s of speech-like "
        f"noise = {seq_len} frames at {FPS:.0f} fps; one process, CPU, {args.threads} thread(s), one pass each "
        f"(shared machine: absolute times vary, ratios within the run are what count).\n\n"
        f"| what | frames/s | seconds |\n|---|---|---|\n"
        f"| Audio2Mesh, whole clip in one pass | {result['audio2mesh_fps']:.1f} | {mesh_s:.1f} |\n"
        f"| Audio2Pose as the node runs it (5 s chunks: wav2vec2 + decoder, smoothing) | "
        f"{result['audio2pose_fps']:.1f} | {pose_s:.1f} |\n"
        f"| wav2vec2 + in_fn of one 5 s chunk | {CHUNK_FRAMES / memory_s:.1f} | {memory_s:.2f} |\n"
        f"| Audio2Pose decoder, one {CHUNK_FRAMES}-frame chunk, incremental (ours) | "
        f"{result['decode_incremental_fps']:.1f} | {decode_s:.2f} |\n"
        f"| Audio2Pose decoder, one {CHUNK_FRAMES}-frame chunk, original loop | "
        f"{result['decode_original_loop_fps']:.1f} | {naive_s:.2f} |\n\n"
        f"Incremental decoding is {result['decode_speedup']:.1f}x faster than the original loop on a "
        f"{CHUNK_FRAMES}-frame chunk (the loop's cost grows with the square of the chunk length; the last chunk of "
        f"a clip is up to 299 frames); largest difference between the two: {difference:.1e}.\n\n"
        f"Long input: {long_run['minutes']:.0f} min ({long_run['frames']} frames) through the tiny golden "
        f"Audio2Mesh in {long_run['seconds']:.1f} s; process peak RSS {long_run['peak_rss_gib_before']:.2f} GiB "
        f"before, {long_run['peak_rss_gib_after']:.2f} GiB after (blocked CNN and attention).\n")
    write_results("audio", result, markdown)


if __name__ == "__main__":
    main()
