"""ComfyUI nodes of the pack: thin adapters over ``models/``. Each module lists its working nodes in NODES."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import audio, interpolation, landmarks, motion, output, pose_render, reenactment, video
from .inputs import check_numbers_first


def all_nodes() -> list[type[io.ComfyNode]]:
    """Every node of the pack; each checks its numeric inputs against its schema's limits before it runs."""
    modules = (audio, landmarks, pose_render, video, interpolation, reenactment, output, motion)
    return [check_numbers_first(node) for module in modules for node in module.NODES]


class AniPortraitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()
