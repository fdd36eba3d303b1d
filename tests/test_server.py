"""The pack inside a real ComfyUI: it imports cleanly, registers the agreed nodes with the agreed sockets, reports
bad prompts and node failures the ComfyUI way, shares loaded models through its cache (which ComfyUI's "unload
models" empties), and stops when the user cancels."""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import PACK_FOLDER_NAME, REPO
from tests.harness.graph import Graph, input_specs, is_link_type

pytestmark = pytest.mark.server

PACK_MODULE = f"custom_nodes.{PACK_FOLDER_NAME}"


@dataclass(frozen=True)
class Contract:
    """The socket types of a node, as agreed in the node table (widgets are the owners' choice)."""

    inputs: tuple[str, ...]       # required link inputs
    outputs: tuple[str, ...]
    optional: tuple[str, ...] = ()  # link inputs that may be left unconnected


NODE_TABLE = {
    "APK_LoadAudio": Contract((), ("AUDIO",)),
    "APK_LoadAudio2MeshModel": Contract((), ("APK_AUDIO2MESH_MODEL",)),
    "APK_LoadAudio2PoseModel": Contract((), ("APK_AUDIO2POSE_MODEL",)),
    "APK_Audio2Mesh": Contract(("APK_AUDIO2MESH_MODEL", "AUDIO"), ("APK_MESH_SEQUENCE",)),
    "APK_Audio2Pose": Contract(("APK_AUDIO2POSE_MODEL", "AUDIO"), ("APK_POSE_SEQUENCE",)),
    "APK_HeadPoseTemplate": Contract(("AUDIO",), ("APK_POSE_SEQUENCE",), optional=("APK_POSE_SEQUENCE",)),
    "APK_ReferenceFace": Contract(("IMAGE",), ("APK_REFERENCE_FACE", "IMAGE")),
    "APK_VideoFaceLandmarks": Contract(("IMAGE",), ("APK_FACE_TRACK",)),
    "APK_ProjectLandmarks": Contract(("APK_REFERENCE_FACE", "APK_MESH_SEQUENCE", "APK_POSE_SEQUENCE"),
                                     ("APK_LANDMARKS",)),
    "APK_RenderPoseImage": Contract(("APK_LANDMARKS",), ("IMAGE", "IMAGE"), optional=("APK_REFERENCE_FACE",)),
    "APK_RetargetFace": Contract(("APK_FACE_TRACK", "APK_REFERENCE_FACE"), ("APK_LANDMARKS",)),
    "APK_PoseTemplate": Contract(("APK_FACE_TRACK",), ("APK_POSE_SEQUENCE",)),
    "APK_LoadLmk2VideoModels": Contract((), ("APK_VIDEO_MODELS",)),
    "APK_ReferenceNetEncode": Contract(("APK_VIDEO_MODELS", "IMAGE"), ("APK_REFERENCE",)),
    "APK_Lmk2VideoSampler": Contract(("APK_VIDEO_MODELS", "APK_REFERENCE"), ("IMAGE",),
                                     optional=("IMAGE", "APK_LANDMARKS")),
    "APK_Lmk2VideoSamplerToFile": Contract(("APK_VIDEO_MODELS", "APK_REFERENCE"), ("VIDEO",),
                                           optional=("IMAGE", "APK_LANDMARKS", "AUDIO")),
    "APK_VideoCombine": Contract(("IMAGE",), ("VIDEO",), optional=("AUDIO",)),
    "APK_SelectKeyframes": Contract(("IMAGE",), ("IMAGE", "APK_KEYFRAME_PLAN")),
    "APK_LoadFILMModel": Contract((), ("APK_FILM_MODEL",)),
    "APK_FILMInterpolate": Contract(("APK_FILM_MODEL", "IMAGE", "APK_KEYFRAME_PLAN"), ("IMAGE",)),
    # motion (issue 12)
    "APK_MotionPreview": Contract(("APK_LANDMARKS",), ("VIDEO", "APK_LANDMARKS"),
                                  optional=("AUDIO", "APK_REFERENCE_FACE")),
    "APK_MouthAmplitude": Contract(("APK_REFERENCE_FACE", "APK_MESH_SEQUENCE"), ("APK_MESH_SEQUENCE",)),
    "APK_EyeBlinks": Contract(("APK_REFERENCE_FACE", "APK_MESH_SEQUENCE"), ("APK_MESH_SEQUENCE",)),
    "APK_BrowRaise": Contract(("APK_REFERENCE_FACE", "APK_MESH_SEQUENCE"), ("APK_MESH_SEQUENCE",)),
    "APK_HeadMotion": Contract(("APK_POSE_SEQUENCE",), ("APK_POSE_SEQUENCE",)),
    "APK_DrivingMotion": Contract(("APK_FACE_TRACK",), ("APK_MESH_SEQUENCE", "APK_POSE_SEQUENCE")),
    "APK_MixMotion": Contract(("APK_REFERENCE_FACE", "APK_MESH_SEQUENCE", "APK_MESH_SEQUENCE"),
                              ("APK_MESH_SEQUENCE",)),
    "APK_SaveMotion": Contract((), (), optional=("APK_MESH_SEQUENCE", "APK_POSE_SEQUENCE", "APK_LANDMARKS")),
    "APK_LoadMotion": Contract((), ("APK_MESH_SEQUENCE", "APK_POSE_SEQUENCE", "APK_LANDMARKS")),
    "APK_PasteBack": Contract(("IMAGE", "IMAGE", "APK_REFERENCE_FACE"), ("IMAGE",)),
}


