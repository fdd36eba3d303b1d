"""ComfyUI nodes of the pack: thin adapters over the library in ``aniportrait/``. Each module lists its working
nodes in NODES."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import audio, face, geometry, interpolation, motion, output, reenactment, routes, video
from .common import register_model_folder
from .inputs import check_numbers_first
from .runtime import install_memory_hooks
from .ui_warnings import install_warning_forwarding


def all_nodes() -> list[type[io.ComfyNode]]:
    """Every node of the pack; each checks its numeric inputs against its schema's limits before it runs."""
    modules = (audio, face, geometry, video, interpolation, reenactment, output, motion)
    return [check_numbers_first(node) for module in modules for node in module.NODES]


_set_up = False


def set_up_once() -> None:
    """What the pack adds to the running ComfyUI besides its nodes: the models folder, the hooks into its memory
    manager, the HTTP routes and the forwarding of warnings to the browser. Done when ComfyUI loads the extension,
    not when the package is imported."""
    global _set_up
    if _set_up:
        return
    register_model_folder()
    install_memory_hooks()
    routes.register()
    install_warning_forwarding()
    _set_up = True


class AniPortraitExtension(ComfyExtension):
    async def on_load(self) -> None:
        set_up_once()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        set_up_once()  # ComfyUI 0.3.75 never calls on_load; the node dropdowns need the models folder registered
        return all_nodes()
