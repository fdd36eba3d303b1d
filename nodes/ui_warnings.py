"""Warnings reach the user in the browser, not only the server log.

Every WARNING of the pack's "aniportrait" logger that is raised while one of ComfyUI's nodes runs (a frame without
a face, a size rounded to a multiple of 8, a face picked among several, a failed download...) is also sent to the
client that queued the prompt as an ``aniportrait.warning`` message; web/aniportrait.js shows it as a toast. The
library in ``aniportrait/`` keeps using plain logging and knows nothing of ComfyUI.
"""
from __future__ import annotations

import logging

from comfy_execution.utils import get_executing_context

WARNING_EVENT = "aniportrait.warning"
LOGGER_NAME = "aniportrait"


class _SendToClient(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        context = get_executing_context()
        if context is None:  # not inside a node (start-up, routes): the log is the place
            return
        try:
            from server import PromptServer

            server = PromptServer.instance
            server.send_sync(WARNING_EVENT, {"message": record.getMessage(), "node": context.node_id,
                                             "node_type": _node_type(server, context.prompt_id, context.node_id),
                                             "prompt_id": context.prompt_id}, server.client_id)
        except Exception:  # a warning must never break the node that raised it
            self.handleError(record)


def _node_type(server, prompt_id: str, node_id: str) -> str | None:
    """The class of the node in the running prompt (the page may show another graph than the one that runs)."""
    for item in list(server.prompt_queue.currently_running.values()):
        if item[1] == prompt_id:
            return (item[2].get(node_id) or {}).get("class_type")
    return None


def install_warning_forwarding() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, _SendToClient) for handler in logger.handlers):
        logger.addHandler(_SendToClient(logging.WARNING))
