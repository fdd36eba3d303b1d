"""HTTP routes of the pack (used by the web extension and the tests)."""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from ..models.cache import MODEL_CACHE
from ..models.files import missing_files
from ..models.registry import MODEL_FILES
from .common import models_dir
from .search import SEARCH_ALIASES


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
