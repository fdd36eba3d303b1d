"""APK_VideoCombine in a real ComfyUI: the file in the output folder, the preview entry, the VIDEO output that core
video nodes take further, and clear errors for bad settings."""
from __future__ import annotations

import json
from fractions import Fraction

import av
import pytest

from aniportrait.video_io import read_audio_track, read_video_frames
from tests.harness.graph import Graph

pytestmark = pytest.mark.server

FRAMES, WIDTH, HEIGHT = 45, 65, 48  # odd width: padded to 66 by the node


def frames_and_speech(client, assets_dir, graph: Graph):
    frames = graph.add("EmptyImage", width=WIDTH, height=HEIGHT, batch_size=FRAMES, color=0x3366CC)
    speech = graph.add("LoadAudio", upload=client.upload(assets_dir / "lyl.wav", "apk_test_speech_full.wav"))
    return frames, speech


def saved_file(comfy_server, entry: dict):
    folder = comfy_server.output_dir if entry["type"] == "output" else comfy_server.base_dir / "temp"
    return folder / entry["subfolder"] / entry["filename"]


def test_writes_mp4_with_speech_of_video_length_and_feeds_core_video_nodes(client, comfy_server, assets_dir):
    graph = Graph(client.object_info())
    frames, speech = frames_and_speech(client, assets_dir, graph)
    combine = graph.add("APK_VideoCombine", frames, speech, fps=30.0)
    components = graph.add("GetVideoComponents", combine)
    fps_text = graph.add("PreviewAny", components.out(2))  # the fps the core node reads back
    resave = graph.add("SaveVideo", combine, filename_prefix="video/resaved")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()

    preview = run.outputs[combine.id]
    assert preview["animated"] == [True]
    [entry] = preview["images"]
    assert (entry["type"], entry["subfolder"]) == ("output", "AniPortrait")
    assert entry["filename"].startswith("video_") and entry["filename"].endswith("_.mp4")
    path = saved_file(comfy_server, entry)
    decoded, fps = read_video_frames(path)
    assert decoded.shape == (FRAMES, HEIGHT, WIDTH + 1, 3)
    assert fps == 30
    audio = read_audio_track(path)
    assert audio.sample_rate == 44100
    assert audio.waveform.shape == (2, round(FRAMES / 30 * 44100))  # speech trimmed to 1.5 s
    with av.open(str(path)) as container:
        assert json.loads(container.metadata["prompt"])[combine.id]["class_type"] == "APK_VideoCombine"
    assert run.outputs[fps_text.id]["text"] == ["30.0"]
    resaved = saved_file(comfy_server, run.outputs[resave.id]["images"][0])
    assert read_video_frames(resaved)[0].shape[0] == FRAMES


def test_preview_only_webm_goes_to_the_temp_folder(client, comfy_server, assets_dir):
    graph = Graph(client.object_info())
    frames, speech = frames_and_speech(client, assets_dir, graph)
    combine = graph.add("APK_VideoCombine", frames, speech, fps=25.0, format="webm (vp9+opus)", save_output=False,
                        filename_prefix="AniPortrait/preview")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()

    [entry] = run.outputs[combine.id]["images"]
    assert entry["type"] == "temp" and entry["filename"].endswith(".webm")
    path = saved_file(comfy_server, entry)
    assert path.is_file()
    assert not (comfy_server.output_dir / "AniPortrait" / entry["filename"]).exists()
    decoded, fps = read_video_frames(path)
    assert decoded.shape[0] == FRAMES and fps == Fraction(25)
    assert abs(read_audio_track(path).duration - FRAMES / 25) < 1e-3


def test_silent_video_without_audio(client, comfy_server):
    graph = Graph(client.object_info())
    frames = graph.add("EmptyImage", width=32, height=32, batch_size=3)
    combine = graph.add("APK_VideoCombine", frames, filename_prefix="AniPortrait/silent")
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    path = saved_file(comfy_server, run.outputs[combine.id]["images"][0])
    assert read_audio_track(path) is None


@pytest.mark.parametrize("prefix, message", [("../../outside", "points outside"), (" ", "is empty")])
def test_bad_filename_prefix_is_a_clear_node_error(client, prefix, message):
    graph = Graph(client.object_info())
    combine = graph.add("APK_VideoCombine", graph.add("EmptyImage", batch_size=2), filename_prefix=prefix)
    run = client.run(graph.prompt)
    assert run.status == "error"
    assert run.error["node_id"] == combine.id and run.error["exception_type"] == "ValueError"
    assert message in run.error["exception_message"]
    assert client.get("/system_stats")  # still serving
