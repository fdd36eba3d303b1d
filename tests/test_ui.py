"""The pack in the real ComfyUI web UI (frontend 1.32.9, headless Chromium): our web extension, node registration,
the ready-made workflows (load, convert, run from the Run queue) and the errors a user sees.

Two servers: the session one with the tiny weights, and a "fresh install" one with an empty models folder and
an empty input folder. Screenshots go to tests/artifacts/ui_*.png.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyServer
from aniportrait.registry import AUDIO2MESH_MODELS, AUDIO2POSE_MODELS, FACE_MODELS, VIDEO_MODELS
from aniportrait.video_io import read_audio_track, read_video_frames
from scripts.workflow_api import widget_slots, workflow_to_prompt
from tests.ui.browser import UiBrowser, missing_requirements
from tests.workflow_inputs import (NO_FACE, SIZE, WORKFLOWS, file_settings, load_workflow, make_inputs,
                                   speech_frames, tiny_settings, upload_inputs)

pytestmark = [pytest.mark.server, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# console noise of the stock frontend with no user files and no internet (see notes/comfyui-harness.md §6)
STOCK_NOISE = ("Failed to load resource", "Cannot read properties of undefined (reading 'id')",
               "Content Security Policy", "api.comfy.org")
FINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")

# test helpers installed in the page once
PAGE_HELPERS = """
window.__t = {
  missing: null,
  async load(workflow) {
    window.__t.missing = null;
    await app.loadGraphData(workflow);
    await new Promise((resolve) => setTimeout(resolve, 300));
    return window.__t.missing;
  },
  node(selector) {
    const found = app.graph.nodes.filter((n) => n.comfyClass === selector || n.title === selector);
    if (found.length !== 1) throw new Error(`${found.length} nodes match '${selector}'`);
    return found[0];
  },
  setWidgets(settings) {
    for (const [selector, values] of Object.entries(settings)) {
      const node = window.__t.node(selector);
      for (const [name, value] of Object.entries(values)) {
        const widget = node.widgets.find((w) => w.name === name);
        if (!widget) throw new Error(`'${selector}' has no widget '${name}'`);
        widget.value = value;
        widget.callback?.(value, app.canvas, node);  // as if picked in the UI (e.g. the image preview follows)
      }
    }
  },
  dialogs: () => Array.from(document.querySelectorAll('.p-dialog')).map((d) => d.innerText),
  badges: (node) => node.badges.map((b) => (typeof b === 'function' ? b() : b).text).filter(Boolean),
  async fit() {
    await app.extensionManager.command.execute('Comfy.Canvas.FitView');
    await new Promise((resolve) => setTimeout(resolve, 500));
  },
  async closeDialogs() {
    for (const button of document.querySelectorAll('.p-dialog button[aria-label="Close"]')) button.click();
    await new Promise((resolve) => setTimeout(resolve, 300));
  },
};
app.registerExtension({ name: 'tests.captureMissing', async afterConfigureGraph(missing) {
  window.__t.missing = (missing || []).map((m) => (typeof m === 'string' ? m : m.type));
} });
window.__runEvents = [];
for (const type of ['executed', 'execution_success', 'execution_error', 'execution_interrupted'])
  app.api.addEventListener(type, (event) => window.__runEvents.push([type, event.detail]));
