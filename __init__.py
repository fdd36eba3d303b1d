"""AniPortrait Kit for ComfyUI: audio-driven portrait animation and face reenactment (AniPortrait, numerically
faithful). ComfyUI imports this file; the library lives in ``aniportrait/`` and imports without ComfyUI."""
from .nodes import AniPortraitExtension

WEB_DIRECTORY = "./web"


async def comfy_entrypoint() -> AniPortraitExtension:
    return AniPortraitExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
