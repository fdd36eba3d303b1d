"""The ready-made workflows as an artist first sees them: opened in a 1600 x 1000 window of the real editor with the
default settings (a fresh user folder), every node is on screen, clear of the toolbars and the minimap, drawn with its
text (the zoom is above the editor's text threshold), inside its stage's group and overlapping no other node.

The same view, cropped to the groups, is each workflow's template-browser thumbnail (workflows/<name>.jpg, the file
name the frontend asks for). The committed thumbnail carries the hash of the workflow it shows; after a change of the
graphs, render them again with ``ANIPORTRAIT_WRITE_THUMBNAILS=1 python -m pytest tests/test_ui_layout.py``.

Also what the web extension web/apk_front_door.js adds for a new user: the template browser's descriptions, a "pick a
video" message when a workflow runs before its files are picked, and node search by the words artists use.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyServer
from tests.ui.browser import UiBrowser, missing_requirements
from tests.workflow_inputs import WORKFLOW_DIR, load_workflow

pytestmark = [pytest.mark.server, pytest.mark.browser]

WINDOW = (1600, 1000)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
THUMBNAIL_WIDTH = 480
# the editor's own overlays are left out of thumbnails (the minimap, the zoom buttons)
OVERLAY_CSS = ".minimap-main-container, .p-buttongroup { visibility: hidden !important; }"
WRITE_THUMBNAILS = os.environ.get("ANIPORTRAIT_WRITE_THUMBNAILS") == "1"

# for each node: its rectangle in window pixels (title bar included), and what the window shows at points over it
VIEW_REPORT = """
await app.loadGraphData(arg);  // as the template browser and drag-and-drop open a workflow (view restored)
await new Promise((resolve) => setTimeout(resolve, 1000));
const canvas = app.canvas;
const [offsetX, offsetY] = canvas.ds.offset;
const scale = canvas.ds.scale;
const toWindow = ([x, y, w, h]) => [(x + offsetX) * scale, (y + offsetY) * scale, w * scale, h * scale];
const coveredBy = ([x, y, w, h]) => {
  const covers = new Set();
  for (let i = 0; i <= 6; i++) for (let j = 0; j <= 6; j++) {
    const px = x + 2 + (w - 4) * i / 6, py = y + 2 + (h - 4) * j / 6;
    const top = document.elementFromPoint(px, py);
    if (!top) { covers.add('outside the window'); continue; }
    if (top.tagName === 'CANVAS' || top.closest('.dom-widget')) continue;  // the graph, or a node's own widget
    covers.add(top.tagName + '.' + String(top.className).slice(0, 40));
  }
  return [...covers];
};
const nodes = app.graph.nodes.map((node) => {
  const bounds = toWindow(node.boundingRect);
  return {id: node.id, title: node.title, bounds, covered: coveredBy(bounds)};
});
const groups = app.graph.groups.map((group) => ({title: group.title, bounds: toWindow(group._bounding)}));
return {scale, lowQuality: canvas.low_quality, nodes, groups,
        lodSetting: app.extensionManager.setting.get('LiteGraph.Canvas.MinFontSizeForLOD')};
