"""Other words artists search for, per node (``search_aliases`` of the node schema).

ComfyUI reads ``search_aliases`` from the node schema and the frontend searches them since early 2026 (ComfyUI
#12010, frontend #8223). ComfyUI 0.3.75's schema has no such field: there the web extension (web/apk_front_door.js)
adds these words to the node search, from GET /aniportrait/search_aliases.
"""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

SEARCH_ALIASES = {
    "APK_Audio2Mesh": ["lip sync", "talking head", "audio to video", "speech to face"],
    "APK_Audio2Pose": ["talking head", "head motion", "audio to video"],
    "APK_Lmk2VideoSampler": ["talking head", "audio to video", "lip sync", "portrait animation"],
    "APK_VideoCombine": ["audio to video", "save video", "mux audio"],
    "APK_RetargetFace": ["face reenactment", "talking head", "face swap motion"],
    "APK_Lmk2VideoSamplerToFile": ["long video", "talking head", "save video", "audio to video"],
    "APK_FILMInterpolate": ["frame interpolation", "FILM", "fps", "speed up"],
    "APK_MotionPreview": ["preview", "lip sync", "motion preview"],
    "APK_PasteBack": ["paste back", "full resolution", "uncrop"],
    "APK_MixMotion": ["mix motion", "face reenactment", "driving video"],
}
SCHEMA_TAKES_ALIASES = "search_aliases" in {field.name for field in dataclasses.fields(io.Schema)}


def search_aliases(node_id: str) -> dict:
    """Keyword arguments for ``io.Schema``: the node's aliases where this ComfyUI knows the field."""
    return {"search_aliases": SEARCH_ALIASES[node_id]} if SCHEMA_TAKES_ALIASES else {}
