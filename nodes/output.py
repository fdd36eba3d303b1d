"""Output node: the generated frames plus the driving speech as a video file, previewed in the node."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

import folder_paths
from comfy.cli_args import args
from comfy_api.latest import InputImpl, io, ui

from ..aniportrait.video_io import AudioTrack, WrittenVideo, write_video
from .common import rgb_images_to_uint8
from .paths import save_location
from .search import search_aliases

log = logging.getLogger("aniportrait")

# label shown in the dropdown -> container name in aniportrait/video_io.py
FORMATS = {"mp4 (h264+aac)": "mp4", "webm (vp9+opus)": "webm"}


def audio_track(audio: dict) -> AudioTrack:
    """ComfyUI AUDIO ``{"waveform": [B, C, T], "sample_rate"}`` with B == 1 -> AudioTrack."""
    waveform = audio["waveform"]
    if waveform.ndim != 3 or waveform.shape[0] != 1:
        raise ValueError(f"AniPortrait: the audio input is not one clip (waveform shape {tuple(waveform.shape)}, "
                         "expected [1, channels, samples]); a video takes exactly one soundtrack. "
                         "Connect a single audio clip (e.g. from Load Audio).")
    return AudioTrack(waveform[0].detach().cpu().float().numpy(), int(audio["sample_rate"]))


def output_file(filename_prefix: str, save_output: bool, width: int, height: int,
                suffix: str) -> tuple[Path, str, io.FolderType]:
    """Next free ``<prefix>_<counter>_.<ext>`` in the output folder (or the temp folder for a preview)."""
    folder_type = io.FolderType.output if save_output else io.FolderType.temp
    base = folder_paths.get_output_directory() if save_output else folder_paths.get_temp_directory()
    folder, filename, counter, subfolder = save_location(filename_prefix, base, "filename_prefix", width, height)
    if not os.access(folder, os.W_OK):
        raise ValueError(f"AniPortrait: the output folder '{folder}' is not writable. Fix its permissions, "
                         "or start ComfyUI with another --output-directory.")
    return Path(folder) / f"{filename}_{counter:05}_{suffix}", subfolder, folder_type


def video_file_inputs(fps_tooltip: str) -> list:
    """The inputs of a node that writes a video file: rate, soundtrack, format and where it goes."""
    return [
        io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=1.0, round=0.001, tooltip=fps_tooltip),
        io.Audio.Input("audio", optional=True,
                       tooltip="Soundtrack (the driving speech). Trimmed or padded with silence to the "
                               "video's length. Leave unconnected for a silent video."),
        io.Combo.Input("format", options=list(FORMATS), default="mp4 (h264+aac)",
                       tooltip="MP4 plays everywhere; WebM is smaller. Odd frame sizes are padded by "
                               "one pixel (the colour format needs even sides)."),
        io.String.Input("filename_prefix", default="AniPortrait/video",
                        tooltip="File name prefix inside the output folder; a counter is appended. "
                                "May contain sub-folders."),
        io.Boolean.Input("save_output", default=True,
                         tooltip="On: keep the file in the output folder. Off: write it to the temp "
                                 "folder only for the preview (deleted when ComfyUI restarts)."),
    ]


def video_file_output() -> io.Video.Output:
    return io.Video.Output(display_name="video", tooltip="The written video (frames, audio, fps) for core video "
                                                         "nodes such as Save Video or Get Video Components.")


class VideoCombine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="APK_VideoCombine", display_name="Video Combine (AniPortrait)", category="AniPortrait/output",
            **search_aliases("APK_VideoCombine"),
            description="Frames + speech -> a video file (MP4 H.264/AAC or WebM VP9/Opus) in the output folder, "
                        "played in the node. The audio is trimmed or padded with silence to the video's length.",
            inputs=[
                io.Image.Input("images", tooltip="The frames of the video, in order (e.g. the sampler's output)."),
                *video_file_inputs("Frames per second (fractions such as 29.97 work). AniPortrait makes "
                                   "audio-driven video at 30 fps; video-driven modes keep the source's rate."),
            ],
            outputs=[video_file_output()],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images: torch.Tensor, fps: float, format: str, filename_prefix: str, save_output: bool,
                audio: dict | None = None) -> io.NodeOutput:
        container = FORMATS[format]
        frames = rgb_images_to_uint8(images[..., :3], "images")  # an alpha channel is dropped
        track = audio_track(audio) if audio is not None else None
        path, subfolder, folder_type = output_file(filename_prefix, save_output, frames.shape[2], frames.shape[1],
                                                   f".{container}")
        written = write_video(path, frames, fps, track, container, metadata=workflow_metadata(cls.hidden))
        return saved_video(written, subfolder, folder_type, "VideoCombine")


def workflow_metadata(hidden) -> dict | None:
    """The prompt and workflow (a node's hidden inputs), stored in the file like core SaveVideo does (drag it back
    into ComfyUI)."""
    if args.disable_metadata:
        return None
    metadata = dict(hidden.extra_pnginfo or {})
    if hidden.prompt is not None:
        metadata["prompt"] = hidden.prompt
    return metadata or None


def saved_video(written: WrittenVideo, subfolder: str, folder_type: io.FolderType, node: str) -> io.NodeOutput:
    """A written file as the node's VIDEO output (read from the file when a consumer needs it) and its preview."""
    for note in written.notes:
        log.info("AniPortrait %s: %s", node, note)
    preview = ui.PreviewVideo([ui.SavedResult(written.path.name, subfolder, folder_type)])
    return io.NodeOutput(InputImpl.VideoFromFile(str(written.path)), ui=preview)


NODES = [VideoCombine]