// draw node text at every zoom level, so full-graph screenshots stay readable
await app.extensionManager.setting.set('LiteGraph.Canvas.MinFontSizeForLOD', 1);
"""


def open_browser(server: ComfyServer) -> UiBrowser:
    missing = missing_requirements()
    if missing:  # .ci/run installs them; locally, install them or deselect with -m "not browser"
        pytest.fail("the browser tests need " + "; ".join(missing))
    browser = UiBrowser(server.url).start()
    browser.eval(PAGE_HELPERS)
    return browser


@pytest.fixture(scope="module")
def ui(comfy_server):
    browser = open_browser(comfy_server)
    yield browser
    browser.stop()


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, comfy_server, assets_dir) -> dict[str, str]:
    files = make_inputs(tmp_path_factory.mktemp("ui-inputs"), assets_dir)
    return upload_inputs(ComfyClient(comfy_server.url), files)


@pytest.fixture(scope="module")
def fresh_server(comfy_root, tmp_path_factory, comfy_server):
    """A first-time install: no model files, nothing in the input folder."""
    [pack] = list((comfy_server.base_dir / "custom_nodes").iterdir())
    models = tmp_path_factory.mktemp("empty-models")
    with ComfyServer.from_install(comfy_root, packs=[(pack.name, pack.resolve())],
                                  model_folders={"aniportrait": models}, base_dir=tmp_path_factory.mktemp("fresh-base"), env=OFFLINE_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def fresh_ui(fresh_server):
    browser = open_browser(fresh_server)
    yield browser
    browser.stop()


def shot(ui: UiBrowser, name: str) -> Path:
    return ui.screenshot(ARTIFACTS / f"ui_{name}.png")


def queue_in_ui(ui: UiBrowser, timeout: float = 300.0) -> list:
    """Queue the open workflow as the Run button does and wait for its final event; returns [type, detail] pairs."""
    ui.eval("window.__runEvents.length = 0; await app.queuePrompt(0, 1);")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = ui.eval("return window.__runEvents")
        if any(kind in FINAL_EVENTS for kind, _ in events):
            time.sleep(0.5)  # let the editor draw the outcome (preview, error dialog)
            return events
        time.sleep(0.5)
    raise TimeoutError(f"the queued workflow did not finish within {timeout:.0f} s")


def wait_for_dialog(ui: UiBrowser, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dialogs = ui.eval("return window.__t.dialogs()")
        if dialogs:
            return dialogs
        time.sleep(0.25)
    return []


def node_id(workflow: dict, selector: str) -> str:
    [found] = [n["id"] for n in workflow["nodes"] if selector in (n["type"], n.get("title"))]
    return str(found)


# ------------------------------------------------------------------------------------------------------------------
# the session server (tiny weights)


def test_web_extension_loads_once_and_every_pack_node_is_registered(ui, client):
    pack_nodes = sorted(name for name in client.object_info() if name.startswith("APK_"))
    assert "APK_VideoCombine" in pack_nodes
    state = ui.eval("return {loaded: window.__aniportrait?.loaded === true,"
                    " registered: Object.keys(LiteGraph.registered_node_types),"
                    " extensions: app.extensions.map((e) => e.name)}")
    assert state["loaded"]
    assert set(pack_nodes) <= set(state["registered"])
    assert state["extensions"].count("AniPortrait.ModelStatus") == 1
    console = ui.startup_logs["console"]
    assert sum("[AniPortrait] web extension loaded" in line for line in console) == 1
    problems = [line for line in console if line.startswith(("[error]", "[pageerror]"))
                and not any(noise in line for noise in STOCK_NOISE)]
    assert not problems
    assert ui.eval("return window.__aniportrait.status.missing") == {}  # the tiny models folder is complete
    shot(ui, "startup")


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_loads_and_the_editor_converts_it_like_the_python_converter(ui, client, uploaded, name):
    workflow = load_workflow(name)
    object_info = client.object_info()
    assert ui.eval("return await window.__t.load(arg)", workflow) == []  # no missing node types
    assert ui.eval("return window.__t.dialogs()") == []
    editor = ui.eval("""
        const nodes = {};
        for (const node of app.graph.nodes) {
          const saved = node.serialize();
          nodes[saved.id] = {inputs: (saved.inputs || []).map((i) => i.name), values: saved.widgets_values};
        }
        return {nodes, prompt: (await app.graphToPrompt()).output};""")

    for saved in workflow["nodes"]:  # the editor rebuilt every node with our sockets and widget values
        rebuilt = editor["nodes"][str(saved["id"])]
        assert rebuilt["inputs"] == [i["name"] for i in saved["inputs"]], saved["type"]
        if saved["type"] in object_info:
            sent = [i for i, slot in enumerate(widget_slots(object_info[saved["type"]])) if slot.sent]
            assert [rebuilt["values"][i] for i in sent] == [saved["widgets_values"][i] for i in sent], saved["type"]

    def server_view(prompt: dict) -> dict:  # what the server reads: defined inputs only (the editor adds "audioUI")
        return {key: (node["class_type"], {name: value for name, value in node["inputs"].items()
                                           if name in {**object_info[node["class_type"]]["input"].get("required", {}),
                                                       **object_info[node["class_type"]]["input"].get("optional", {})}})
                for key, node in prompt.items()}

    assert server_view(editor["prompt"]) == server_view(workflow_to_prompt(workflow, object_info))
    ui.eval("await window.__t.fit()")
    shot(ui, f"workflow_{name}")


@pytest.mark.parametrize("name", ["audio_driven", "audio_driven_fast"])
def test_audio_driven_runs_from_the_ui_queue(ui, comfy_server, uploaded, golden_dir, name):
    """audio_driven_fast: FILM (the models folder's tiny stand-in) fills in the frames and pads to the speech."""
    workflow = load_workflow(name)
    settings = {**tiny_settings(golden_dir), **file_settings(workflow, uploaded)}
    ui.eval("await window.__t.load(arg.workflow); window.__t.setWidgets(arg.settings);",
            {"workflow": workflow, "settings": settings})
    mark = comfy_server.log_size()
    events = queue_in_ui(ui, timeout=600)
    assert events[-1][0] == "execution_success", events[-1]
    combine = node_id(workflow, "APK_VideoCombine")
    [output] = [detail["output"] for kind, detail in events if kind == "executed" and detail["node"] == combine]
    [entry] = output["images"]
    path = comfy_server.output_dir / entry["subfolder"] / entry["filename"]
    frames, fps = read_video_frames(path)
    assert frames.shape == (speech_frames(), SIZE, SIZE, 3) and fps == 30
    audio = read_audio_track(path)
    assert audio.waveform.shape[1] == round(speech_frames() / 30 * audio.sample_rate)
    sources = ui.eval("""
        await window.__t.fit();
        const sources = () => Array.from(document.querySelectorAll('video')).map((v) => v.src);
        const deadline = Date.now() + 10000;  // the editor adds the preview a moment after the event, later if busy
        while (!sources().some((src) => src.includes(arg)) && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 200));
        return sources();""", entry["filename"])
    shot(ui, f"{name}_ran")
    assert any(entry["filename"] in src for src in sources), \
        f"Video Combine shows no preview of the video it wrote ({entry['filename']}); videos in the page: {sources}"
    film_runs = re.findall(r"AniPortrait FILM: (\d+) keyframes -> (\d+) frames", comfy_server.log(since=mark))
    if name == "audio_driven_fast":  # the sampler got every 3rd pose image; FILM made the rest
        assert film_runs == [(str(math.ceil(speech_frames() / 3)), str(speech_frames()))]
    else:
        assert film_runs == []


def test_portrait_without_a_face_is_reported_on_its_node(ui, client, uploaded, golden_dir):
    workflow = load_workflow("audio_driven")
    settings = {**tiny_settings(golden_dir), **file_settings(workflow, uploaded),
                "Portrait (pick a file)": {"image": uploaded[NO_FACE]}}
    ui.eval("await window.__t.load(arg.workflow); window.__t.setWidgets(arg.settings);",
            {"workflow": workflow, "settings": settings})
    events = queue_in_ui(ui)
    kind, error = events[-1]
    assert kind == "execution_error"
    assert error["node_type"] == "APK_ReferenceFace" and error["exception_type"] == "ValueError"
    assert "face" in error["exception_message"].lower()
    dialog = "\n".join(wait_for_dialog(ui))
    assert "APK_ReferenceFace" in dialog and error["exception_message"].strip().splitlines()[0][:60] in dialog
    assert ui.eval("return app.lastExecutionError?.node_id") == node_id(workflow, "APK_ReferenceFace")
    shot(ui, "error_no_face")
    ui.eval("await window.__t.closeDialogs(); await window.__t.fit();")
    shot(ui, "error_no_face_node")
    assert client.get("/system_stats")  # still serving


def test_video_combine_preview_plays_with_sound(ui, client, comfy_server, uploaded):
    node = ui.eval("""
        app.graph.clear();
        const add = (type, x, y) => {
          const n = LiteGraph.createNode(type); n.pos = [x, y]; app.graph.add(n); return n; };
        const frames = add('EmptyImage', 50, 100);
        frames.widgets.find((w) => w.name === 'batch_size').value = 24;
        frames.widgets.find((w) => w.name === 'color').value = 0x3366cc;
        const speech = add('LoadAudio', 50, 400);
        speech.widgets.find((w) => w.name === 'audio').value = arg;
        const combine = add('APK_VideoCombine', 500, 100);
        frames.connect(0, combine, combine.findInputSlot('images'));
        speech.connect(0, combine, combine.findInputSlot('audio'));
        return String(combine.id);""", uploaded["lyl.wav"])
    events = queue_in_ui(ui)
    assert events[-1][0] == "execution_success", events[-1]
    [output] = [detail["output"] for kind, detail in events if kind == "executed" and detail["node"] == node]
    [entry] = output["images"]
    path = comfy_server.output_dir / entry["subfolder"] / entry["filename"]
    assert read_video_frames(path)[0].shape[0] == 24
    assert abs(read_audio_track(path).duration - 24 / 30) < 1e-3

    playback = ui.eval("""
        const deadline = Date.now() + 10000;
        let video;
        while (!(video = Array.from(document.querySelectorAll('video')).find((v) => v.src.includes(arg)))
               && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
        if (!video) return null;
        if (video.readyState < 2)
          await new Promise((resolve) => video.addEventListener('loadeddata', resolve, {once: true}));
        video.muted = false;
        await video.play();
        await new Promise((resolve) => setTimeout(resolve, 600));
        video.pause();
        return {duration: video.duration, width: video.videoWidth, audioBytes: video.webkitAudioDecodedByteCount,
                error: video.error && video.error.message};""", entry["filename"])
    shot(ui, "video_combine_preview")
    assert playback is not None, "no <video> preview of the written file in the page"
    assert playback["error"] is None
    assert abs(playback["duration"] - 24 / 30) < 0.05 and playback["width"] == 512
    assert playback["audioBytes"] > 0  # the browser decoded the soundtrack


# ------------------------------------------------------------------------------------------------------------------
# a fresh install: no models, no input files


def test_fresh_install_badges_every_loader_with_its_missing_models(fresh_ui, fresh_server):
    workflow = load_workflow("audio_driven")
    badges = fresh_ui.eval("""
        await window.__t.load(arg);
        await window.__aniportrait.refreshModelStatus();
        await window.__t.fit();
        const badges = {};
        for (const node of app.graph.nodes)
          if (node.comfyClass?.startsWith('APK_')) badges[node.comfyClass] = window.__t.badges(node);
        return badges;""", workflow)
    shot(fresh_ui, "fresh_install_badges")
    expected = {"APK_LoadAudio2MeshModel": len(AUDIO2MESH_MODELS), "APK_LoadAudio2PoseModel": len(AUDIO2POSE_MODELS),
                "APK_LoadLmk2VideoModels": len(VIDEO_MODELS), "APK_ReferenceFace": len(FACE_MODELS)}
    for node_type, texts in badges.items():
        missing = [t for t in texts if "missing" in t]
        if node_type in expected:
            assert missing == [f"⚠ {expected[node_type]} model{'s' if expected[node_type] > 1 else ''} missing"]
        else:
            assert missing == [], node_type

    toast = fresh_ui.eval("""
        await app.extensionManager.command.execute('AniPortrait.ShowModelStatus');
        await new Promise((resolve) => setTimeout(resolve, 500));
        return Array.from(document.querySelectorAll('.p-toast-message')).map((t) => t.innerText).join('\\n');""")
    shot(fresh_ui, "fresh_install_status")
    models_dir = ComfyClient(fresh_server.url).get("/aniportrait/models")["models_dir"]
    assert f"{models_dir}/denoising_unet.pth" in toast and "scripts/download_models.py" in toast


def test_missing_speech_file_is_reported_before_anything_runs(fresh_ui, fresh_server, assets_dir):
    client = ComfyClient(fresh_server.url)
    client.upload(assets_dir / "lyl.png")
    workflow = load_workflow("audio_driven")
    fresh_ui.eval("await window.__t.closeDialogs(); await window.__t.load(arg); "
                  "window.__runEvents.length = 0; await app.queuePrompt(0, 1);", workflow)
    dialog = "\n".join(wait_for_dialog(fresh_ui))
    shot(fresh_ui, "error_no_speech")
    # our web extension stops the run before ComfyUI's validation, saying what to pick (web/apk_front_door.js)
    assert 'Pick an audio file in "Speech (pick a file)"' in dialog and "lyl.wav" in dialog
    assert fresh_ui.eval("return window.__runEvents") == []  # nothing ran
    fresh_ui.eval("await window.__t.closeDialogs()")


def test_missing_models_stop_the_run_naming_the_node_and_the_files(fresh_ui, fresh_server, assets_dir):
    client = ComfyClient(fresh_server.url)
    client.upload(assets_dir / "lyl.png")
    client.upload(assets_dir / "lyl.wav")
    workflow = load_workflow("audio_driven")
    fresh_ui.eval("await window.__t.load(arg);", workflow)
    events = queue_in_ui(fresh_ui)
    kind, error = events[-1]
    assert kind == "execution_error" and error["node_type"].startswith("APK_")
    message = error["exception_message"]
    assert re.search(r"\d+ model file\(s\) missing", message) and "download_models.py" in message
    dialog = "\n".join(wait_for_dialog(fresh_ui))
    assert error["node_type"] in dialog and "model file(s) missing" in dialog
    assert fresh_ui.eval("return app.lastExecutionError?.node_id") == error["node_id"]
    shot(fresh_ui, "error_missing_models")
    fresh_ui.eval("await window.__t.closeDialogs(); await window.__t.fit();")
    shot(fresh_ui, "error_missing_models_node")
    assert client.get("/system_stats")  # still serving


def test_video_loader_error_lists_every_missing_file_at_once(fresh_server, assets_dir):
    """Offline, one run tells the user about all seven video models, not one per attempt."""
    client = ComfyClient(fresh_server.url)
    portrait = client.upload(assets_dir / "lyl.png")
    loader_defaults = {"denoising_unet": "denoising_unet.pth", "reference_unet": "reference_unet.pth",
                       "motion_module": "motion_module.pth", "pose_guider": "pose_guider.pth",
                       "unet_config": "stable-diffusion-v1-5/unet/config.json", "vae": "sd-vae-ft-mse",
                       "image_encoder": "image_encoder", "precision": "auto"}
    prompt = {
        "1": {"class_type": "APK_LoadLmk2VideoModels", "inputs": loader_defaults},
        "2": {"class_type": "LoadImage", "inputs": {"image": portrait}},
        "3": {"class_type": "APK_ReferenceNetEncode",
              "inputs": {"models": ["1", 0], "image": ["2", 0], "width": 64, "height": 64}},
        "4": {"class_type": "APK_Lmk2VideoSampler",
              "inputs": {"models": ["1", 0], "reference": ["3", 0], "pose_images": ["2", 0], "steps": 1,
                         "cfg": 3.5, "seed": 0, "context_frames": 16, "context_overlap": 4,
                         "window_blend": "average", "loop": "closed (original)"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    run = client.run(prompt)
    assert run.error and run.error["node_type"] == "APK_LoadLmk2VideoModels"
    message = run.error["exception_message"]
    assert "model file(s) missing" in message
    for name in ("denoising_unet.pth", "reference_unet.pth", "motion_module.pth", "pose_guider.pth",
                 "unet/config.json", "sd-vae-ft-mse", "image_encoder"):
        assert name in message, name
    assert client.get("/system_stats")  # still serving


def test_a_warning_of_a_running_node_is_shown_as_a_toast(ui, client, assets_dir):
    """A driving video with a faceless frame: the node's warning reaches the page that queued it as a toast."""
    from tests.harness.graph import Graph

    graph = Graph(client.object_info())
    portrait = graph.add("LoadImage", upload=client.upload(assets_dir / "lyl.png"))
    frames = graph.add("ImageBatch", image1=portrait.out(0),
                       image2=graph.add("EmptyImage", width=64, height=64, color=0).out(0))
    track = graph.add("APK_VideoFaceLandmarks", frames)
    graph.add("PreviewAny", graph.add("APK_PoseTemplate", track, filename_prefix=""))
    toasts = ui.eval("""
        window.__aniportrait.shownWarnings.length = 0;
        await app.api.fetchApi('/prompt', {method: 'POST',
                                           body: JSON.stringify({prompt: arg, client_id: app.api.clientId})});
        for (let i = 0; i < 240 && !window.__aniportrait.shownWarnings.length; i++)
          await new Promise((resolve) => setTimeout(resolve, 250));
        await new Promise((resolve) => setTimeout(resolve, 500));
        return Array.from(document.querySelectorAll('.p-toast-message')).map((t) => t.innerText).join('\\n');""",
                     graph.prompt)
    shot(ui, "warning_toast")
    assert "no face found in frame(s) 1 of 2" in toasts and "Video Face Landmarks (AniPortrait)" in toasts, toasts
