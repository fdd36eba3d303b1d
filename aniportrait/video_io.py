"""Writing the generated frames (plus the driving speech) to a video file, and reading videos back.

Plain PyAV + NumPy; no ComfyUI. Two containers are offered: MP4 (H.264 yuv420p + AAC), which every player
and browser plays, and WebM (VP9 yuv420p + Opus).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class ContainerSpec:
    suffix: str
    video_codec: str
    audio_codec: str
    audio_rates: tuple[int, ...]  # sample rates the audio encoder accepts; others are resampled to the first
    video_options: dict[str, str] = field(default_factory=dict)
    muxer_options: dict[str, str] = field(default_factory=dict)
    # muxer option for the clock of the container's edit lists; set to the audio rate so the soundtrack's length
    # is exact (the default millisecond clock cuts up to 1 ms off it)
    timescale_option: str | None = None


CONTAINERS: dict[str, ContainerSpec] = {
    "mp4": ContainerSpec(
        ".mp4", "libx264", "aac",
        (48000, 44100, 96000, 88200, 64000, 32000, 24000, 22050, 16000, 12000, 11025, 8000),
        video_options={"crf": "18", "preset": "medium"},
        # use_metadata_tags: keep arbitrary keys (ComfyUI's "prompt"/"workflow") in the file
        muxer_options={"movflags": "use_metadata_tags"}, timescale_option="movie_timescale"),
    "webm": ContainerSpec(
        ".webm", "libvpx-vp9", "libopus", (48000, 24000, 16000, 12000, 8000),
        # crf with bit rate 0 = constant quality mode of libvpx-vp9
        video_options={"crf": "30", "b": "0"}),
}


@dataclass(frozen=True)
class AudioTrack:
    waveform: np.ndarray  # float32 (channels, samples), -1..1
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.waveform.shape[1] / self.sample_rate


@dataclass(frozen=True)
class WrittenVideo:
    path: Path
    frame_count: int
    width: int
    height: int
    fps: Fraction
    notes: tuple[str, ...]  # adjustments made to the input (padding, audio trim/pad, resampling, downmix)


def frame_rate(fps: float) -> Fraction:
    """fps as the exact rational the file stores (milli-frame precision: 29.97 -> 2997/100)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"Video fps must be a positive number, got {fps}.")
    return Fraction(round(fps * 1000), 1000)


def pad_to_even(frames: np.ndarray) -> tuple[np.ndarray, str | None]:
    """yuv420p stores colour at half resolution, so H.264 needs even sides: repeat the last row/column
    rather than dropping picture content."""
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if not (pad_h or pad_w):
        return frames, None
    padded = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return padded, (f"frame size {width}x{height} is odd; padded to {width + pad_w}x{height + pad_h} "
                    "by repeating the last row/column (yuv420p needs even sides)")


def fit_audio(audio: AudioTrack, frame_count: int, fps: Fraction) -> tuple[AudioTrack, str | None]:
    """Trim the audio to the video length or pad it with silence, so both tracks end together."""
    target = round(frame_count * audio.sample_rate / fps)
    have = audio.waveform.shape[1]
    if have == target:
        return audio, None
    lengths = f"from {have / audio.sample_rate:.3f} s to the video length {target / audio.sample_rate:.3f} s"
    if have > target:
        return AudioTrack(audio.waveform[:, :target], audio.sample_rate), f"audio trimmed {lengths}"
    silence = np.zeros((audio.waveform.shape[0], target - have), dtype=audio.waveform.dtype)
    padded = AudioTrack(np.concatenate([audio.waveform, silence], axis=1), audio.sample_rate)
    return padded, f"audio padded with silence {lengths}"


def mix_down_to_stereo(audio: AudioTrack) -> tuple[AudioTrack, str | None]:
    """More than two channels become the same average on both stereo channels: the surround layouts differ per
    codec, and a plain average keeps every channel audible."""
    channels = audio.waveform.shape[0]
    if channels <= 2:
        return audio, None
    mixed = np.repeat(audio.waveform.mean(axis=0, keepdims=True), 2, axis=0)
    return AudioTrack(mixed, audio.sample_rate), f"{channels}-channel audio mixed down to stereo"


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"Video frames must have the shape (frames, height, width, 3), got {frames.shape}.")
    if frames.shape[0] == 0:
        raise ValueError("There are no frames to write (the image batch is empty). "
                         "Check the node that produced the frames.")
    if frames.dtype != np.uint8:
        raise ValueError(f"Video frames must be uint8, got {frames.dtype}.")
    return np.ascontiguousarray(frames)  # PyAV reads the buffer as packed rows, whatever the array's strides


