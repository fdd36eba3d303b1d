"""Lmk2Video Sampler to Video File in a real ComfyUI (issue 16): the file it writes from landmarks holds the frames
the IMAGE path (Render Pose Image -> Lmk2Video Sampler -> Video Combine) writes, its VIDEO output feeds core
nodes, a cancelled run leaves no file, and the pose inputs are checked."""
from __future__ import annotations

import pytest

from aniportrait.comfy_host import ComfyClient
from aniportrait.video_io import read_audio_track, read_video_frames
from scripts.workflow_api import set_inputs, workflow_to_prompt
from tests.encoded_video import assert_holds_frames, shifted_psnr
from tests.workflow_inputs import file_settings, load_workflow, make_inputs, speech_frames, tiny_settings, upload_inputs

pytestmark = pytest.mark.server

TO_FILE = "APK_Lmk2VideoSamplerToFile"


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, comfy_server, assets_dir):
    files = make_inputs(tmp_path_factory.mktemp("long-inputs"), assets_dir)
    return upload_inputs(ComfyClient(comfy_server.url), files)


def long_prompt(client, golden_dir, uploaded, prefix: str) -> tuple[dict, str]:
    """audio_driven_long as an API prompt on the tiny weights; returns it and the id of its sampler node."""
    workflow = load_workflow("audio_driven_long")
    prompt = workflow_to_prompt(workflow, client.object_info())
    for selector, values in {**tiny_settings(golden_dir, TO_FILE), **file_settings(workflow, uploaded)}.items():
        set_inputs(prompt, selector, **values)
    set_inputs(prompt, TO_FILE, filename_prefix=prefix)
    [sampler_id] = [key for key, node in prompt.items() if node["class_type"] == TO_FILE]
    return prompt, sampler_id


def add(prompt: dict, class_type: str, **inputs) -> str:
    node_id = str(max(map(int, prompt)) + 1)
    prompt[node_id] = {"class_type": class_type, "inputs": inputs}
    return node_id


def written_file(comfy_server, output: dict):
    [entry] = output["images"]
    return comfy_server.output_dir / entry["subfolder"] / entry["filename"]


def test_file_from_landmarks_has_the_frames_of_the_image_path(client, comfy_server, golden_dir, uploaded):
    prompt, sampler = long_prompt(client, golden_dir, uploaded, "long/streamed")
    inputs = prompt[sampler]["inputs"]
    landmarks, audio, fps = inputs["landmarks"], inputs["audio"], inputs["fps"]
    # the IMAGE path beside it, on the same landmarks and settings
    render = add(prompt, "APK_RenderPoseImage", landmarks=landmarks)
    settings = {name: inputs[name] for name in ("models", "reference", "steps", "cfg", "seed", "context_frames",
                                                "context_overlap", "window_blend", "loop")}
    frames = add(prompt, "APK_Lmk2VideoSampler", pose_images=[render, 0], **settings)
    combine = add(prompt, "APK_VideoCombine", images=[frames, 0], audio=audio, fps=fps, format=inputs["format"],
                  filename_prefix="long/whole", save_output=True)
    components = add(prompt, "GetVideoComponents", video=[sampler, 0])
    fps_text = add(prompt, "PreviewAny", source=[components, 2])
    run = client.run(prompt, timeout=900)
    assert run.status == "success", run.describe()

    streamed_path = written_file(comfy_server, run.outputs[sampler])
    assert streamed_path.name.startswith("streamed_") and streamed_path.suffix == ".mp4"
    streamed, rate = read_video_frames(streamed_path)
    whole, _ = read_video_frames(written_file(comfy_server, run.outputs[combine]))
    assert streamed.shape[0] == speech_frames() and rate == 30
    # the same frames through the same encoder; they need not be equal bit for bit (see tests/encoded_video.py),
    # but far closer than frames one place off (5 dB: the streamed encode's error is much smaller than that gap)
    assert_holds_frames(streamed, whole, shifted_psnr(whole) + 5.0)
    track = read_audio_track(streamed_path)
    assert track.waveform.shape[1] == round(speech_frames() / 30 * track.sample_rate)
    assert run.outputs[fps_text]["text"] == ["30.0"]  # the VIDEO output, read back by a core node
    assert not list(streamed_path.parent.glob("*.partial"))


def test_cancelled_run_leaves_no_file(client, comfy_server, golden_dir, uploaded):
    prompt, sampler = long_prompt(client, golden_dir, uploaded, "long/cancelled")

    def cancel_once_sampling(event):
        if event.get("type") == "progress" and event["data"].get("node") == sampler:
            client.interrupt()

    run = client.run(prompt, timeout=900, on_event=cancel_once_sampling)
    assert run.events_of("execution_interrupted"), run.describe()
    assert not list(comfy_server.output_dir.rglob("cancelled*"))  # neither a video nor its .partial
    assert client.get("/system_stats")  # still serving


@pytest.mark.parametrize("connected", ["neither", "both"])
def test_sampler_needs_exactly_one_pose_input(client, golden_dir, uploaded, connected):
    prompt, sampler = long_prompt(client, golden_dir, uploaded, "long/refused")
    inputs = prompt[sampler]["inputs"]
    if connected == "neither":
        del inputs["landmarks"]
    else:
        inputs["pose_images"] = [add(prompt, "EmptyImage", width=128, height=128, batch_size=2, color=0), 0]
    run = client.run(prompt, timeout=600)
    assert run.status == "error" and run.error["node_id"] == sampler, run.describe()
    assert "exactly one of 'pose_images' and 'landmarks'" in run.error["exception_message"]
    assert client.get("/system_stats")
