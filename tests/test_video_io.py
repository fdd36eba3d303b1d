"""aniportrait/video_io.py: what goes into a video file comes back out (frames, fps, size, audio of the video's length)."""
from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from aniportrait.video_io import AudioTrack, read_audio_track, read_video_frames, write_video


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    """Smooth moving colour waves, different in every frame: lossy codecs keep them close to the input."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [np.stack([128 + 80 * np.sin(x / 9 + i / 5), 128 + 80 * np.sin(y / 11 - i / 7),
                        np.full_like(x, 60 + 4 * i)], axis=-1) for i in range(count)]
    return np.stack(frames).round().astype(np.uint8)


def assert_same_frames(decoded: np.ndarray, frames: np.ndarray, tolerance: float) -> None:
    """Close to the input, and every decoded frame is nearest to its own input frame (order kept)."""
    error = np.abs(decoded[:, None].astype(np.int16) - frames[None]).mean(axis=(2, 3, 4))
    assert error.diagonal().max() < tolerance, error.diagonal()
    assert (error.argmin(axis=1) == np.arange(len(frames))).all()


def tone(seconds: float, sample_rate: int, channels: int = 1, hz: float = 440.0) -> AudioTrack:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * hz * t)
    return AudioTrack(np.stack([wave * (1 - 0.3 * c) for c in range(channels)]).astype(np.float32), sample_rate)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("audio_seconds", [1.7, 0.3], ids=["trimmed", "padded"])
def test_mp4_round_trip_keeps_frames_fps_and_audio_of_video_length(tmp_path, audio_seconds):
    # 14 frames = 0.4667 s: not a whole number of milliseconds, which the container's default clock would round
    frames = gradient_frames(14, 64, 48)
    audio = tone(audio_seconds, 16000)
    written = write_video(tmp_path / "out.mp4", frames, 30.0, audio, "mp4")

    decoded, fps = read_video_frames(written.path)
    assert decoded.shape == frames.shape
    assert fps == 30
    assert_same_frames(decoded, frames, tolerance=3.0)
    with av.open(str(written.path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].format.name == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"

    track = read_audio_track(written.path)
    video_samples = round(14 * 16000 / 30)
    assert track.sample_rate == 16000
    assert track.waveform.shape == (1, video_samples)  # exactly the video's duration
    kept = min(video_samples, audio.waveform.shape[1])
    assert correlation(track.waveform[0, 1000:kept - 1000], audio.waveform[0, 1000:kept - 1000]) > 0.95
    if kept < video_samples:  # the padding is silence
        assert np.abs(track.waveform[0, kept + 1500:]).max() < 0.02
    assert any(word in " ".join(written.notes) for word in ("trimmed", "padded"))


def test_webm_round_trip_resamples_audio_for_opus(tmp_path):
    frames = gradient_frames(20, 48, 64)
    audio = tone(1.0, 44100, channels=2)
    written = write_video(tmp_path / "out.webm", frames, 25.0, audio, "webm")

    decoded, fps = read_video_frames(written.path)
    assert decoded.shape == frames.shape
    assert fps == 25
    assert_same_frames(decoded, frames, tolerance=4.0)
    track = read_audio_track(written.path)
    assert track.sample_rate == 48000
    assert track.waveform.shape[0] == 2
    assert abs(track.duration - 20 / 25) <= 0.001
    assert any("44100 Hz to 48000 Hz" in note for note in written.notes)
    with av.open(str(written.path)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"
        assert container.streams.audio[0].codec_context.name == "opus"


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_odd_frame_size_is_padded_by_repeating_the_edge(tmp_path, container):
    frames = gradient_frames(6, 47, 63)
    written = write_video(tmp_path / f"odd.{container}", frames, 30.0, None, container)

    decoded, _ = read_video_frames(written.path)
    assert (written.width, written.height) == (64, 48)
    assert decoded.shape == (6, 48, 64, 3)
    # the added row/column repeats the last one of the input (up to compression error)
    assert np.abs(decoded[:, 46:48, :63].astype(int) - frames[:, 46:47, :, :]).mean() < 8.0
    assert np.abs(decoded[:, :47, 62:64].astype(int) - frames[:, :, 62:63, :]).mean() < 8.0
    assert any("padded to 64x48" in note for note in written.notes)
    assert read_audio_track(written.path) is None


def test_fractional_fps_and_surround_audio(tmp_path):
    frames = gradient_frames(30, 32, 32)
    written = write_video(tmp_path / "ntsc.mp4", frames, 29.97, tone(2.0, 22050, channels=6), "mp4")

    _, fps = read_video_frames(written.path)
    assert fps == Fraction(2997, 100)
    track = read_audio_track(written.path)
    assert track.waveform.shape == (2, round(30 * 22050 / Fraction(2997, 100)))
    assert any("mixed down to stereo" in note for note in written.notes)


def test_metadata_is_stored_as_json(tmp_path):
    prompt = {"1": {"class_type": "APK_VideoCombine", "inputs": {}}}
    written = write_video(tmp_path / "meta.mp4", gradient_frames(2, 16, 16), 30.0, None, "mp4",
                          metadata={"prompt": prompt, "title": "plain text"})
    with av.open(str(written.path)) as container:
        assert json.loads(container.metadata["prompt"]) == prompt
        assert container.metadata["title"] == "plain text"


@pytest.mark.parametrize("frames, fps, container, message", [
    (np.zeros((0, 16, 16, 3), np.uint8), 30.0, "mp4", "no frames"),
    (np.zeros((2, 16, 16), np.uint8), 30.0, "mp4", "shape"),
    (np.zeros((2, 16, 16, 3), np.float32), 30.0, "mp4", "uint8"),
    (np.zeros((2, 16, 16, 3), np.uint8), 0.0, "mp4", "fps"),
    (np.zeros((2, 16, 16, 3), np.uint8), 30.0, "avi", "avi"),
])
def test_bad_input_is_refused_with_a_clear_message(tmp_path, frames, fps, container, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "bad.mp4", frames, fps, None, container)
    assert not (tmp_path / "bad.mp4").exists()


def test_bad_audio_is_refused(tmp_path):
    with pytest.raises(ValueError, match="channels, samples"):
        write_video(tmp_path / "bad.mp4", gradient_frames(2, 16, 16), 30.0,
                    AudioTrack(np.zeros(100, np.float32), 16000), "mp4")


# --- decoding as the original ------------------------------------------------------------------------------------
# (codec, pixel format, width, height, declared colour matrix, declared range): sizes that are not multiples of 16,
# odd sizes (4:4:4 only: 4:2:x needs even sides), full range by pixel format (yuvj) or only by flag, BT.709 tags.
DECODE_CASES = {
    "h264-420-250x178": ("libx264", "yuv420p", 250, 178, None, None),
    "h264-444-odd-251x177": ("libx264", "yuv444p", 251, 177, None, None),
    "h264-422": ("libx264", "yuv422p", 250, 178, None, None),
    "h264-yuvj420-full-range": ("libx264", "yuvj420p", 250, 178, None, None),
    "h264-420-bt709-tagged": ("libx264", "yuv420p", 250, 178, "ITU709", None),
    "vp9-420-full-range-flag": ("libvpx-vp9", "yuv420p", 250, 178, None, "JPEG"),
    "mpeg4-96x130": ("mpeg4", "yuv420p", 96, 130, None, None),
}
# BT.601 (the original's matrix) and BT.709 luma weights of red and blue
MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def saturated_slow_frames(count: int, height: int, width: int) -> np.ndarray:
    """Strong colours (BT.601 and BT.709 decode them far apart) that change slowly across the picture (chroma
    subsampling and its interpolation change them little)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [np.stack([128 + 100 * np.sin(x / 40 + i), 128 + 100 * np.sin(y / 30 - i),
                        128 + 100 * np.cos((x + y) / 50 + i)], axis=-1) for i in range(count)]
    return np.stack(frames).round().astype(np.uint8)