"""


@pytest.fixture(scope="module")
def default_server(comfy_root, comfy_server, tiny_models, tmp_path_factory):
    """A new user's ComfyUI: its own user folder (the editor's default settings) and an empty input folder."""
    [pack] = list((comfy_server.base_dir / "custom_nodes").iterdir())
    with ComfyServer.from_install(comfy_root, packs=[(pack.name, pack.resolve())],
                                  model_folders={"aniportrait": tiny_models},
                                  base_dir=tmp_path_factory.mktemp("layout-base"), env=OFFLINE_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def default_ui(default_server):
    """The editor in a 1600 x 1000 window."""
    missing = missing_requirements()
    if missing:
        pytest.fail("the browser tests need " + "; ".join(missing))
    with UiBrowser(default_server.url) as browser:
        browser.set_viewport(*WINDOW)
        time.sleep(0.5)
        yield browser


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(inner: list[float], outer: list[float]) -> bool:
    return (inner[0] >= outer[0] and inner[1] >= outer[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def workflow_hash(name: str) -> str:
    return hashlib.sha256((WORKFLOW_DIR / f"{name}.json").read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(path.stem for path in WORKFLOW_DIR.glob("*.json")))
def test_workflow_opens_fitted_readable_and_without_overlaps(default_ui, name):
    view = default_ui.eval(VIEW_REPORT, load_workflow(name))
    default_ui.screenshot(ARTIFACTS / f"layout_{name}.png")
    assert view["lodSetting"] == 8, "not the editor's default text threshold"
    assert not view["lowQuality"], f"opens at zoom {view['scale']}, where the editor draws nodes without text"
    hidden = {node["title"]: node["covered"] for node in view["nodes"] if node["covered"]}
    assert not hidden, f"nodes not fully visible in a {WINDOW} window: {hidden}"
    nodes = view["nodes"]
    overlapping = [(a["title"], b["title"]) for i, a in enumerate(nodes) for b in nodes[i + 1:]
                   if overlap(a["bounds"], b["bounds"])]
    assert not overlapping
    assert {group["title"] for group in view["groups"]} <= {"Inputs", "Motion", "Video", "Output"}
    for node in nodes:
        assert sum(inside(node["bounds"], group["bounds"]) for group in view["groups"]) == 1, node["title"]
    groups = view["groups"]
    assert not [(a["title"], b["title"]) for i, a in enumerate(groups) for b in groups[i + 1:]
                if overlap(a["bounds"], b["bounds"])]

    # the thumbnail: this view cropped to the groups
    left = min(g["bounds"][0] for g in groups) - 8
    top = min(g["bounds"][1] for g in groups) - 8
    right = max(g["bounds"][0] + g["bounds"][2] for g in groups) + 8
    bottom = max(g["bounds"][1] + g["bounds"][3] for g in groups) + 8
    default_ui.eval(f"document.head.insertAdjacentHTML('beforeend', '<style id=\"thumbnail\">{OVERLAY_CSS}</style>')")
    shot = default_ui.screenshot(ARTIFACTS / f"thumbnail_{name}.png",
                                 clip={"x": left, "y": top, "width": right - left, "height": bottom - top})
    default_ui.eval("document.getElementById('thumbnail').remove()")
    thumbnail = WORKFLOW_DIR / f"{name}.jpg"
    if WRITE_THUMBNAILS:
        with Image.open(shot) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
            image.save(thumbnail, "JPEG", quality=82, optimize=True, comment=workflow_hash(name).encode())
    assert thumbnail.is_file(), f"{thumbnail.name} is missing: run with ANIPORTRAIT_WRITE_THUMBNAILS=1"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.width <= THUMBNAIL_WIDTH
        assert image.info.get("comment", b"").decode() == workflow_hash(name), \
            f"{thumbnail.name} shows an older {name}.json: run with ANIPORTRAIT_WRITE_THUMBNAILS=1"


WORKFLOW_NAMES = sorted(path.stem for path in WORKFLOW_DIR.glob("*.json"))


def test_template_browser_shows_each_workflow_with_its_thumbnail_and_description(default_ui, default_server):
    [pack] = [p.name for p in (default_server.base_dir / "custom_nodes").iterdir()]
    cards = default_ui.eval("""
        await app.extensionManager.command.execute('Comfy.BrowseTemplates');
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const entry = Array.from(document.querySelectorAll('.p-dialog *'))
          .find((e) => e.childElementCount === 0 && e.textContent.trim() === arg);
        entry.click();
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const cards = {};
        for (const card of document.querySelectorAll('[data-testid^="template-workflow-"]')) {
          const image = card.querySelector('img');
          cards[card.dataset.testid.replace('template-workflow-', '')] = {
            description: card.querySelector('p[title]')?.textContent,
            imageWidth: image?.complete ? image.naturalWidth : 0};
        }
        return cards;""", pack)
    default_ui.screenshot(ARTIFACTS / "layout_templates.png")
    default_ui.reload()  # closes the dialog
    assert sorted(cards) == WORKFLOW_NAMES
    for name, card in cards.items():
        assert card["imageWidth"] > 0, f"{name}: no thumbnail"
        description = load_workflow(name)["extra"]["description"]
        assert description and card["description"] == description and name not in description


@pytest.mark.parametrize("name", ["pose_video_driven", "face_reenactment"])
def test_running_a_video_workflow_as_loaded_asks_to_pick_a_video(default_ui, default_server, name):
    """The input folder is empty: the Run button explains what to pick instead of a validation error."""
    workflow = load_workflow(name)
    [title] = [node["title"] for node in workflow["nodes"] if node["type"] == "LoadVideo"]
    dialog = default_ui.eval("""
        await app.loadGraphData(arg);
        await app.queuePrompt(0, 1);
        const dialogs = () => Array.from(document.querySelectorAll('.p-dialog')).map((d) => d.innerText).join('\\n');
        const deadline = Date.now() + 10000;  // the refusal comes back in a moment, later when the machine is busy
        while (!dialogs() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
        return dialogs();""", workflow)
    default_ui.screenshot(ARTIFACTS / f"layout_pick_a_file_{name}.png")
    # closed, and gone before the next test: a dialog still closing keeps ComfyUI from opening the next one
    default_ui.eval("""
        for (const button of document.querySelectorAll('.p-dialog button[aria-label="Close"]')) button.click();
        const deadline = Date.now() + 5000;
        while (document.querySelector('.p-dialog') && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 100));""")
    assert f'Pick a video in "{title}"' in dialog and "Read me" in dialog
    assert "validation" not in dialog.lower()
    client = ComfyClient(default_server.url)
    assert client.get("/history") == {} and not client.get("/queue")["queue_pending"]


@pytest.mark.parametrize("phrase", ["lip sync", "talking head", "audio to video"])
def test_the_node_search_finds_the_pack_by_what_artists_call_it(default_ui, phrase):
    found = default_ui.eval("""
        const search = () => app.extensionManager.command.execute('Workspace.SearchBox.Toggle');
        await search();
        await new Promise((resolve) => setTimeout(resolve, 600));
        const input = document.querySelector('.comfy-vue-node-search-container input');
        input.focus();
        input.value = arg;
        input.dispatchEvent(new Event('input', {bubbles: true}));
        await new Promise((resolve) => setTimeout(resolve, 1200));
        const options = Array.from(document.querySelectorAll('li[role=option]')).map((li) => li.innerText);
        await search();
        return options.slice(0, 5);""", phrase)
    assert any("(AniPortrait)" in option for option in found), found
