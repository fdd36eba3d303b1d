"""Golden cases a_ (Audio2Mesh) and b_ (Audio2Pose + audio2vid's head-pose post-processing).

Everything goes through the pack's own code: the tiny checkpoints are loaded by ``load_audio2mesh`` /
``load_audio2pose`` (as the released files are) and the case wavs by ``load_speech_file``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aniportrait.audio.audio2mesh import load_audio2mesh, vertex_offsets
from aniportrait.audio.audio2pose import load_audio2pose
from aniportrait.audio.head_pose import (AUDIO_POSE_SMOOTHING, ROTATION_SCALE, loop_pose_template, plan_pose_chunks,
                                    predict_head_pose)
from aniportrait.audio.waveform import frame_count, normalize_speech
from aniportrait.smoothing import smooth_pose_seq
from tests.reference_code import load_speech_file

from .compare import Comparison, compare

# the case inputs named in cases/README.md ("audio.wav", "audio_short.wav"), keyed by the arrays' prefix
CLIPS = {"": "audio.wav", "short_": "audio_short.wav"}
WAV2VEC2_FOLDER = "wav2vec2-base-960h"
# wav2vec2 CNN features / hidden states: measured 1.8e-7 / 6.4e-6, README 1.9e-6
HIDDEN_TOL = 1e-4
MESH_TOL = 1e-5     # a2m_out: measured 8.6e-7, README 2.7e-7
POSE_TOL = 3e-4     # a2p raw / pose_seq (autoregressive): measured 2.5e-5, README 6e-6
# input_values: float32 (x - mean) / sqrt(var + 1e-7): numpy's float32 reductions group the sum by the CPU's vector
# width, so the scale can differ by 1 ulp (measured: the wide set's short clip, 2 ulps on 39k values at |x| < 4);
# 4 ulps relative, and 1e-7 absolute for values near zero
INPUT_RTOL, INPUT_ATOL = 4 * float(np.finfo(np.float32).eps), 1e-7
EXACT = 0.0         # integer data: PCM samples / 32768, frame counts


def _speech(golden: Path, clip: str, fps: float) -> tuple[np.ndarray, np.ndarray, int]:
    waveform = load_speech_file(golden / "cases" / clip)
    return waveform, normalize_speech(waveform), frame_count(len(waveform), fps)


def _file_sizes_match_config(case: str, section: str, settings: dict, latent_dim: int, out_dim: int
                             ) -> list[Comparison]:
    """The widths the loader read off the checkpoint are the ones the config built it with."""
    return [compare(case, f"{section}.{name} (read from the checkpoint)", ours, settings[name], 0)
            for name, ours in (("latent_dim", latent_dim), ("out_dim", out_dim))]


def audio2mesh_case(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    fps, settings = info["args"]["fps"], info["args"]["a2m_model"]
    model = load_audio2mesh(golden / "tiny" / "audio2mesh.pt", golden / "tiny" / WAV2VEC2_FOLDER,
                            settings["only_last_fetures"])
    results = _file_sizes_match_config(case, "a2m_model", settings, model.in_fn.out_features,
                                       model.out_fn.out_features)
    for prefix, clip in CLIPS.items():
        waveform, input_values, seq_len = _speech(golden, clip, fps)
        speech = torch.from_numpy(input_values)[None]
        with torch.no_grad():
            features = model.audio_encoder.frame_features(speech, seq_len)
            hidden = model.audio_encoder(speech, seq_len)
        offsets = vertex_offsets(model, input_values, seq_len).reshape(1, seq_len, -1)  # the node's path
        results.append(compare(case, prefix + "input_values", input_values, data[prefix + "input_values"],
                               INPUT_ATOL, rtol=INPUT_RTOL))
        for name, actual, tol in (("waveform", waveform, EXACT), ("seq_len", seq_len, EXACT),
                                  ("a2m_w2v_extract_features", features, HIDDEN_TOL),
                                  ("a2m_w2v_last_hidden_state", hidden, HIDDEN_TOL),
                                  ("a2m_out", offsets, MESH_TOL)):
            results.append(compare(case, prefix + name, actual, data[prefix + name], tol))
    return results


def audio2pose_case(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    args = info["args"]
    fps, id_seed = args["fps"], int(data["id_seed"])
    assert args["smooth_window"] == AUDIO_POSE_SMOOTHING and args["scale_first3"] == ROTATION_SCALE
    settings = args["a2p_model"]
    model = load_audio2pose(golden / "tiny" / "audio2pose.pt", golden / "tiny" / WAV2VEC2_FOLDER,
                            settings["only_last_fetures"])
    _, input_values, seq_len = _speech(golden, CLIPS[""], fps)
    chunks = plan_pose_chunks(len(input_values), seq_len, fps)
    results = _file_sizes_match_config(case, "a2p_model", settings, model.in_fn.out_features,
                                       model.pose_map_r.out_features)
    results += [compare(case, "chunk_num_samples", [c.stop - c.start for c in chunks], data["chunk_num_samples"], 0),
               compare(case, "chunk_seq_lens", [c.frames for c in chunks], data["chunk_seq_lens"], 0)]
    speech = torch.from_numpy(input_values)[None]
    for index, chunk in enumerate(chunks):
        if f"chunk{index}_a2p_raw" not in data:
            continue
        raw = model.infer(speech[:, chunk.start:chunk.stop], chunk.frames, id_seed).numpy()
        # the original halves the rotations in place on a numpy view of this tensor, so the stored array
        # already carries the 0.5 factor
        raw[..., :3] *= ROTATION_SCALE
        results.append(compare(case, f"chunk{index}_a2p_raw", raw, data[f"chunk{index}_a2p_raw"], POSE_TOL,
                               "rotations x0.5 as stored"))
    before = predict_head_pose(model, input_values, seq_len, fps, id_seed)
    results.append(compare(case, "pose_seq_before_smoothing", before, data["pose_seq_before_smoothing"], POSE_TOL))
    results.append(compare(case, "pose_seq", smooth_pose_seq(before, AUDIO_POSE_SMOOTHING), data["pose_seq"],
                           POSE_TOL))

    _, short_values, short_len = _speech(golden, CLIPS["short_"], fps)
    results.append(compare(case, "short_seq_len", short_len, data["short_seq_len"], 0))
    short_raw = model.infer(torch.from_numpy(short_values)[None], short_len, id_seed)
    results.append(compare(case, "short_a2p_raw", short_raw, data["short_a2p_raw"], POSE_TOL))

    results.append(compare(case, "template_pose_seq", loop_pose_template(data["template"], seq_len),
                           data["template_pose_seq"], 0))
    return results


CASES = {"a_": audio2mesh_case, "b_": audio2pose_case}
