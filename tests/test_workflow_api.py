"""scripts/workflow_api.py: UI-format workflows -> API prompts, on small hand-written node definitions (the browser
tests compare it with the real editor's conversion of the shipped workflows)."""
from __future__ import annotations

import pytest

from scripts.workflow_api import (WorkflowError, missing_node_types, select_node, set_inputs, widget_slots,
                                  workflow_to_prompt)

OBJECT_INFO = {
    "LoadPicture": {"display_name": "Load Picture", "input": {"required": {"image": [["a.png", "b.png"],
                                                                                    {"image_upload": True}]}},
                    "input_order": {"required": ["image"]}, "output": ["IMAGE"], "output_name": ["IMAGE"]},
    "LoadSound": {"display_name": "Load Sound", "input": {"required": {"audio": ["COMBO", {"options": ["x.wav"],
                                                                                         "audio_upload": True}]}},
                  "input_order": {"required": ["audio"]}, "output": ["AUDIO"], "output_name": ["audio"]},
    "Sampler": {"display_name": "Sampler",
                "input": {"required": {"images": ["IMAGE", {}], "seed": ["INT", {"default": 1,
                                                                                 "control_after_generate": True}],
                                       "steps": ["INT", {"default": 25}], "scale": ["FLOAT", {"forceInput": True}]},
                          "optional": {"audio": ["AUDIO", {}], "mode": [["fast", "slow"], {}]}},
                "input_order": {"required": ["images", "seed", "steps", "scale"], "optional": ["audio", "mode"]},
                "output": ["IMAGE"], "output_name": ["frames"]},
    "Number": {"display_name": "Number", "input": {"required": {"value": ["FLOAT", {}]}},
               "input_order": {"required": ["value"]}, "output": ["FLOAT"], "output_name": ["FLOAT"]},
}


def node(node_id: int, type_name: str, values: list, inputs: list | None = None, **extra) -> dict:
    return {"id": node_id, "type": type_name, "mode": 0, "inputs": inputs or [], "widgets_values": values, **extra}


def workflow() -> dict:
    return {
        "nodes": [
            node(1, "LoadPicture", ["b.png", "image"]),
            node(2, "LoadSound", ["x.wav", None, ""]),
            node(3, "Number", [2.5], title="scale"),
            node(4, "Sampler", [7, "fixed", 30, "slow"],
                 [{"name": "images", "link": 1}, {"name": "scale", "link": 2}, {"name": "audio", "link": 3},
                  {"name": "steps", "link": None, "widget": {"name": "steps"}}]),
            node(5, "MarkdownNote", ["read me"]),
        ],
        "links": [[1, 1, 0, 4, 0, "IMAGE"], [2, 3, 0, 4, 1, "FLOAT"], [3, 2, 0, 4, 2, "AUDIO"]],
    }


def test_widget_slots_follow_the_editor_order_with_its_extra_widgets():
    slots = [(s.name, s.sent) for s in widget_slots(OBJECT_INFO["Sampler"])]
    assert slots == [("seed", True), ("control_after_generate", False), ("steps", True), ("mode", True)]
    assert [(s.name, s.sent) for s in widget_slots(OBJECT_INFO["LoadSound"])] == \
        [("audio", True), ("audioUI", False), ("upload", False)]
    assert [s.socket_type for s in widget_slots(OBJECT_INFO["LoadPicture"])] == ["COMBO", "IMAGEUPLOAD"]


def test_converts_widgets_and_links_and_leaves_out_notes():
    prompt = workflow_to_prompt(workflow(), OBJECT_INFO)
    assert sorted(prompt) == ["1", "2", "3", "4"]
    assert prompt["1"]["inputs"] == {"image": "b.png"}
    assert prompt["2"]["inputs"] == {"audio": "x.wav"}
    assert prompt["4"] == {"class_type": "Sampler", "_meta": {"title": "Sampler"},
                           "inputs": {"seed": 7, "steps": 30, "mode": "slow", "images": ["1", 0],
                                      "scale": ["3", 0], "audio": ["2", 0]}}
    assert prompt["3"]["_meta"]["title"] == "scale"


def test_a_linked_widget_takes_the_link():
    graph = workflow()
    graph["nodes"][3]["inputs"][3]["link"] = 4
    graph["links"].append([4, 3, 0, 4, 3, "FLOAT"])
    assert workflow_to_prompt(graph, OBJECT_INFO)["4"]["inputs"]["steps"] == ["3", 0]


def test_muted_nodes_and_their_links_are_left_out():
    graph = workflow()
    graph["nodes"][1]["mode"] = 2
    prompt = workflow_to_prompt(graph, OBJECT_INFO)
    assert "2" not in prompt and "audio" not in prompt["4"]["inputs"]


def test_bypassed_nodes_are_refused():
    graph = workflow()
    graph["nodes"][2]["mode"] = 4
    with pytest.raises(WorkflowError, match=r"node #3 \(Number, 'scale'\) is bypassed"):
        workflow_to_prompt(graph, OBJECT_INFO)


def test_unknown_node_types_are_named():
    graph = workflow()
    graph["nodes"].append(node(6, "SomePackNode", []))
    assert missing_node_types(graph, OBJECT_INFO) == ["SomePackNode"]
    with pytest.raises(WorkflowError, match="SomePackNode"):
        workflow_to_prompt(graph, OBJECT_INFO)


def test_stale_widget_values_are_refused_with_the_widget_names():
    graph = workflow()
    graph["nodes"][3]["widgets_values"] = [7, 30, "slow"]  # saved before the seed control existed
    with pytest.raises(WorkflowError, match=r"node #4 \(Sampler\) has 3 widget values .* 4 widgets "
                                            r"\(seed, control_after_generate, steps, mode\)"):
        workflow_to_prompt(graph, OBJECT_INFO)


def test_set_inputs_by_type_or_title():
    prompt = workflow_to_prompt(workflow(), OBJECT_INFO)
    set_inputs(prompt, "Sampler", steps=2)
    set_inputs(prompt, "scale", value=1.0)
    assert prompt["4"]["inputs"]["steps"] == 2 and prompt["3"]["inputs"]["value"] == 1.0
    with pytest.raises(WorkflowError, match="no input"):
        set_inputs(prompt, "Sampler", stepz=2)
    with pytest.raises(WorkflowError, match="from a link"):
        set_inputs(prompt, "Sampler", scale=1.0)
    with pytest.raises(WorkflowError, match="found 0"):
        select_node(prompt, "Nothing")
