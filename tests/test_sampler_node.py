"""The Lmk2Video sampler node in a real ComfyUI: previews of the prediction while it samples, and a progress bar
that counts the decoding too."""
from __future__ import annotations

import json

import pytest

from tests.harness.graph import Graph

SIZE, FRAMES, STEPS = 64, 6, 2


@pytest.fixture(scope="module")
def object_info(client) -> dict:
    return client.object_info()


def test_sampler_sends_previews_and_counts_decoding_in_its_progress(client, object_info, golden_dir):
    graph = Graph(object_info)
    tiny_guider = json.loads((golden_dir / "tiny" / "tiny_config.json").read_text())["pose_guider"]
    models = graph.add("APK_LoadLmk2VideoModels", pose_guider_heads=tiny_guider["transformer_num_attention_heads"],
                       pose_guider_head_dim=tiny_guider["transformer_attention_head_dim"])
    portrait = graph.add("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x808080)
    reference = graph.add("APK_ReferenceNetEncode", models, portrait, width=SIZE, height=SIZE)
    poses = graph.add("EmptyImage", width=SIZE, height=SIZE, batch_size=FRAMES, color=0)
    sampler = graph.add("APK_Lmk2VideoSampler", models, reference, poses, steps=STEPS, context_frames=4,
                        context_overlap=1)
    graph.add("PreviewImage", sampler)
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    progress = [(data["value"], data["max"]) for data in run.events_of("progress") if data["node"] == sampler.id]
    windows = 2  # 6 frames in closed-loop windows of 4 overlapping by 1: starts 0 and 3
    total = STEPS * windows + FRAMES
    assert progress and progress[-1] == (total, total), progress
    assert {maximum for _, maximum in progress} == {total}
    assert any(value == STEPS * windows for value, _ in progress)  # the UNet's part ends before the decoding
    assert run.previews >= STEPS  # one preview of the prediction per DDIM step (latent2rgb, as the server runs)