@pytest.fixture(scope="module")
def object_info(client) -> dict:
    return client.object_info()


@pytest.fixture(scope="module")
def pack_nodes(object_info) -> dict[str, dict]:
    """What ComfyUI registered from this pack."""
    return {node_id: info for node_id, info in object_info.items() if info.get("python_module") == PACK_MODULE}


@pytest.fixture
def speech(client, assets_dir, tmp_path) -> str:
    """Two seconds of the real speech sample, uploaded to the input folder."""
    samples, rate = soundfile.read(assets_dir / "lyl.wav", dtype="float32", frames=2 * 44100)
    path = tmp_path / "speech_2s.wav"
    soundfile.write(path, samples, rate)
    return client.upload(path)


def _link_types(info: dict, required: bool) -> list[str]:
    return sorted(t for t, _, req in input_specs(info).values() if is_link_type(t) and req == required)


# --- import and registration -----------------------------------------------------------------------------------

def test_pack_imports_without_errors(comfy_server):
    log = comfy_server.startup_log
    assert re.search(rf"\d+\.\d+ seconds: .*{re.escape(PACK_FOLDER_NAME)}", log), \
        f"ComfyUI did not list the pack among its imported custom nodes:\n{log}"
    assert "IMPORT FAILED" not in log, log
    for traceback in re.findall(r"Traceback \(most recent call last\):.*?(?=\n\S)", log, flags=re.S):
        assert PACK_FOLDER_NAME not in traceback and str(REPO) not in traceback, traceback
    assert "Error while calling comfy_entrypoint" not in log, log


def test_every_agreed_node_is_registered_and_nothing_else(pack_nodes):
    registered, agreed = set(pack_nodes), set(NODE_TABLE)
    assert registered == agreed, (f"not there (yet): {sorted(agreed - registered)}; "
                                  f"not in the agreed node table: {sorted(registered - agreed)}")


@pytest.mark.parametrize("node_id", sorted(NODE_TABLE))
def test_node_sockets_match_the_node_table(object_info, node_id):
    assert node_id in object_info, f"{node_id} is not registered (not written yet, or its import failed)"
    info, contract = object_info[node_id], NODE_TABLE[node_id]
    assert tuple(info["output"]) == contract.outputs
    assert _link_types(info, required=True) == sorted(contract.inputs)
    optional = _link_types(info, required=False)
    assert all(t in optional for t in contract.optional), f"optional link inputs: {optional}"


def test_node_ids_do_not_collide_with_core_or_other_packs(object_info, pack_nodes):
    """ComfyUI registers a custom node whose ID a core node already has under the core's module (it ignores the
    pack's), so an agreed ID that is not ours in /object_info is a collision."""
    taken = {node_id: object_info[node_id]["python_module"] for node_id in NODE_TABLE
             if node_id in object_info and node_id not in pack_nodes}
    assert taken == {}, f"node IDs taken by other modules: {taken}"
    assert all(node_id.startswith("APK_") for node_id in pack_nodes)
    assert not [n for n in object_info if n.startswith("APK_") and n not in pack_nodes], "APK_ prefix used elsewhere"
    assert not [n for n in pack_nodes if n.lower().startswith("aniportrait")]


