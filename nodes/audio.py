"""Audio nodes: load speech, load the audio models, speech -> lip motion (mesh offsets) and head pose."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from comfy_api.latest import io

import folder_paths

from ..aniportrait.audio.audio2mesh import Audio2MeshModel, load_audio2mesh, vertex_offsets
from ..aniportrait.audio.audio2pose import Audio2PoseModel, load_audio2pose
from ..aniportrait.audio.head_pose import head_pose_from_audio, load_pose_template, loop_pose_template
from ..aniportrait.audio.waveform import (decode_audio_file, frame_count, normalize_speech, speech_from_comfy_audio,
                                     speech_sample_count)
from ..aniportrait.cache import file_identity
from ..aniportrait.data import MeshSequence, PoseSequence, same_fps
from . import types as apk
from .search import search_aliases
from .common import (cached_model, check_interrupt, folder_choices, model_choices, progress_bar, resolve_models,
                     torch_device)
from .paths import input_file, input_file_identity, input_file_problem, model_choices_problem

log = logging.getLogger("aniportrait")

CATEGORY = "AniPortrait/audio"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
NO_TEMPLATE = "none"
AUDIO_TOOLTIP = ("Speech to animate (AUDIO from Load Audio, VideoHelperSuite, ...: any sample rate, mono or "
                 "stereo; one clip, not a batch).")
FPS_TOOLTIP = "Frame rate of the video to generate; AniPortrait uses 30."
WAV2VEC2_TOOLTIP = ("wav2vec2 folder in models/aniportrait (config.json + weights; wav2vec2-base-960h is "
                    "downloaded on first use).")


@dataclass(frozen=True)
class AudioModelFiles:
    """What an audio-model loader node outputs: the resolved files. The model itself is built (and cached)
    when a node that uses it runs."""

    checkpoint: Path
    wav2vec2: Path

    @classmethod
    def resolve(cls, model: str, checkpoint: str, wav2vec2: str) -> AudioModelFiles:
        """The files chosen in a loader's dropdowns (missing default files are downloaded)."""
        paths = resolve_models({model: checkpoint, "wav2vec2": wav2vec2})  # one error lists every missing file
        return cls(paths[model], paths["wav2vec2"])


def _input_folder_files() -> list[str]:
    input_dir = folder_paths.get_input_directory()
    return sorted(f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f)))


def _cached(kind: str, files: AudioModelFiles, load: Callable[[Path, Path], torch.nn.Module]) -> torch.nn.Module:
    key = (kind, file_identity(files.checkpoint), file_identity(files.wav2vec2), "fp32", str(torch_device()))
    return cached_model(key, lambda: load(files.checkpoint, files.wav2vec2))


def _prepared_speech(audio: dict, fps: float) -> tuple[np.ndarray, int]:
    """Standardised 16 kHz speech of an AUDIO input and its frame count at ``fps``."""
    waveform = speech_from_comfy_audio(audio, "audio")
    return normalize_speech(waveform), frame_count(len(waveform), fps)


def _fps_input() -> io.Float.Input:
    return io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=1.0, tooltip=FPS_TOOLTIP)


def _model_loader_schema(node_id: str, model: str, title: str, output: type[io.ComfyTypeIO]) -> io.Schema:
    """The two audio-model loaders differ only in which checkpoint they select."""
    return io.Schema(
        node_id=node_id, display_name=f"Load {title} Model (AniPortrait)", category=CATEGORY,
        description=f"Selects AniPortrait's {title} weights and the wav2vec2 speech encoder (run in fp32, as the "
                    "original). Missing default files are downloaded.",
        inputs=[io.Combo.Input(model, options=model_choices(model, CHECKPOINT_SUFFIXES),
                               tooltip=f"{model}.pt in models/aniportrait (downloaded on first use)."),
                io.Combo.Input("wav2vec2", options=folder_choices("wav2vec2"), tooltip=WAV2VEC2_TOOLTIP)],
        outputs=[output.Output(display_name=f"{model}_model", tooltip=f"{title} model for the {title} node.")])


class LoadAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_LoadAudio", display_name="Load Audio (AniPortrait)", category=CATEGORY,
            description="Loads a speech file from ComfyUI's input folder (wav, flac, mp3, m4a/aac, ogg, or the "
                        "audio of a video) at its own sample rate; the audio nodes convert it to 16 kHz mono.",
            inputs=[io.Combo.Input("audio", upload=io.UploadType.audio,
                                   options=folder_paths.filter_files_content_types(_input_folder_files(),
                                                                                   ["audio", "video"]),
                                   tooltip="Audio file in ComfyUI's input folder (upload one with the button).")],
            outputs=[io.Audio.Output(display_name="audio", tooltip="The decoded audio, all channels, original "
                                                                    "sample rate.")])

    @classmethod
    def execute(cls, audio: str) -> io.NodeOutput:
        samples, sample_rate = decode_audio_file(input_file(audio, "audio"))
        return io.NodeOutput({"waveform": torch.from_numpy(samples)[None], "sample_rate": sample_rate})

    @classmethod
    def fingerprint_inputs(cls, audio: str) -> tuple[str, int, int]:
        return input_file_identity(audio, "audio")

    @classmethod
    def validate_inputs(cls, audio: str | None = None) -> bool | str:
        return input_file_problem(audio, "audio")


class LoadAudio2MeshModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _model_loader_schema("APK_LoadAudio2MeshModel", "audio2mesh", "Audio2Mesh", apk.Audio2MeshModel)

    @classmethod
    def execute(cls, audio2mesh: str, wav2vec2: str) -> io.NodeOutput:
        return io.NodeOutput(AudioModelFiles.resolve("audio2mesh", audio2mesh, wav2vec2))

    @classmethod
    def validate_inputs(cls, audio2mesh: str | None = None, wav2vec2: str | None = None) -> bool | str:
        return model_choices_problem(audio2mesh=audio2mesh, wav2vec2=wav2vec2)


class LoadAudio2PoseModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _model_loader_schema("APK_LoadAudio2PoseModel", "audio2pose", "Audio2Pose", apk.Audio2PoseModel)

    @classmethod
    def execute(cls, audio2pose: str, wav2vec2: str) -> io.NodeOutput:
        return io.NodeOutput(AudioModelFiles.resolve("audio2pose", audio2pose, wav2vec2))

    @classmethod
    def validate_inputs(cls, audio2pose: str | None = None, wav2vec2: str | None = None) -> bool | str:
        return model_choices_problem(audio2pose=audio2pose, wav2vec2=wav2vec2)


