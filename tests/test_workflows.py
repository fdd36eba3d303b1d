"""The ready-made workflows (workflows/*.json) against a real ComfyUI: listed as templates, in sync with their
generator, and each one runs through the HTTP API (UI -> API conversion by scripts/workflow_api.py) on the tiny
weights, writing a video with the expected frames, fps, size and soundtrack."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
from PIL import Image

from aniportrait.comfy_host import ComfyClient
from aniportrait.video_io import read_audio_track, read_video_frames
from scripts.workflow_api import set_inputs, workflow_to_prompt
from tests.workflow_inputs import (FULL_RESOLUTION, SAMPLERS, SIZE, VIDEO_FRAMES, VIDEO_WRITERS, WORKFLOW_DIR,
                                   WORKFLOWS, file_settings, load_workflow, make_inputs, node_of_type, speech_frames,
                                   tiny_settings, upload_inputs)
from workflows.build_workflows import WORKFLOWS as DESCRIPTIONS, build

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, comfy_server, assets_dir):
    files = make_inputs(tmp_path_factory.mktemp("workflow-inputs"), assets_dir)
    return upload_inputs(ComfyClient(comfy_server.url), files)


def test_the_workflows_folder_is_listed_as_templates(client, comfy_server):
    assert sorted(p.stem for p in WORKFLOW_DIR.glob("*.json")) == sorted(WORKFLOWS)
    [pack] = [p.name for p in (comfy_server.base_dir / "custom_nodes").iterdir()]
    listed = client.get("/workflow_templates")
    assert sorted(listed[pack]) == sorted(WORKFLOWS)
    served = client.get(f"/api/workflow_templates/{pack}/audio_driven.json")
    assert served == load_workflow("audio_driven")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_committed_workflow_is_what_the_generator_builds(client, name):
    rebuilt = build(DESCRIPTIONS[name](), client.object_info())
    assert json.loads(json.dumps(rebuilt)) == load_workflow(name), \
        "workflows/*.json are stale: run python workflows/build_workflows.py"


# (frames, fps) each workflow produces from the inputs of tests/workflow_inputs.py
def expected_length(name: str) -> tuple[int | None, Fraction]:
    if name.startswith("audio_driven"):
        return speech_frames(), Fraction(30)
    if name == "pose_video_driven":
        return VIDEO_FRAMES, Fraction(25)  # the pose video's frames at its own rate
    return None, Fraction(30)  # face_reenactment: the 25 fps driving motion resampled to 30 fps


def expected_size(name: str, assets_dir) -> tuple[int, int]:
    """(height, width) of the video: the generation size, or the portrait's (padded to even sides)."""
    if name not in FULL_RESOLUTION:
        return SIZE, SIZE
    width, height = Image.open(assets_dir / "lyl.png").size
    return height + height % 2, width + width % 2


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_through_the_api(client, comfy_server, golden_dir, assets_dir, uploaded, name):
    object_info = client.object_info()
    workflow = load_workflow(name)
    prompt = workflow_to_prompt(workflow, object_info)
    assert {node["class_type"] for node in prompt.values()} <= set(object_info)
    sampler = node_of_type(workflow, SAMPLERS)["type"]
    for selector, values in {**tiny_settings(golden_dir, sampler), **file_settings(workflow, uploaded)}.items():
        set_inputs(prompt, selector, **values)
    run = client.run(prompt, timeout=600)
    assert run.status == "success", run.describe()

    [combine_id] = [key for key, node in prompt.items() if node["class_type"] in VIDEO_WRITERS]
    [entry] = run.outputs[combine_id]["images"]
    path = comfy_server.output_dir / entry["subfolder"] / entry["filename"]
    frames, fps = read_video_frames(path)
    expected_frames, expected_fps = expected_length(name)
    assert fps == expected_fps
    if expected_frames is None:
        assert abs(len(frames) - VIDEO_FRAMES * 30 / 25) <= 1
    else:
        assert len(frames) == expected_frames
    assert frames.shape[1:] == (*expected_size(name, assets_dir), 3)
    audio = read_audio_track(path)
    assert audio is not None, "the video has no soundtrack"
    assert audio.waveform.shape[1] == round(len(frames) / fps * audio.sample_rate)

    previews = [key for key, node in prompt.items() if node["class_type"] == "APK_MotionPreview"]
    if name.startswith("audio_driven"):
        assert len(previews) == 1, "every audio-driven workflow shows the motion preview"
    for preview_id in previews:   # shown before the sampler starts, as long as the video
        [sampler_id] = [key for key, node in prompt.items() if node["class_type"] in SAMPLERS]
        # nodes served from ComfyUI's cache (the same motion in an earlier workflow) are shown at once
        order = [node for event in run.events_of("execution_cached") for node in event.get("nodes", [])]
        order += [event["node"] for event in run.events_of("executing") if event.get("node")]
        assert order.index(preview_id) < order.index(sampler_id)
        [entry] = run.outputs[preview_id]["images"]
        preview = comfy_server.base_dir / entry["type"] / entry["subfolder"] / entry["filename"]
        preview_frames, preview_fps = read_video_frames(preview)
        assert (len(preview_frames), preview_fps) == (len(frames), fps)
        assert read_audio_track(preview) is not None