def test_nodes_follow_the_ui_conventions(pack_nodes):
    problems = []
    for node_id, info in sorted(pack_nodes.items()):
        if not info["display_name"].endswith("(AniPortrait)"):
            problems.append(f"{node_id}: display name {info['display_name']!r}")
        if not info["category"].startswith("AniPortrait/"):
            problems.append(f"{node_id}: category {info['category']!r}")
        if not info.get("description"):
            problems.append(f"{node_id}: no description")
        problems += [f"{node_id}: input '{name}' has no tooltip"
                     for name, (_, options, _) in input_specs(info).items() if not options.get("tooltip")]
        problems += [f"{node_id}: output {i} ({info['output'][i]}) has no tooltip"
                     for i, tip in enumerate(info["output_tooltips"]) if not tip]
    assert problems == []


def test_models_folder_lists_the_tiny_models(client, tiny_models):
    listed = set(client.get("/models/aniportrait"))
    on_disk = {(Path(folder) / name).relative_to(tiny_models).as_posix()
               for folder, _, names in os.walk(tiny_models, followlinks=True) for name in names}
    assert listed == on_disk


def test_model_status_route_reports_a_complete_folder(client, comfy_server):
    status = client.get("/aniportrait/models")
    assert status["missing"] == {}
    assert status["models_dir"] == "models/aniportrait"  # a label: the route shows no server path


# --- errors ----------------------------------------------------------------------------------------------------

def _reference_face_graph(object_info: dict) -> tuple[Graph, str]:
    """A black 256x256 image -> APK_ReferenceFace -> preview of its image output."""
    graph = Graph(object_info)
    image = graph.add("EmptyImage", width=256, height=256, batch_size=1, color=0)
    face = graph.add("APK_ReferenceFace", image)
    graph.add("PreviewImage", face.out("IMAGE"))
    return graph, face.id


def test_out_of_range_numbers_are_refused_naming_our_node(client, object_info):
    graph, face_id = _reference_face_graph(object_info)
    specs = input_specs(object_info["APK_ReferenceFace"])
    low = next(n for n, (t, o, _) in specs.items() if t == "INT" and "min" in o)
    high = next(n for n, (t, o, _) in specs.items() if t == "INT" and "max" in o and n != low)
    graph.prompt[face_id]["inputs"] |= {low: specs[low][1]["min"] - 1, high: specs[high][1]["max"] + 1}
    status, answer = client.queue_prompt(graph.prompt)
    assert status == 400, answer
    errors = answer["node_errors"][face_id]
    assert errors["class_type"] == "APK_ReferenceFace"
    found = {(e["type"], e["extra_info"]["input_name"]) for e in errors["errors"]}
    assert found == {("value_smaller_than_min", low), ("value_bigger_than_max", high)}, errors


def test_missing_input_is_refused_naming_our_node(client, object_info):
    graph, face_id = _reference_face_graph(object_info)
    image_input = next(n for n, (t, _, _) in input_specs(object_info["APK_ReferenceFace"]).items() if t == "IMAGE")
    del graph.prompt[face_id]["inputs"][image_input]
    status, answer = client.queue_prompt(graph.prompt)
    assert status == 400, answer
    errors = answer["node_errors"][face_id]
    assert errors["class_type"] == "APK_ReferenceFace"
    assert [(e["type"], e["details"]) for e in errors["errors"]] == [("required_input_missing", image_input)]


def _assert_node_error(run, node_type: str, *message_parts: str) -> None:
    assert run.status == "error" and run.error, run.describe()
    assert run.error["node_type"] == node_type, run.describe()
    message = run.error["exception_message"]
    assert all(part.lower() in message.lower() for part in message_parts), message


def test_corrupt_audio_file_fails_in_the_node_and_the_server_carries_on(client, object_info, speech):
    name = client.upload(b"RIFF\x00\x00\x00\x00WAVEthis is not audio", "corrupt.wav")
    graph = Graph(object_info)
    graph.add("PreviewAudio", graph.add("APK_LoadAudio", upload=name))
    _assert_node_error(client.run(graph.prompt), "APK_LoadAudio", "corrupt.wav")

    graph = Graph(object_info)
    graph.add("PreviewAudio", graph.add("APK_LoadAudio", upload=speech))
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()


