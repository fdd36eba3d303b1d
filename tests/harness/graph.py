"""API-format prompts built against a server's /object_info.

Links are wired by socket type, so a test states WHAT flows where and does not depend on input names; widgets
not given keep the node's default. Anything that does not fit (unknown input, no socket of that type, two
candidates) fails with a message that names the node and its real inputs.

    graph = Graph(client.object_info())
    audio = graph.add("APK_LoadAudio", upload="speech.wav")
    mesh = graph.add("APK_Audio2Mesh", graph.add("APK_LoadAudio2MeshModel"), audio, fps=25)
    graph.add("PreviewAny", mesh)
    client.run(graph.prompt)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("audio_upload", "image_upload", "video_upload", "file_upload")


@dataclass(frozen=True)
class Output:
    node_id: str
    index: int
    type: str

    def link(self) -> list:
        return [self.node_id, self.index]


class Node:
    def __init__(self, node_id: str, class_type: str, info: dict):
        self.id = node_id
        self.class_type = class_type
        self.info = info

    def out(self, which: int | str = 0) -> Output:
        """An output by index or by (unique) type."""
        types = self.info["output"]
        if isinstance(which, int):
            return Output(self.id, which, _type_name(types[which]))
        matches = [i for i, t in enumerate(types) if _type_name(t) == which]
        if len(matches) != 1:
            raise AssertionError(f"{self.class_type} has {len(matches)} outputs of type {which}: {types}; "
                                 "pick one by index")
        return Output(self.id, matches[0], which)


def input_specs(info: dict) -> dict[str, tuple[str, dict, bool]]:
    """name -> (type, options, required) for every input of a node (hidden ones excluded)."""
    specs = {}
    for section, required in (("required", True), ("optional", False)):
        for name, spec in (info["input"].get(section) or {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs[name] = (_type_name(spec[0]), options, required)
    return specs


def is_link_type(type_name: str) -> bool:
    return type_name not in WIDGET_TYPES


class Graph:
    def __init__(self, object_info: dict):
        self.object_info = object_info
        self.prompt: dict[str, dict] = {}

    def node_info(self, class_type: str) -> dict:
        if class_type not in self.object_info:
            raise AssertionError(f"node {class_type} is not registered in this ComfyUI (not in /object_info)")
        return self.object_info[class_type]

    def add(self, class_type: str, *sources: Node | Output, upload: str | None = None, **values: Any) -> Node:
        """Add a node. ``sources`` feed its link inputs by type (a Node stands for its only output of a fitting
        type); ``upload`` fills its file-upload widget; ``values`` set widgets (or link inputs) by name."""
        info = self.node_info(class_type)
        specs = input_specs(info)
        inputs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in specs:
                raise AssertionError(f"{class_type} has no input '{name}'; its inputs: {sorted(specs)}")
            inputs[name] = value.link() if isinstance(value, Output) else value
        if upload is not None:
            inputs[_upload_input(class_type, specs)] = upload
        for source in sources:
            name, link = _wire(class_type, specs, inputs, source)
            inputs[name] = link
        for name, (type_name, options, required) in specs.items():
            if name in inputs or not required:
                continue
            if is_link_type(type_name):
                raise AssertionError(f"{class_type} needs its input '{name}' ({type_name}) connected")
            inputs[name] = _default(info, name, type_name, options)
        node = Node(str(len(self.prompt) + 1), class_type, info)
        self.prompt[node.id] = {"class_type": class_type, "inputs": inputs}
        return node


def _type_name(raw: Any) -> str:
    return "COMBO" if isinstance(raw, list) else str(raw)


def _upload_input(class_type: str, specs: dict) -> str:
    names = [n for n, (_, options, _) in specs.items() if any(options.get(flag) for flag in UPLOAD_FLAGS)]
    if len(names) != 1:
        raise AssertionError(f"{class_type} should have exactly one file-upload input, has {names}")
    return names[0]


def _wire(class_type: str, specs: dict, taken: dict, source: Node | Output) -> tuple[str, list]:
    free = {n: t for n, (t, _, _) in specs.items() if is_link_type(t) and n not in taken}
    if isinstance(source, Node):
        fitting = [source.out(i) for i, t in enumerate(source.info["output"])
                   if any(_accepts(want, _type_name(t)) for want in free.values())]
        if len(fitting) != 1:
            raise AssertionError(f"cannot tell which output of {source.class_type} "
                                 f"{source.info['output']} feeds {class_type} {free}")
        source = fitting[0]
    names = [n for n, want in free.items() if _accepts(want, source.type)]
    if len(names) != 1:
        raise AssertionError(f"{class_type}: {len(names)} free inputs accept {source.type} "
                             f"(free link inputs: {free}); name the input instead")
    return names[0], source.link()


def _accepts(wanted: str, given: str) -> bool:
    return wanted == "*" or given in wanted.split(",")


def _default(info: dict, name: str, type_name: str, options: dict) -> Any:
    if "default" in options:
        return options["default"]
    if type_name == "COMBO":
        raw = (info["input"].get("required") or {})[name][0]
        choices = list(raw) if isinstance(raw, list) else list(options.get("options") or [])
        if not choices:
            raise AssertionError(f"{info['name']}: the dropdown '{name}' has no entries")
        return choices[0]
    return {"INT": options.get("min", 0), "FLOAT": options.get("min", 0.0), "STRING": "", "BOOLEAN": False}[type_name]
