"""HTTP routes of the pack (used by the web extension and the tests).

Anyone who can reach the server can call them, so they name files only relative to the models folder and never
show where the server keeps anything.
"""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from ..aniportrait.cache import MODEL_CACHE
from ..aniportrait.files import missing_files
from ..aniportrait.registry import MODEL_FILES
from .common import FOLDER_NAME, models_dir
from .search import SEARCH_ALIASES

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


WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflows"


async def workflow_descriptions(request: web.Request) -> web.Response:
    """The one-line description of each ready-made workflow (the web extension shows them in the template browser)."""
    descriptions = {}
    for path in sorted(WORKFLOW_DIR.glob("*.json")):
        try:
            descriptions[path.stem] = json.loads(path.read_text(encoding="utf-8"))["extra"]["description"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a workflow without one keeps the browser's own text
    return web.json_response(descriptions)


async def search_aliases(request: web.Request) -> web.Response:
    """Other words each node is found by (the web extension adds them to the node search where ComfyUI does not)."""
    return web.json_response(SEARCH_ALIASES)


def register() -> None:
    from server import PromptServer

    PromptServer.instance.routes.get("/aniportrait/models")(model_status)
    PromptServer.instance.routes.get("/aniportrait/workflows")(workflow_descriptions)
    PromptServer.instance.routes.get("/aniportrait/search_aliases")(search_aliases)