def test_input_files_replaced_under_the_same_name_are_read_again(client, object_info, assets_dir, tmp_path):
    """ComfyUI reuses a node's last result while its inputs look the same; a file overwritten under its old name
    must still be loaded again (Load Audio and Head Pose Template fingerprint their files), and an unchanged one
    must not."""
    speech, template = tmp_path / "replaced_speech.wav", tmp_path / "replaced_template.npy"

    def replace_speech(seconds: float) -> None:
        samples, rate = soundfile.read(assets_dir / "lyl.wav", dtype="float32", frames=round(seconds * 44100))
        soundfile.write(speech, samples, rate)
        client.upload(speech)

    def replace_template(value: float) -> None:
        np.save(template, np.full((3, 6), value))
        client.upload(template)

    graph = Graph(object_info)
    audio = graph.add("APK_LoadAudio", upload=speech.name)
    pose = graph.add("APK_HeadPoseTemplate", audio, template=template.name, fps=30.0)
    preview = graph.add("PreviewAny", pose)
    replace_speech(1.0)
    steps = [(lambda: replace_template(1.0), {audio.id, pose.id}, 30, 1),
             (lambda: replace_template(2.0), {pose.id}, 30, 2),
             (lambda: replace_speech(0.5), {audio.id, pose.id}, 15, 2)]
    for replace, executed, frames, value in steps:
        replace()
        run = client.run(graph.prompt)
        assert run.status == "success", run.describe()
        assert run.executed_nodes & {audio.id, pose.id} == executed, run.executed_nodes
        text = run.outputs[preview.id]["text"][0]
        assert text.count("[" + ", ".join([f"{value}."] * 6) + "]") == frames, text


def test_model_file_not_in_the_folder_fails_in_the_node_naming_it(client, object_info):
    """ComfyUI 0.3.75 does not check V3 dropdown values (a workflow from elsewhere may name a file this machine
    lacks): the node itself must say which file is missing."""
    graph, face_id = _reference_face_graph(object_info)
    specs = input_specs(object_info["APK_ReferenceFace"])
    dropdown = next(n for n, (t, o, _) in specs.items()
                    if t == "COMBO" and any(str(choice).endswith(".task") for choice in o.get("options", [])))
    graph.prompt[face_id]["inputs"][dropdown] = "not_downloaded.task"
    _assert_node_error(client.run(graph.prompt), "APK_ReferenceFace", "not_downloaded.task")


def test_no_face_fails_in_the_node_and_the_server_carries_on(client, object_info, assets_dir):
    graph, _ = _reference_face_graph(object_info)
    _assert_node_error(client.run(graph.prompt), "APK_ReferenceFace", "no face")

    graph = Graph(object_info)
    portrait = graph.add("LoadImage", upload=client.upload(assets_dir / "lyl.png"))
    graph.add("PreviewImage", graph.add("APK_ReferenceFace", portrait).out("IMAGE"))
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()


# --- model cache and ComfyUI's memory management ---------------------------------------------------------------

def _lip_sync_graph(object_info: dict, speech: str, fps: float) -> tuple[Graph, str]:
    graph = Graph(object_info)
    loader = graph.add("APK_LoadAudio2MeshModel")
    mesh = graph.add("APK_Audio2Mesh", loader, graph.add("APK_LoadAudio", upload=speech), fps=fps)
    graph.add("PreviewAny", mesh)
    return graph, loader.id


def _audio2mesh_entries(client) -> list[str]:
    return [key for key in client.get("/aniportrait/models")["cached"] if "audio2mesh" in key]


def _models_loaded_by_comfy(log: str) -> list[str]:
    return re.findall(r"Requested to load (\S+)", log)


