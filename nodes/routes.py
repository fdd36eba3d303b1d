"""HTTP routes of the pack (used by the web extension and the tests).

Anyone who can reach the server can call them, so they name files only relative to the models folder and never
show where the server keeps anything.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..models.cache import MODEL_CACHE
from ..models.files import missing_files
from ..models.registry import MODEL_FILES
from .common import FOLDER_NAME, models_dir

MODELS_FOLDER_LABEL = f"models/{FOLDER_NAME}"


def _describe_key(key) -> str:
    """A cache key as words, with every path cut to its file name."""
    if isinstance(key, (tuple, list)):
        return " ".join(_describe_key(part) for part in key)
    text = str(key)
    return Path(text).name if Path(text).is_absolute() else text


async def model_status(request: web.Request) -> web.Response:
    """Which models are loaded in the shared cache and which files are missing from the models folder."""
    root = models_dir()
    # one missing file per model is enough for the web UI, which counts models; a node's error lists every file
    missing = {m.name: p.relative_to(root).as_posix() for m, p in missing_files(MODEL_FILES, root)}
    return web.json_response({
        "models_dir": MODELS_FOLDER_LABEL,
        "cached": [_describe_key(k) for k in MODEL_CACHE.keys()],
        "missing": missing,
    })


def register() -> None:
    from server import PromptServer

    PromptServer.instance.routes.get("/aniportrait/models")(model_status)
