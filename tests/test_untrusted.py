"""Untrusted input on the real server, with inputs the tests make: file names that try to leave their folder,
damaged or hostile model files, numbers that arrive through links, banners and crowded portraits, warnings that
must reach the browser, and a machine without a connection."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch

from aniportrait.comfy_host import ComfyClient, ComfyServer, free_port
from aniportrait.data import PoseSequence
from aniportrait.motion.motion_file import Motion, save_motion
from tests.harness.graph import Graph

pytestmark = pytest.mark.server

WARNING_EVENT = "aniportrait.warning"
PORTRAIT = "lyl.png"
OTHER_PORTRAIT = "Aragaki.png"


@pytest.fixture(scope="module")
def object_info(client) -> dict:
    return client.object_info()


def _write_tone(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def speech(client, tmp_path_factory) -> str:
    return client.upload(_write_tone(tmp_path_factory.mktemp("speech") / "tone.wav"))


@pytest.fixture(scope="module")
def pose_template(client, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "still_head.npy"
    np.save(path, np.zeros((4, 6)))
    return client.upload(path)


def _portrait(assets_dir: Path, name: str, height: int) -> np.ndarray:
    """An asset portrait (RGB) scaled to ``height`` rows."""
    image = cv2.cvtColor(cv2.imread(str(assets_dir / name)), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)


def _upload_rgb(client: ComfyClient, image: np.ndarray, path: Path) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return client.upload(path)


def _node_error_details(answer: dict, node_id: str) -> list[str]:
    return [error.get("details", "") for error in answer["node_errors"][node_id]["errors"]]


def _error_message(run) -> str:
    assert run.status == "error" and run.error, run.describe()
    return run.error["exception_message"]


def _warnings(run, node_id: str) -> list[str]:
    """The warnings the client received from node ``node_id`` (checked to name the node's type too)."""
    events = [event for event in run.events_of(WARNING_EVENT) if event.get("node") == node_id]
    node_type = run.history["prompt"][2][node_id]["class_type"]  # (number, id, prompt, extra data, outputs)
    assert all(event.get("node_type") == node_type for event in events), events
    return [event["message"] for event in events]


# --- 1. file names never leave their folder -------------------------------------------------------------------

def _escaping_names(comfy_server: ComfyServer, outside: Path, suffix: str) -> dict[str, str]:
    """File names that point outside the input folder, at an existing file and at a missing one."""
    existing = outside / f"secret{suffix}"
    missing = outside / f"absent{suffix}"
    link = comfy_server.input_dir / f"link_to_outside{suffix}"
    if not link.is_symlink():
        link.symlink_to(existing)
    input_dir = comfy_server.input_dir
    return {
        "relative, existing": os.path.relpath(existing, input_dir),
        "relative, missing": os.path.relpath(missing, input_dir),
        "absolute, existing": str(existing),
        "absolute, missing": str(missing),
        "dot-dot": f"../x{suffix}",
        "annotated output folder": f"{os.path.relpath(existing, comfy_server.output_dir)} [output]",
        "link inside the folder to a file outside": link.name,
    }


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A folder outside every ComfyUI folder, holding a speech file and a pose template."""
    folder = tmp_path_factory.mktemp("outside")
    _write_tone(folder / "secret.wav")
    np.save(folder / "secret.npy", np.ones((4, 6)))
    save_motion(folder / "secret.npz", Motion(pose=PoseSequence(np.ones((4, 6)), 30.0)))
    return folder


@pytest.mark.parametrize("node_type, suffix", [("APK_LoadAudio", ".wav"), ("APK_HeadPoseTemplate", ".npy"),
                                               ("APK_LoadMotion", ".npz")])
def test_file_names_outside_the_input_folder_are_refused_alike(client, object_info, comfy_server, outside, speech,
                                                                node_type, suffix):
    refusals = {}
    for case, name in _escaping_names(comfy_server, outside, suffix).items():
        graph = Graph(object_info)
        if node_type == "APK_LoadAudio":
            node = graph.add(node_type, upload=name)
            graph.add("PreviewAudio", node)
        elif node_type == "APK_LoadMotion":
            node = graph.add(node_type, motion=name)
            graph.add("PreviewAny", node.out(1))
        else:
            node = graph.add(node_type, graph.add("APK_LoadAudio", upload=speech), template=name)
            graph.add("PreviewAny", node)
        status, answer = client.queue_prompt(graph.prompt)
        assert status == 400 and node.id in answer.get("node_errors", {}), f"{case}: {name} -> {answer}"
        refusals[case] = [detail.replace(name, "<name>") for detail in _node_error_details(answer, node.id)]
    first = next(iter(refusals.values()))
    assert all(details == first for details in refusals.values()), json.dumps(refusals, indent=1)
    assert "input folder" in first[0] and "upload" in first[0].lower()


def test_files_inside_the_input_folder_still_load_also_through_inner_links(client, object_info, comfy_server,
                                                                           speech):
    inner = comfy_server.input_dir / "inner_link.wav"
    if not inner.is_symlink():
        inner.symlink_to(comfy_server.input_dir / speech)
    for name in (speech, f"{speech} [input]", inner.name):
        graph = Graph(object_info)
        graph.add("PreviewAudio", graph.add("APK_LoadAudio", upload=name))
        run = client.run(graph.prompt)
        assert run.status == "success", f"{name}: {run.describe()}"


def test_model_choices_outside_the_models_folder_are_refused_alike(client, object_info, assets_dir, tmp_path):
    existing = assets_dir / "face_landmarker_v2_with_blendshapes.task"
    choices = [str(existing), str(tmp_path / "absent.task"), "../../" + existing.name, "..\\..\\x.task",
               "sub/../../x.task"]
    refusals = set()
    for choice in choices:
        graph = Graph(object_info)
        face = graph.add("APK_ReferenceFace", graph.add("EmptyImage", width=64, height=64), landmarker=choice)
        graph.add("PreviewImage", face.out("IMAGE"))
        status, answer = client.queue_prompt(graph.prompt)
        assert status == 400 and face.id in answer.get("node_errors", {}), f"{choice}: {answer}"
        refusals.update(detail.replace(choice, "<name>") for detail in _node_error_details(answer, face.id))
    assert len(refusals) == 1 and "models folder" in refusals.pop()


def test_save_prefixes_cannot_leave_the_output_folder_even_through_a_link(client, object_info, comfy_server,
                                                                         outside):
    link = comfy_server.output_dir / "link_to_outside"
    if not link.is_symlink():
        link.symlink_to(outside, target_is_directory=True)
    before = sorted(outside.rglob("*"))
    for prefix in ("link_to_outside/video", "../../escaped/video", str(outside / "video")):
        graph = Graph(object_info)
        graph.add("APK_VideoCombine", graph.add("EmptyImage", width=64, height=64), filename_prefix=prefix)
        message = _error_message(client.run(graph.prompt))
        assert "input 'filename_prefix'" in message and "outside ComfyUI's output folder" in message, message
    assert sorted(outside.rglob("*")) == before, "something was written outside the output folder"


# --- 2. errors that name the input or file and say what to do --------------------------------------------------

@pytest.fixture
def model_file(tiny_models):
    """Writes a file into the server's models folder for one test."""
    written = []

    def write(name: str, content: bytes) -> str:
        (tiny_models / name).write_bytes(content)
        written.append(tiny_models / name)
        return name

    yield write
    for path in written:
        path.unlink(missing_ok=True)


def _lip_sync(object_info: dict, speech: str, checkpoint: str, fps: float = 30.0) -> tuple[Graph, str]:
    graph = Graph(object_info)
    loader = graph.add("APK_LoadAudio2MeshModel", audio2mesh=checkpoint)
    mesh = graph.add("APK_Audio2Mesh", loader, graph.add("APK_LoadAudio", upload=speech), fps=fps)
    graph.add("PreviewAny", mesh)
    return graph, mesh.id


def test_a_truncated_safetensors_file_is_named_with_what_to_do(client, object_info, speech, model_file, tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(4096)}, tmp_path / "whole.safetensors")
    whole = (tmp_path / "whole.safetensors").read_bytes()
    name = model_file("truncated_audio2mesh.safetensors", whole[:len(whole) // 2])
    message = _error_message(client.run(_lip_sync(object_info, speech, name)[0].prompt))
    assert message.startswith("AniPortrait:") and name in message and "download it again" in message, message


class _RunsCodeWhenLoaded:
    def __reduce__(self):
        return print, ("this must never run",)


def test_a_checkpoint_that_carries_code_is_refused_without_advice_to_run_it(client, object_info, speech, model_file,
                                                                            tmp_path):
    torch.save({"weight": torch.ones(2), "trap": _RunsCodeWhenLoaded()}, tmp_path / "hostile.pt")
    name = model_file("hostile_audio2mesh.pt", (tmp_path / "hostile.pt").read_bytes())
    message = _error_message(client.run(_lip_sync(object_info, speech, name)[0].prompt))
    assert message.startswith("AniPortrait:") and name in message, message
    assert "weights_only" not in message and "trust" not in message.lower(), message


def test_a_model_file_removed_while_the_server_runs_is_named(client, object_info, speech, tiny_models, model_file):
    name = model_file("moved_audio2mesh.pt", (tiny_models / "audio2mesh.pt").read_bytes())
    run = client.run(_lip_sync(object_info, speech, name, fps=30.0)[0].prompt)
    assert run.status == "success", run.describe()
    (tiny_models / name).rename(tiny_models / "moved_away.pt")
    try:
        # another fps runs the lip sync again with the loader's earlier (cached) answer
        message = _error_message(client.run(_lip_sync(object_info, speech, name, fps=25.0)[0].prompt))
    finally:
        (tiny_models / "moved_away.pt").unlink()
    assert message.startswith("AniPortrait:") and name in message and "removed or renamed" in message, message


def _number_cases(object_info: dict, speech: str, template: str) -> dict[str, tuple[Graph, str, str]]:
    """Graphs where a PrimitiveFloat/PrimitiveInt sends 0 to a numeric input whose widget starts above 0:
    ``{case: (graph, node id, input name)}``."""
    cases = {}

    def case(name: str, input_name: str, build) -> None:
        graph = Graph(object_info)
        primitive = "PrimitiveInt" if input_name in ("width", "height", "fi_step", "smoothing") else "PrimitiveFloat"
        zero = graph.add(primitive, value=0)
        node = build(graph, {input_name: zero.out(0)})
        cases[name] = (graph, node.id, input_name)

    def audio(graph: Graph):
        return graph.add("APK_LoadAudio", upload=speech)

    def lip_sync(graph: Graph, values: dict):
        node = graph.add("APK_Audio2Mesh", graph.add("APK_LoadAudio2MeshModel"), audio(graph), **values)
        graph.add("PreviewAny", node)
        return node

    def pose_template(graph: Graph, values: dict):
        node = graph.add("APK_HeadPoseTemplate", audio(graph), **values)
        graph.add("PreviewAny", node)
        return node

    def video_combine(graph: Graph, values: dict):
        return graph.add("APK_VideoCombine", graph.add("EmptyImage", width=64, height=64), **values)

    def reference_face(graph: Graph, values: dict):
        node = graph.add("APK_ReferenceFace", graph.add("EmptyImage", width=64, height=64), **values)
        graph.add("PreviewImage", node.out("IMAGE"))
        return node

    def head_motion(graph: Graph, values: dict):
        pose = graph.add("APK_HeadPoseTemplate", audio(graph), template=template)
        node = graph.add("APK_HeadMotion", pose, **values)
        graph.add("PreviewAny", node)
        return node

    def keyframes(graph: Graph, values: dict):
        node = graph.add("APK_SelectKeyframes", graph.add("EmptyImage", width=64, height=64, batch_size=4), **values)
        graph.add("PreviewImage", node.out(0))
        return node

    case("Audio2Mesh fps", "fps", lip_sync)
    case("Head Motion smoothing", "smoothing", head_motion)
    case("Select Keyframes fi_step", "fi_step", keyframes)
    case("Head Pose Template fps", "fps", pose_template)
    case("Video Combine fps", "fps", video_combine)
    case("Reference Face width", "width", reference_face)
    return cases


def test_numbers_arriving_through_links_are_checked_by_the_node(client, object_info, speech, pose_template):
    for case, (graph, node_id, input_name) in _number_cases(object_info, speech, pose_template).items():
        run = client.run(graph.prompt)
        message = _error_message(run)
        assert run.error["node_id"] == node_id, f"{case}: {run.describe()}"
        limits = object_info[graph.prompt[node_id]["class_type"]]["input"]["required"][input_name][1]
        assert f"input '{input_name}'" in message and f"{limits['min']:g} to {limits['max']:g}" in message, message


def _encoded_grey_reference(graph: Graph, golden_dir: Path, width: int, height: int):
    """The tiny video models and a grey 64x64 portrait encoded for width x height: (models, reference) nodes."""
    tiny_guider = json.loads((golden_dir / "tiny" / "tiny_config.json").read_text())["pose_guider"]
    models = graph.add("APK_LoadLmk2VideoModels", pose_guider_heads=tiny_guider["transformer_num_attention_heads"],
                       pose_guider_head_dim=tiny_guider["transformer_attention_head_dim"])
    portrait = graph.add("EmptyImage", width=64, height=64, batch_size=1, color=0x808080)
    return models, graph.add("APK_ReferenceNetEncode", models, portrait, width=width, height=height)


def test_a_one_frame_window_too_small_for_the_pose_guider_says_what_to_change(client, object_info, golden_dir):
    graph = Graph(object_info)
    models, reference = _encoded_grey_reference(graph, golden_dir, 64, 64)
    poses = graph.add("EmptyImage", width=64, height=64, batch_size=1, color=0)
    sampler = graph.add("APK_Lmk2VideoSampler", models, reference, poses, steps=1, context_frames=1,
                        context_overlap=0)
    graph.add("PreviewImage", sampler)
    run = client.run(graph.prompt)
    message = _error_message(run)
    assert run.error["node_id"] == sampler.id
    assert "expected more than 1 value" not in message.lower() and "PoseGuider" in message, message
    assert "context_frames" in message and "72 px" in message, message


# --- 3. faces: banners and crowded portraits --------------------------------------------------------------------

def _banner(assets_dir: Path) -> np.ndarray:
    """A 2000x200 banner: grey, with a 200-row portrait far right of the middle."""
    face = _portrait(assets_dir, PORTRAIT, 200)
    banner = np.full((200, 2000, 3), 128, dtype=np.uint8)
    banner[:, 1300:1300 + face.shape[1]] = face
    return banner


def _reference_face_run(client, object_info, image_name: str, **widgets):
    graph = Graph(object_info)
    face = graph.add("APK_ReferenceFace", graph.add("LoadImage", upload=image_name), **widgets)
    preview = graph.add("PreviewImage", face.out("IMAGE"))
    return client.run(graph.prompt), face.id, preview.id


@pytest.mark.parametrize("tall", [False, True], ids=["wide", "tall"])
@pytest.mark.parametrize("widgets", [{"crop": "auto (face-centred square)", "width": 512, "height": 512},
                                     {"crop": "none", "width": 2000, "height": 200}], ids=["crop auto", "crop none"])
def test_a_face_in_a_banner_is_found(client, object_info, assets_dir, tmp_path, widgets, tall):
    banner = _banner(assets_dir)
    if tall:  # the portrait stays upright in a 200x2000 column
        face = _portrait(assets_dir, PORTRAIT, 200)
        banner = np.full((2000, face.shape[1], 3), 128, dtype=np.uint8)
        banner[1300:1500] = face
        widgets = {**widgets, "width": widgets["height"], "height": widgets["width"]}
    name = _upload_rgb(client, banner, tmp_path / "banner.png")
    run, _, _ = _reference_face_run(client, object_info, name, **widgets)
    assert run.status == "success", run.describe()


def test_a_banner_squeezed_into_a_square_says_what_works(client, object_info, assets_dir, tmp_path):
    name = _upload_rgb(client, _banner(assets_dir), tmp_path / "banner.png")
    run, _, _ = _reference_face_run(client, object_info, name, crop="none", width=512, height=512)
    message = _error_message(run)
    assert "crop 'auto'" in message and "aspect ratio" in message, message


def test_of_two_faces_the_largest_is_used_and_the_user_is_told(client, object_info, comfy_server, assets_dir,
                                                               tmp_path):
    large, small = _portrait(assets_dir, PORTRAIT, 480), _portrait(assets_dir, OTHER_PORTRAIT, 200)
    scene = np.full((560, 1000, 3), 200, dtype=np.uint8)
    scene[40:40 + small.shape[0], 40:40 + small.shape[1]] = small
    scene[40:520, 1000 - 40 - large.shape[1]:960] = large
    name = _upload_rgb(client, scene, tmp_path / "two_faces.png")
    run, face_id, preview_id = _reference_face_run(client, object_info, name, crop="auto (face-centred square)")
    assert run.status == "success", run.describe()
    assert any("2 faces" in text and "largest" in text for text in _warnings(run, face_id)), run.events
    saved = run.outputs[preview_id]["images"][0]
    crop = cv2.imread(str(comfy_server.base_dir / saved["type"] / saved["subfolder"] / saved["filename"]))
    # a crop around the small face is at most 1.5x its 200 rows; around the large face it is far bigger
    assert crop.shape[0] > 1.5 * small.shape[0], crop.shape


# --- 4. warnings reach the client that queued the prompt --------------------------------------------------------

def test_frames_without_a_face_are_reported_to_the_client(client, object_info, assets_dir):
    graph = Graph(object_info)
    portrait = graph.add("LoadImage", upload=client.upload(assets_dir / PORTRAIT))
    frames = graph.add("ImageBatch", image1=portrait.out(0),
                       image2=graph.add("EmptyImage", width=64, height=64, color=0).out(0))
    track = graph.add("APK_VideoFaceLandmarks", frames)
    graph.add("PreviewAny", graph.add("APK_PoseTemplate", track, filename_prefix=""))
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    assert any("no face found in frame(s) 1 of 2" in text for text in _warnings(run, track.id)), run.events


def test_a_size_rounded_to_a_multiple_of_8_is_reported_to_the_client(client, object_info, golden_dir):
    graph = Graph(object_info)
    _, encode = _encoded_grey_reference(graph, golden_dir, 68, 64)
    graph.add("PreviewAny", encode)
    run = client.run(graph.prompt)
    assert run.status == "success", run.describe()
    assert any("68x64 is not a multiple of 8" in text for text in _warnings(run, encode.id)), run.events


# --- 5. the HTTP route shows no server paths --------------------------------------------------------------------

def test_the_model_status_route_shows_no_server_path(client, object_info, comfy_server, tiny_models, golden_dir,
                                                     assets_dir):
    run, _, _ = _reference_face_run(client, object_info, client.upload(assets_dir / PORTRAIT))  # fills the cache
    assert run.status == "success", run.describe()
    status = client.get("/aniportrait/models")
    assert status["cached"], "nothing cached: the check below would see no cache keys"
    text = json.dumps(status)
    for server_path in (comfy_server.base_dir, tiny_models, golden_dir, assets_dir, Path.home()):
        assert str(server_path) not in text and str(Path(server_path).resolve()) not in text, text


# --- 6. offline with downloads allowed: fail fast, say why, print a command that works -------------------------

@pytest.fixture(scope="module")
def unconnected_env() -> dict[str, str]:
    """Downloads allowed, but every download address is a local port where nothing listens."""
    closed = f"http://127.0.0.1:{free_port()}"
    return {"ANIPORTRAIT_OFFLINE": "0", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": closed,
            "ANIPORTRAIT_FACE_LANDMARKER_URL": f"{closed}/face_landmarker.task", "NO_PROXY": "127.0.0.1"}


@pytest.fixture(scope="module")
def unconnected_server(comfy_root, tmp_path_factory, unconnected_env):
    from tests.conftest import PACK_FOLDER_NAME, REPO

    models = tmp_path_factory.mktemp("no-models") / "aniportrait"
    models.mkdir()
    server = ComfyServer.from_install(comfy_root, packs=[(PACK_FOLDER_NAME, REPO)],
                                      model_folders={"aniportrait": models},
                                      base_dir=tmp_path_factory.mktemp("comfy-unconnected"), env=unconnected_env)
    server.start()
    yield server
    server.stop()


def test_without_a_connection_the_missing_model_error_says_why_with_a_working_command(
        unconnected_server, unconnected_env, assets_dir):
    client = ComfyClient(unconnected_server.url)
    graph = Graph(client.object_info())
    face = graph.add("APK_ReferenceFace", graph.add("LoadImage", upload=client.upload(assets_dir / PORTRAIT)))
    graph.add("PreviewImage", face.out("IMAGE"))
    run = client.run(graph.prompt)
    message = _error_message(run)
    assert "no connection to 127.0.0.1" in message and "see the log" not in message, message
    assert any("cannot download" in text for text in _warnings(run, face.id)), run.events
    command = next(line.strip() for line in message.splitlines() if "download_models.py" in line)
    pasted = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **unconnected_env})
    assert pasted.returncode == 1 and "no connection to 127.0.0.1" in pasted.stderr, pasted.stdout + pasted.stderr


def test_the_printed_download_command_survives_spaces_in_paths(tmp_path, unconnected_env):
    from aniportrait.files import download_command

    command = download_command(tmp_path / "models with spaces", ["face_landmarker"])
    pasted = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **unconnected_env})
    assert pasted.returncode == 1 and "no connection to 127.0.0.1" in pasted.stderr, pasted.stdout + pasted.stderr
    assert "models with spaces" in pasted.stderr