def encode_test_video(path, codec: str, pix_fmt: str, width: int, height: int, colorspace, color_range):
    frames = saturated_slow_frames(3, height, width)
    with av.open(str(path), "w") as output:
        stream = output.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if colorspace:
                video_frame.colorspace = stream.codec_context.colorspace = getattr(av.video.reformatter.Colorspace,
                                                                                  colorspace)
            if color_range:
                video_frame.color_range = stream.codec_context.color_range = getattr(
                    av.video.reformatter.ColorRange, color_range)
            output.mux(stream.encode(video_frame))
        output.mux(stream.encode(None))
    return frames


def decoded_planes(path) -> list[av.VideoFrame]:
    with av.open(str(path)) as source:
        return list(source.decode(source.streams.video[0]))


def reference_rgb(frame: av.VideoFrame, matrix: str) -> np.ndarray:
    """Float RGB of an 8-bit YUV frame from its planes, written from the colour standards (nearest chroma): the
    range from the pixel format only, as the original's decoders take it."""
    y, u, v = (np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
               .astype(np.float64) for plane in frame.planes)
    u, v = (np.repeat(np.repeat(c, -(-frame.height // c.shape[0]), 0), -(-frame.width // c.shape[1]), 1)
            [:frame.height, :frame.width] - 128 for c in (u, v))
    if frame.format.name.startswith("yuvj"):
        luma, chroma_scale = y, 1.0
    else:
        luma, chroma_scale = (y - 16) * 255 / 219, 255 / 224
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    red = luma + 2 * (1 - kr) * chroma_scale * v
    blue = luma + 2 * (1 - kb) * chroma_scale * u
    green = (luma - kr * red - kb * blue) / kg
    return np.clip(np.stack([red, green, blue], axis=-1), 0, 255)


def original_pyav_rgb(frame: av.VideoFrame) -> np.ndarray:
    """PyAV <= 12's ``frame.to_rgb()`` (the original's read_frames): swscale without the file's colour tags."""
    frame.colorspace = av.video.reformatter.Colorspace.ITU601
    frame.color_range = av.video.reformatter.ColorRange.UNSPECIFIED
    return frame.to_rgb().to_ndarray()


@pytest.mark.parametrize("case", DECODE_CASES)
def test_decoding_gives_the_originals_frames(tmp_path, case):
    codec, pix_fmt, width, height, colorspace, color_range = DECODE_CASES[case]
    path = tmp_path / f"{case}.mp4"
    encode_test_video(path, codec, pix_fmt, width, height, colorspace, color_range)
    decoded, _ = read_video_frames(path)
    frames = decoded_planes(path)
    assert decoded.shape == (len(frames), height, width, 3)
    assert frames[0].format.name == pix_fmt
    for ours, frame in zip(decoded, frames):
        errors = {matrix: np.abs(ours - reference_rgb(frame, matrix)).mean() for matrix in MATRICES}
        # Measured mean errors: BT.601 0.25 (rounding) for 4:4:4, 0.67 for 4:2:2 and 1.15-1.18 for 4:2:0 (FFmpeg's
        # fast 4:2:0 converter truncates: a bias of -1); BT.709 5.5-8.4 on this content
        assert errors["bt601"] < 1.5 and errors["bt709"] > 4.0, errors
        assert np.array_equal(ours, original_pyav_rgb(frame))
