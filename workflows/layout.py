"""Automatic layout of a generated workflow: nodes in columns inside titled groups by stage (Inputs / Motion / Video /
Output), scaled so the whole graph opens readable in a 1600 x 1000 window with the editor's default settings.

The editor (frontend 1.32) draws node text only at a zoom of at least MinFontSizeForLOD / NODE_TEXT_SIZE = 8 / 14
(``LiteGraph.Canvas.MinFontSizeForLOD``, default 8): below that nodes are drawn as empty boxes. Over its canvas lie
the top bars (banner, tabs, breadcrumb and Run button), the side toolbar on the left and the minimap and zoom
buttons at the bottom right; SCREEN describes the free area in between.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

STAGES = ("Inputs", "Motion", "Video", "Output")
STAGE_COLORS = {"Inputs": "#3f789e", "Motion": "#8A8", "Video": "#a1309b", "Output": "#b58b2a"}
# nodes that are always inputs, whatever their category
INPUT_TYPES = {"LoadImage", "LoadVideo", "LoadAudio", "APK_LoadAudio", "PrimitiveInt", "PrimitiveFloat",
               "PrimitiveString", "PrimitiveBoolean", "MarkdownNote", "Note"}
# pack categories -> stage (any other AniPortrait/ category is part of the motion stage)
CATEGORY_STAGES = {"AniPortrait/video": "Video", "AniPortrait/interpolation": "Video", "AniPortrait/output": "Output"}

LOD_ZOOM = 8 / 14          # the editor's default text threshold (see above)
MIN_SCALE, MAX_SCALE = 0.62, 1.0  # a margin above LOD_ZOOM, so text stays drawn after a small zoom-out
TITLE_HEIGHT = 30          # LiteGraph.NODE_TITLE_HEIGHT: drawn above a node's pos
GROUP_TITLE = 48           # room for a group's title (font 24) above its first node's title
PAD, COLUMN_GAP, GROUP_GAP = 14, 22, 30
NODE_GAP = 36              # room for the badges the editor draws above a node's title


@dataclass(frozen=True)
class Screen:
    """The free part of the editor's canvas, in window pixels: everything inside left..right x top..bottom, except
    the corner right of ``minimap_left`` and below ``minimap_top``."""

    left: int = 72
    top: int = 140
    right: int = 1588
    bottom: int = 985
    minimap_left: int = 1335
    minimap_top: int = 735


SCREEN = Screen()


def node_stage(node: dict, info: dict | None, sources: list[str]) -> str:
    """``sources``: stages of the nodes linked into this one (already known: the graph is laid out in order)."""
    if node["type"] in INPUT_TYPES or info is None:
        return "Inputs"
    category = info.get("category", "")
    if category.startswith("AniPortrait"):
        if info.get("output_node") and not info.get("output"):
            return "Output"  # it only writes a file (Save Motion)
        # never before what feeds it (Paste Back, a motion node, works on the sampled frames)
        return max([CATEGORY_STAGES.get(category, "Motion"), *sources], key=STAGES.index)
    if not sources:
        return "Inputs"
    return max(sources, key=STAGES.index)  # a core node (preview, video parts) belongs with what feeds it


def stages_of(workflow: dict, object_info: dict) -> dict[int, str]:
    nodes = {node["id"]: node for node in workflow["nodes"]}
    feeds: dict[int, list[int]] = {}
    for _, source, _, target, _, _ in workflow["links"]:
        feeds.setdefault(target, []).append(source)
    stages: dict[int, str] = {}

    def stage(node_id: int) -> str:
        if node_id not in stages:
            node = nodes[node_id]
            stages[node_id] = node_stage(node, object_info.get(node["type"]),
                                         [stage(source) for source in feeds.get(node_id, [])])
        return stages[node_id]

    for node_id in nodes:
        stage(node_id)
    return stages


@dataclass
class Column:
    x: float
    used: float = GROUP_TITLE  # height used so far, from the group's top
    width: float = 0


def pack(workflow: dict, stages: dict[int, str], scale: float) -> tuple[dict, list[dict]] | None:
    """Node positions and groups at ``scale``, or None when the graph does not fit the screen at it."""
    left, top = SCREEN.left / scale, SCREEN.top / scale

    def height_limit(right_edge: float) -> float:
        bottom = SCREEN.minimap_top if right_edge * scale > SCREEN.minimap_left else SCREEN.bottom
        return bottom / scale - top

    positions, groups, x = {}, [], left
    for stage in STAGES:
        members = [node for node in workflow["nodes"] if stages[node["id"]] == stage]
        if not members:
            continue
        columns = [Column(x + PAD)]
        for node in members:
            width, height = node["size"]
            column = columns[-1]
            footprint = TITLE_HEIGHT + height
            if column.used > GROUP_TITLE and column.used + footprint + PAD > height_limit(column.x + width + PAD):
                column = Column(column.x + column.width + COLUMN_GAP)
                columns.append(column)
            if column.used + footprint + PAD > height_limit(column.x + width + PAD):
                return None
            positions[node["id"]] = [round(column.x), round(top + column.used + TITLE_HEIGHT)]
            column.used += footprint + NODE_GAP
            column.width = max(column.width, width)
        right = max(column.x + column.width for column in columns) + PAD
        bottom = max(column.used - NODE_GAP for column in columns) + PAD
        groups.append({"id": len(groups) + 1, "title": stage, "bounding": [round(x), round(top), round(right - x),
                                                                           round(bottom)],
                       "color": STAGE_COLORS[stage], "font_size": 24, "flags": {}})
        x = right + GROUP_GAP
    if (x - GROUP_GAP) * scale > SCREEN.right:
        return None
    return positions, groups


def largest_fit(workflow: dict, stages: dict[int, str]) -> tuple[tuple[dict, list[dict]] | None, float]:
    """The placement at the largest scale (from MAX_SCALE down to MIN_SCALE) at which the graph fits the screen."""
    scale = MAX_SCALE
    while (placed := pack(workflow, stages, scale)) is None and scale > MIN_SCALE:
        scale = round(scale - 0.02, 2)
    return placed, scale


def arrange(workflow: dict, object_info: dict, name: str = "workflow") -> dict:
    """Lays ``workflow`` out in place (positions, groups, the view it opens at) and returns it."""
    stages = stages_of(workflow, object_info)
    placed, scale = largest_fit(workflow, stages)
    if placed is None:  # a large graph: the output node joins the Video group, which saves a column
        stages = {node: "Video" if stage == "Output" else stage for node, stage in stages.items()}
        placed, scale = largest_fit(workflow, stages)
    if placed is None:
        print(f"warning: {name} does not fit a 1600 x 1000 window at a readable zoom ({MIN_SCALE}); "
              "split it or make its nodes smaller", file=sys.stderr)
        placed = pack(workflow, stages, 0.3)
    positions, groups = placed
    for node in workflow["nodes"]:
        node["pos"] = positions[node["id"]]
    workflow["groups"] = groups
    # window pixel = (graph position + offset) * scale: the positions above already include the screen margins
    workflow["extra"]["ds"] = {"scale": scale, "offset": [0, 0]}
    return workflow