def check_audio(audio: AudioTrack) -> AudioTrack:
    waveform = np.asarray(audio.waveform, dtype=np.float32)
    if waveform.ndim != 2 or waveform.shape[0] == 0:
        raise ValueError(f"Audio must have the shape (channels, samples), got {waveform.shape}.")
    if int(audio.sample_rate) <= 0:
        raise ValueError(f"Audio sample rate must be positive, got {audio.sample_rate}.")
    return AudioTrack(waveform, int(audio.sample_rate))


def write_video(path: str | Path, frames: np.ndarray, fps: float, audio: AudioTrack | None = None,
                container: str = "mp4", metadata: dict[str, Any] | None = None,
                video_options: dict[str, str] | None = None) -> WrittenVideo:
    """Encode RGB uint8 frames ``(N, H, W, 3)`` at ``fps`` into ``path`` (see ``VideoWriter``)."""
    frames = check_frames(frames)
    with VideoWriter(path, frames.shape[0], frames.shape[2], frames.shape[1], fps, audio, container,
                     metadata, video_options) as writer:
        writer.write(frames)
    return writer.result


class VideoWriter:
    """Encodes a video of ``frame_count`` frames as they come (``write`` any number at a time, in order), so no
    more than one batch of frames is ever held. A context manager: the file gets its name ``path`` only when all
    frames are in; until then it is ``<path>.partial``, which an error or an interrupt deletes.

    ``audio`` is trimmed or padded with silence to exactly the video's duration, resampled to a rate the audio
    codec takes, and interleaved with the video as it goes. ``metadata`` values that are not strings are stored as
    JSON (ComfyUI reads the workflow back from them). Odd sizes are padded to even ones. ``video_options``
    override the container's encoder options (e.g. a faster preset).
    """

    def __init__(self, path: str | Path, frame_count: int, width: int, height: int, fps: float,
                 audio: AudioTrack | None = None, container: str = "mp4",
                 metadata: dict[str, Any] | None = None, video_options: dict[str, str] | None = None) -> None:
        if container not in CONTAINERS:
            raise ValueError(f"Unknown video container '{container}'; choose one of {sorted(CONTAINERS)}.")
        if frame_count < 1:
            raise ValueError("There are no frames to write (the video is empty). "
                             "Check the node that produced the frames.")
        self.spec = CONTAINERS[container]
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.frame_count, self.size, self.rate = frame_count, (width, height), frame_rate(fps)
        self.audio = audio
        self.metadata = metadata
        self.video_options = {**self.spec.video_options, **(video_options or {})}
        self.written = 0
        self.audio_written = 0
        self.notes: list[str] = []
        self.result: WrittenVideo | None = None
        self._output: av.container.OutputContainer | None = None

    def __enter__(self) -> "VideoWriter":
        spec = self.spec
        muxer_options = dict(spec.muxer_options)
        if self.audio is not None:
            audio, length_note = fit_audio(check_audio(self.audio), self.frame_count, self.rate)
            audio, mix_note = mix_down_to_stereo(audio)
            audio_rate = audio.sample_rate if audio.sample_rate in spec.audio_rates else spec.audio_rates[0]
            rate_note = (f"audio resampled from {audio.sample_rate} Hz to {audio_rate} Hz for {spec.audio_codec}"
                         if audio_rate != audio.sample_rate else None)
            self.notes += [note for note in (length_note, mix_note, rate_note) if note]
            self.audio = audio
            if spec.timescale_option:
                muxer_options[spec.timescale_option] = str(audio_rate)
        width, height = self.size
        if width % 2 or height % 2:
            self.notes.append(f"frame size {width}x{height} is odd; padded to {width + width % 2}x"
                              f"{height + height % 2} by repeating the last row/column (yuv420p needs even sides)")
        self._output = output = av.open(str(self.partial_path), mode="w", format=spec.suffix[1:],
                                        options=muxer_options)
        try:
            for key, value in (self.metadata or {}).items():
                output.metadata[key] = value if isinstance(value, str) else json.dumps(value)
            self._video = output.add_stream(spec.video_codec, rate=self.rate, options=self.video_options)
            self._video.width, self._video.height = width + width % 2, height + height % 2
            self._video.pix_fmt = "yuv420p"
            self._audio = None
            if self.audio is not None:
                self._audio = output.add_stream(spec.audio_codec, rate=audio_rate,
                                                layout=_channel_layout(self.audio))
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, frames: np.ndarray) -> None:
        """The next RGB uint8 frames ``(n, H, W, 3)`` of the video."""
        frames = check_frames(frames)
        if frames.shape[1:3] != self.size[::-1]:
            raise ValueError(f"Video frames must all be {self.size[0]}x{self.size[1]}, got "
                             f"{frames.shape[2]}x{frames.shape[1]}.")
        if self.written + frames.shape[0] > self.frame_count:
            raise ValueError(f"The video was opened for {self.frame_count} frames; "
                             f"{self.written + frames.shape[0]} were written.")
        frames, _ = pad_to_even(frames)
        for frame in frames:
            self._output.mux(self._video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.written += frames.shape[0]
        self._write_audio_until(self.written)

    def _write_audio_until(self, frame: int) -> None:
        """The soundtrack up to the end of video frame ``frame``, so both streams advance together."""
        if self._audio is None:
            return
        end = round(frame * self.audio.sample_rate / self.rate) if frame < self.frame_count \
            else self.audio.waveform.shape[1]
        if end <= self.audio_written:
            return
        chunk = AudioTrack(self.audio.waveform[:, self.audio_written:end], self.audio.sample_rate)
        _encode_audio(self._output, self._audio, chunk, pts=self.audio_written)
        self.audio_written = end

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None:
            self._discard()
            return
        try:
            if self.written != self.frame_count:
                raise ValueError(f"The video was opened for {self.frame_count} frames but got {self.written}.")
            self._output.mux(self._video.encode(None))
            if self._audio is not None:
                self._output.mux(self._audio.encode(None))
            self._output.close()
        except BaseException:
            self._discard()
            raise
        self.partial_path.replace(self.path)
        width, height = self.size
        self.result = WrittenVideo(self.path, self.written, width + width % 2, height + height % 2, self.rate,
                                   tuple(self.notes))

    def _discard(self) -> None:
        try:
            self._output.close()
        except Exception:  # a half-written container may fail to finish; it is deleted anyway
            pass
        self.partial_path.unlink(missing_ok=True)


def _channel_layout(audio: AudioTrack) -> str:
    """The layout of a mono or stereo track (``mix_down_to_stereo`` has run)."""
    return "mono" if audio.waveform.shape[0] == 1 else "stereo"


def _encode_audio(output: av.container.OutputContainer, stream: av.AudioStream, audio: AudioTrack,
                  pts: int) -> None:
    """Samples starting at sample ``pts``; PyAV's encoder resamples them to the stream's rate, format and frame
    size, keeping what does not fill a codec frame for the next call."""
    interleaved = np.ascontiguousarray(np.clip(audio.waveform, -1.0, 1.0).T.reshape(1, -1))
    frame = av.AudioFrame.from_ndarray(interleaved, format="flt", layout=_channel_layout(audio))
    frame.sample_rate = audio.sample_rate
    frame.pts = pts
    output.mux(stream.encode(frame))


# AniPortrait decodes with PyAV's ``frame.to_rgb()`` of its time (vid2vid) or OpenCV 4.8 (generate_ref_pose). Both
# convert YUV with the BT.601 matrix and take the range from the pixel format alone (yuvj* full, others limited),
# ignoring the colour matrix and range a file declares. Current PyAV follows the declarations (e.g. BT.709, common in
# phone videos: up to 39 levels off; a full-range flag on yuv420p VP9/HEVC: up to 21), so the original's are forced.
# Measured against PyAV 12 and OpenCV 4.8.1 on generated 8-bit files (4:2:0/4:2:2/4:4:4, odd sizes, yuvj, BT.709 and
# full-range tags, H.264/VP9/MPEG-4): identical bytes.
ORIGINAL_YUV_MATRIX = "ITU601"
ORIGINAL_YUV_RANGE = "MPEG"


def read_video_frames(path: str | Path) -> tuple[np.ndarray, Fraction]:
    """All frames of the first video stream as RGB uint8 ``(N, H, W, 3)`` and its average frame rate, decoded as
    the original decodes them (byte for byte for 8-bit video: any size, 4:2:0/4:2:2/4:4:4, any range or declared
    colour matrix; 10-bit video goes through a newer FFmpeg conversion than the original's and differs)."""
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24", src_colorspace=ORIGINAL_YUV_MATRIX,
                                   src_color_range=ORIGINAL_YUV_RANGE) for frame in source.decode(stream)]
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(0)
    if not frames:
        raise ValueError(f"The video '{path}' has no frames.")
    return np.stack(frames), rate


def read_audio_track(path: str | Path) -> AudioTrack | None:
    """The first audio stream decoded to float32 ``(channels, samples)``, or None when the file has none."""
    with av.open(str(path)) as source:
        if not source.streams.audio:
            return None
        stream = source.streams.audio[0]
        to_float = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        chunks = [converted.to_ndarray() for frame in source.decode(stream) for converted in to_float.resample(frame)]
        chunks += [converted.to_ndarray() for converted in to_float.resample(None)]
        waveform = np.concatenate(chunks, axis=1) if chunks else np.zeros((len(stream.layout.channels), 0))
        if stream.duration is not None:
            # the codec's last frame is padded; the container's duration says where the real audio ends
            waveform = waveform[:, :round(stream.duration * stream.time_base * stream.rate)]
        return AudioTrack(waveform.astype(np.float32), stream.rate)
