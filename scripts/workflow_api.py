"""ComfyUI workflows: the editor's UI format (what ``workflows/*.json`` hold, what drag-and-drop loads) -> the API
format ``POST /prompt`` takes, using a server's ``/object_info``. Used by ``animate.sh`` and by the tests, which
check it against the web UI's own conversion.

UI format: ``nodes`` (id, type, mode, inputs [{name, link}], widgets_values [...], title) and ``links``
([id, from_node, from_slot, to_node, to_slot, type]). ``widgets_values`` is positional, in the order the editor
creates widgets from the node definition, including editor-only widgets (upload button, seed control) whose values
never reach the server. ``widget_slots`` spells out that order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FRONTEND_ONLY_NODES = {"Note", "MarkdownNote"}  # drawn by the editor, never sent to the server
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# input option -> editor-only widgets (name, type of their input socket) added right after that input's widget
EXTRA_WIDGETS = {
    "control_after_generate": (("control_after_generate", None),),
    "image_upload": (("upload", "IMAGEUPLOAD"),),
    "video_upload": (("upload", "IMAGEUPLOAD"),),
    "animated_image_upload": (("upload", "IMAGEUPLOAD"),),
    "audio_upload": (("audioUI", "AUDIO_UI"), ("upload", "AUDIOUPLOAD")),
}
MODE_MUTED, MODE_BYPASSED = 2, 4


class WorkflowError(ValueError):
    """The workflow cannot be converted for this server (missing node types, stale widget values...)."""


@dataclass(frozen=True)
class WidgetSlot:
    name: str
    sent: bool  # False: an editor-only widget, its value stays in the workflow
    socket_type: str | None  # type of the input socket the editor gives the widget (None: no socket)


def input_spec(info: dict, name: str) -> tuple[str, dict]:
    """(type, options) of one input of a node definition; a list type is a COMBO."""
    for section in ("required", "optional"):
        spec = (info["input"].get(section) or {}).get(name)
        if spec is not None:
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            return ("COMBO" if isinstance(spec[0], list) else str(spec[0])), options
    raise KeyError(name)


def widget_slots(info: dict) -> list[WidgetSlot]:
    """The widgets the editor creates for a node definition, in ``widgets_values`` order."""
    order = info.get("input_order") or {s: list(info["input"].get(s) or {}) for s in ("required", "optional")}
    slots = []
    for name in [*order.get("required", []), *order.get("optional", [])]:
        type_name, options = input_spec(info, name)
        if type_name not in WIDGET_TYPES or options.get("forceInput"):
            continue
        slots.append(WidgetSlot(name, True, type_name))
        for flag, extras in EXTRA_WIDGETS.items():
            if options.get(flag):
                slots += [WidgetSlot(extra, False, socket_type) for extra, socket_type in extras]
    return slots


def missing_node_types(workflow: dict, object_info: dict) -> list[str]:
    return sorted({node["type"] for node in workflow["nodes"]
                   if node["type"] not in object_info and node["type"] not in FRONTEND_ONLY_NODES})


def describe(node: dict) -> str:
    return f"node #{node['id']} ({node['type']}{', ' + repr(node['title']) if node.get('title') else ''})"


def widget_inputs(node: dict, info: dict) -> dict[str, Any]:
    values = node.get("widgets_values") or []
    if isinstance(values, dict):  # some editors save widget values by name
        return {slot.name: values[slot.name] for slot in widget_slots(info) if slot.sent and slot.name in values}
    slots = widget_slots(info)
    if len(values) != len(slots):
        raise WorkflowError(
            f"{describe(node)} has {len(values)} widget values but this ComfyUI's node has {len(slots)} widgets "
            f"({', '.join(s.name for s in slots)}): the workflow was saved with another version of the node. "
            "Load it in the editor, check the node's settings and save it again.")
    return {slot.name: value for slot, value in zip(slots, values) if slot.sent}


def workflow_to_prompt(workflow: dict, object_info: dict) -> dict[str, dict]:
    """API prompt ``{node id: {"class_type", "inputs", "_meta": {"title"}}}`` for a UI-format workflow."""
    missing = missing_node_types(workflow, object_info)
    if missing:
        raise WorkflowError(f"The workflow uses node types this ComfyUI does not have: {', '.join(missing)}. "
                            "Install or update the node packs that provide them and restart ComfyUI.")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links") or []}
    prompt = {}
    for node in sorted(nodes.values(), key=lambda n: n["id"]):
        if node["type"] in FRONTEND_ONLY_NODES or node.get("mode", 0) == MODE_MUTED:
            continue
        if node.get("mode", 0) == MODE_BYPASSED:
            raise WorkflowError(f"{describe(node)} is bypassed; this converter does not support bypassed nodes. "
                                "Enable or delete it in the editor.")
        info = object_info[node["type"]]
        inputs = widget_inputs(node, info)
        for socket in node.get("inputs") or []:
            link = links.get(socket.get("link"))
            if link is None:
                continue
            source = nodes[link[1]]
            if source["type"] in FRONTEND_ONLY_NODES or source.get("mode", 0) == MODE_MUTED:
                inputs.pop(socket["name"], None)
                continue
            inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]}}
    return prompt


def select_node(prompt: dict[str, dict], selector: str) -> dict:
    """The prompt's one node whose class_type or title is ``selector`` (e.g. "APK_Lmk2VideoSampler", "width")."""
    matches = [node for node in prompt.values()
               if selector in (node["class_type"], (node.get("_meta") or {}).get("title"))]
    if len(matches) != 1:
        raise WorkflowError(f"expected one node of type or title '{selector}' in the workflow, found {len(matches)}")
    return matches[0]


def set_inputs(prompt: dict[str, dict], selector: str, **values: Any) -> None:
    """Set widget inputs of the node ``select_node`` finds; linked inputs cannot be set."""
    node = select_node(prompt, selector)
    unknown = [name for name in values if name not in node["inputs"]]
    if unknown:
        raise WorkflowError(f"'{selector}' ({node['class_type']}) has no input(s) {unknown}; "
                            f"it has {sorted(node['inputs'])}")
    linked = [name for name in values if isinstance(node["inputs"].get(name), list)]
    if linked:
        raise WorkflowError(f"'{selector}': {linked} take their value from a link; set the node the link comes from")
    node["inputs"].update(values)