class Audio2Mesh(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_Audio2Mesh", display_name="Audio2Mesh (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_Audio2Mesh"),
            description="Speech -> per-frame face-mesh vertex offsets (lip sync), one frame per 1/fps s of audio. "
                        "Silence gives a closed mouth.",
            inputs=[apk.Audio2MeshModel.Input("audio2mesh_model", tooltip="From Load Audio2Mesh Model."),
                    io.Audio.Input("audio", tooltip=AUDIO_TOOLTIP),
                    _fps_input()],
            outputs=[apk.MeshSequence.Output(display_name="mesh", tooltip="Per-frame offsets of the 468 face-mesh "
                                             "vertices, ceil(seconds * fps) frames.")])

    @classmethod
    def execute(cls, audio2mesh_model: AudioModelFiles, audio: dict, fps: float) -> io.NodeOutput:
        input_values, seq_len = _prepared_speech(audio, fps)
        model: Audio2MeshModel = _cached("audio2mesh", audio2mesh_model, load_audio2mesh)
        check_interrupt()
        return io.NodeOutput(MeshSequence(vertex_offsets(model, input_values, seq_len), fps))


class Audio2Pose(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_Audio2Pose", display_name="Audio2Pose (AniPortrait)", category=CATEGORY,
            **search_aliases("APK_Audio2Pose"),
            description="Speech -> head pose per frame, as AniPortrait's audio2vid: 5-second chunks, rotations "
                        "halved, 7-frame smoothing. Deterministic for a given id_seed.",
            inputs=[apk.Audio2PoseModel.Input("audio2pose_model", tooltip="From Load Audio2Pose Model."),
                    io.Audio.Input("audio", tooltip=AUDIO_TOOLTIP),
                    _fps_input(),
                    io.Int.Input("id_seed", default=0, min=0, max=99,
                                 tooltip="Speaking-style identity (0-99) of the head motion; AniPortrait picked "
                                         "one at random on every run.")],
            outputs=[apk.PoseSequence.Output(display_name="pose", tooltip="Head pose per frame (Euler xyz degrees "
                                             "+ translation), relative to the reference face.")])

    @classmethod
    def execute(cls, audio2pose_model: AudioModelFiles, audio: dict, fps: float, id_seed: int) -> io.NodeOutput:
        input_values, seq_len = _prepared_speech(audio, fps)
        model: Audio2PoseModel = _cached("audio2pose", audio2pose_model, load_audio2pose)
        poses = head_pose_from_audio(model, input_values, seq_len, fps, id_seed, progress=progress_bar(seq_len),
                                     check_interrupt=check_interrupt)
        return io.NodeOutput(PoseSequence(poses, fps))


class HeadPoseTemplate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_HeadPoseTemplate", display_name="Head Pose Template (AniPortrait)", category=CATEGORY,
            description="Head pose from a template instead of Audio2Pose: the template is played forwards and "
                        "backwards in a loop for the length of the audio (AniPortrait's pose_temp).",
            inputs=[io.Audio.Input("audio", tooltip="Only its length is used: ceil(seconds * fps) frames."),
                    _fps_input(),
                    io.Combo.Input("template", upload=io.UploadType.model,
                                   options=[NO_TEMPLATE] + [f for f in _input_folder_files() if f.endswith(".npy")],
                                   tooltip="Head-pose template .npy (frames x 6: Euler xyz degrees, translation; "
                                           "e.g. AniPortrait's pose_temp.npy) in ComfyUI's input folder. Its rows "
                                           "are used as frames at this fps."),
                    apk.PoseSequence.Input("pose_sequence", optional=True,
                                           tooltip="A head-pose sequence to loop instead of the file (e.g. from "
                                                   "Pose Template); wins over 'template' when connected.")],
            outputs=[apk.PoseSequence.Output(display_name="pose", tooltip="Looped head pose, one row per frame.")])

    @classmethod
    def execute(cls, audio: dict, fps: float, template: str,
                pose_sequence: PoseSequence | None = None) -> io.NodeOutput:
        seq_len = frame_count(speech_sample_count(audio, "audio"), fps)
        if pose_sequence is not None:
            if not same_fps(pose_sequence.fps, fps):
                log.warning("AniPortrait: looping a %.3g fps pose sequence at %.3g fps (rows are used as frames)",
                            pose_sequence.fps, fps)
            return io.NodeOutput(PoseSequence(loop_pose_template(pose_sequence.poses, seq_len), fps))
        if template == NO_TEMPLATE:
            raise ValueError("Head Pose Template: choose a template .npy (put it into ComfyUI's input folder) or "
                             "connect a pose sequence.")
        template_rows = load_pose_template(input_file(template, "template"))
        return io.NodeOutput(PoseSequence(loop_pose_template(template_rows, seq_len), fps))

    @classmethod
    def fingerprint_inputs(cls, template: str, **_: Any) -> Any:
        """A template file replaced under the same name is loaded again (ComfyUI would reuse the old result)."""
        if template == NO_TEMPLATE:
            return template
        return input_file_identity(template, "template")

    @classmethod
    def validate_inputs(cls, template: str | None = None) -> bool | str:
        return True if template == NO_TEMPLATE else input_file_problem(template, "template")


NODES = [LoadAudio, LoadAudio2MeshModel, LoadAudio2PoseModel, Audio2Mesh, Audio2Pose, HeadPoseTemplate]
