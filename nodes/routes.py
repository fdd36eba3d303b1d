"""HTTP routes of the pack (used by the web extension and the tests)."""
from __future__ import annotations

from aiohttp import web

from ..models.cache import MODEL_CACHE
from ..models.files import missing_files
from ..models.registry import MODEL_FILES
from .common import models_dir


def _describe_key(key) -> str:
    return " ".join(str(part) for part in key) if isinstance(key, tuple) else str(key)


async def model_status(request: web.Request) -> web.Response:
    """Which models are loaded in the shared cache and which files are missing from the models folder."""
    root = models_dir()
    # one missing file per model is enough for the web UI, which counts models; a node's error lists every file
    missing = {m.name: str(p) for m, p in missing_files(MODEL_FILES, root)}
    return web.json_response({
        "models_dir": str(root),
        "cached": [_describe_key(k) for k in MODEL_CACHE.keys()],
        "missing": missing,
    })


def register() -> None:
    from server import PromptServer

    PromptServer.instance.routes.get("/aniportrait/models")(model_status)
