"""What an artist meets first: a help page for every node (served where the node library looks for it), model
dropdowns that list only files fitting the slot, and the registry packaging (pyproject, icon, .comfyignore)."""
from __future__ import annotations

import re
import subprocess
import tomllib
import xml.etree.ElementTree as ElementTree

import pytest

from aniportrait.registry import MODEL_FILES
from tests.conftest import PACK_FOLDER_NAME, REPO

DOCS = REPO / "web" / "docs"
PACK_MODULE = f"custom_nodes.{PACK_FOLDER_NAME}"
# loader inputs -> the slot (aniportrait/slots.py) each one selects
LOADER_SLOTS = {
    "APK_LoadAudio2MeshModel": {"audio2mesh": "audio2mesh", "wav2vec2": "wav2vec2"},
    "APK_LoadAudio2PoseModel": {"audio2pose": "audio2pose", "wav2vec2": "wav2vec2"},
    "APK_LoadLmk2VideoModels": {"denoising_unet": "denoising_unet", "reference_unet": "reference_unet",
                                "motion_module": "motion_module", "pose_guider": "pose_guider",
                                "unet_config": "sd15_unet_config", "image_encoder": "image_encoder", "vae": "vae"},
}
# a full (denoising) UNet can also serve as the ReferenceNet
ALSO_FITS = {("reference_unet", "denoising_unet")}


@pytest.fixture(scope="module")
def pack_nodes(client) -> dict[str, dict]:
    return {name: info for name, info in client.object_info().items() if info.get("python_module") == PACK_MODULE}


def input_names(info: dict) -> list[str]:
    return [name for section in ("required", "optional") for name in (info["input"].get(section) or {})]


@pytest.mark.server
def test_every_node_has_a_help_page_naming_its_inputs_and_outputs(client, pack_nodes):
    """The node library shows web/docs/<node id>.md (frontend 1.32: /extensions/<pack>/docs/<id>.md)."""
    assert pack_nodes
    without_page = sorted(node for node in pack_nodes if not (DOCS / f"{node}.md").is_file())
    assert not without_page, f"write web/docs/<node>.md for {without_page}"
    for node, info in pack_nodes.items():
        page = (DOCS / f"{node}.md").read_text(encoding="utf-8")
        assert page.startswith(f"# {info['display_name']}\n"), node
        named = set(re.findall(r"\*\*(\w+)\*\*", page))
        unnamed = [name for name in [*input_names(info), *info["output_name"]] if name not in named]
        assert not unnamed, f"{node}'s help page does not describe {unnamed}"
        served = client.request("GET", f"/extensions/{PACK_FOLDER_NAME}/docs/{node}.md")
        assert served[0] == 200, node


@pytest.mark.server
def test_model_dropdowns_list_the_default_first_and_no_file_of_another_slot(pack_nodes, tiny_models):
    present = {slot: model.relpath for slot, model in MODEL_FILES.items() if (tiny_models / model.relpath).exists()}
    for node, inputs in LOADER_SLOTS.items():
        for input_name, slot in inputs.items():
            spec = pack_nodes[node]["input"]["required"][input_name]
            choices = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
            assert choices[0] == MODEL_FILES[slot].relpath, (node, input_name)
            others = {path for other, path in present.items() if other != slot and (slot, other) not in ALSO_FITS}
            assert not others & set(choices), (node, input_name, choices)


def test_registry_metadata_is_complete_and_the_icon_is_ours():
    comfy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["DisplayName"] and comfy["PublisherId"]
    assert re.fullmatch(r">=\s*0\.3\.\d+", comfy["requires-comfyui"])
    icon = REPO / comfy["Icon"]
    assert icon.suffix == ".svg" and ElementTree.parse(icon).getroot().tag.endswith("svg")


def test_the_published_package_leaves_out_tests_and_benchmarks_but_keeps_what_animate_sh_needs():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    ignored = subprocess.run(["git", "ls-files", "--cached", "--ignored", "--exclude-from=.comfyignore"],
                             cwd=REPO, capture_output=True, text=True, check=True)
    shipped = set(tracked.stdout.split()) - set(ignored.stdout.split())
    assert not [path for path in shipped if path.startswith(("bench/", ".ci/", "tests/"))]
    for needed in ("__init__.py", "animate.sh", "scripts/animate.py", "aniportrait/comfy_host/server.py",
                   "aniportrait/comfy_host/client.py", "web/aniportrait.js", "workflows/audio_driven.json"):
        assert needed in shipped, needed