def _unload_models(client) -> None:
    """ComfyUI's "unload models" (what the UI's button sends); waits until the pack's cache is empty."""
    assert client.free(unload_models=True, free_memory=True) == 200
    deadline = time.monotonic() + 60
    while client.get("/aniportrait/models")["cached"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert client.get("/aniportrait/models")["cached"] == [], "unload models did not empty the pack's cache"


def test_models_are_loaded_once_managed_by_comfyui_and_freed_by_unload(client, comfy_server, object_info, speech):
    _unload_models(client)  # whatever earlier tests loaded
    mark = comfy_server.log_size()
    first, _ = _lip_sync_graph(object_info, speech, fps=25.0)
    run = client.run(first.prompt)
    assert run.status == "success", run.describe()
    assert len(_audio2mesh_entries(client)) == 1, client.get("/aniportrait/models")
    managed = _models_loaded_by_comfy(comfy_server.log(since=mark))
    assert managed, "the model was not handed to ComfyUI's model management (load_models_gpu)"
    # the console names the model (its class) and its size, not our wrapper
    assert "Audio2MeshModel" in managed and not [name for name in managed if "Holder" in name], managed
    assert re.search(r"AniPortrait: loaded Audio2MeshModel \(\d+\.\d MB in float32\)", comfy_server.log(since=mark))
    cached_after_first = client.get("/aniportrait/models")["cached"]

    # a prompt without the loader makes ComfyUI drop the loader's output, so the next run executes it again
    other = Graph(object_info)
    other.add("PreviewAudio", other.add("APK_LoadAudio", upload=speech))
    assert client.run(other.prompt).status == "success"

    mark = comfy_server.log_size()
    second, loader_id = _lip_sync_graph(object_info, speech, fps=30.0)
    run = client.run(second.prompt)
    assert run.status == "success", run.describe()
    assert loader_id in run.executed_nodes, "the loader did not run again, so the cache was not exercised"
    assert client.get("/aniportrait/models")["cached"] == cached_after_first, "a model was loaded a second time"
    reloaded = set(_models_loaded_by_comfy(comfy_server.log(since=mark))) & set(managed)
    assert not reloaded, f"ComfyUI loaded {reloaded} again although it was still loaded"

    _unload_models(client)
    assert re.search(r"AniPortrait: freed \d+ cached model", comfy_server.log(since=mark))

    run = client.run(_lip_sync_graph(object_info, speech, fps=25.0)[0].prompt)
    assert run.status == "success", run.describe()
    assert len(_audio2mesh_entries(client)) == 1


# --- cancel ----------------------------------------------------------------------------------------------------

def _smallest(info: dict, name: str, at_least: int) -> int:
    options = input_specs(info)[name][1]
    return max(options.get("min", at_least), at_least)


def test_interrupt_stops_a_running_sampler_and_the_server_carries_on(client, object_info, golden_dir):
    sampler_info = object_info.get("APK_Lmk2VideoSampler")
    assert sampler_info, "APK_Lmk2VideoSampler is not registered"
    encode_info = object_info["APK_ReferenceNetEncode"]
    size = max(_smallest(encode_info, "width", 64), _smallest(encode_info, "height", 64))
    steps = input_specs(sampler_info)["steps"][1].get("max", 1000)
    graph = Graph(object_info)
    tiny_guider = json.loads((golden_dir / "tiny" / "tiny_config.json").read_text())["pose_guider"]
    models = graph.add("APK_LoadLmk2VideoModels", pose_guider_heads=tiny_guider["transformer_num_attention_heads"],
                       pose_guider_head_dim=tiny_guider["transformer_attention_head_dim"])
    reference = graph.add("APK_ReferenceNetEncode", models, graph.add("EmptyImage", width=size, height=size,
                                                                      batch_size=1, color=0x808080),
                          width=size, height=size)
    poses = graph.add("EmptyImage", width=size, height=size, batch_size=4, color=0)
    sampler = graph.add("APK_Lmk2VideoSampler", models, reference, poses, steps=min(steps, 1000))
    graph.add("PreviewImage", sampler)

    interrupted = []

    def interrupt_once_sampling(event: dict) -> None:
        data = event.get("data") or {}
        if event.get("type") == "progress" and data.get("node") == sampler.id and not interrupted:
            interrupted.append(client.interrupt())

    run = client.run(graph.prompt, on_event=interrupt_once_sampling)
    assert not run.error, run.describe()
    assert interrupted == [200], f"the sampler reported no progress, so it was never interrupted: {run.describe()}"
    stops = run.events_of("execution_interrupted")
    assert stops and stops[0]["node_type"] == "APK_Lmk2VideoSampler", run.describe()
    assert run.status == "error"

    after = Graph(object_info)
    after.add("PreviewImage", after.add("EmptyImage", width=8, height=8, batch_size=1, color=0))
    assert client.run(after.prompt).status == "success"
