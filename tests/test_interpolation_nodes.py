"""Select Keyframes -> (sampler) -> FILM Interpolate in a real ComfyUI, with the models folder's FILM stand-in: the
original's length rule by default, the full length on request, and a clear error for frames that do not belong to
the plan. (audio_driven_fast runs the whole chain through the API and the UI in test_workflows / test_ui.)"""
from __future__ import annotations

import math

import pytest

from tests.harness.graph import Graph

pytestmark = pytest.mark.server

POSE_FRAMES = 11
FULL = "full (hold the last frame)"


def _interpolation_graph(object_info: dict, fi_step: int, length: str | None = None, wrong_frames: bool = False):
    graph = Graph(object_info)
    poses = graph.add("EmptyImage", width=48, height=32, batch_size=POSE_FRAMES, color=0x336699)
    select = graph.add("APK_SelectKeyframes", poses, fi_step=fi_step)
    frames = poses if wrong_frames else select.out(0)
    film = graph.add("APK_FILMInterpolate", graph.add("APK_LoadFILMModel"), frames, select.out(1),
                     **({"length": length} if length else {}))
    return graph, graph.add("PreviewImage", film)


@pytest.mark.parametrize("fi_step", [1, 2, 3, 4])
def test_output_length_is_the_originals_or_the_full_pose_length(client, fi_step):
    object_info = client.object_info()
    keyframes = math.ceil(POSE_FRAMES / fi_step)
    for length, expected in ((None, (keyframes - 1) * fi_step + 1), (FULL, POSE_FRAMES)):
        graph, preview = _interpolation_graph(object_info, fi_step, length)
        run = client.run(graph.prompt)
        assert run.status == "success", run.describe()
        assert len(run.outputs[preview.id]["images"]) == expected, (length, fi_step)


def test_frames_that_are_not_the_keyframes_are_refused_naming_both_nodes(client):
    graph, _ = _interpolation_graph(client.object_info(), 3, wrong_frames=True)
    run = client.run(graph.prompt)
    assert run.status == "error" and run.error["node_type"] == "APK_FILMInterpolate", run.describe()
    message = run.error["exception_message"]
    assert f"got {POSE_FRAMES} frames" in message and "picked 4 of 11" in message and "Select Keyframes" in message
    assert client.get("/system_stats")  # still serving
