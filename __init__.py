"""AniPortrait Kit for ComfyUI: audio-driven portrait animation and face reenactment (AniPortrait, numerically
faithful). ComfyUI imports this file; the model code lives in ``models/`` and imports without ComfyUI."""
from .nodes import AniPortraitExtension
from .nodes.common import register_model_folder
from .nodes import routes
from .nodes.runtime import install_memory_hooks
from .nodes.ui_warnings import install_warning_forwarding

WEB_DIRECTORY = "./web"

register_model_folder()
install_memory_hooks()
routes.register()
install_warning_forwarding()


async def comfy_entrypoint() -> AniPortraitExtension:
    return AniPortraitExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
