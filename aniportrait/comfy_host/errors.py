"""What the headless ComfyUI host raises: the server would not start or answer, or refused a request."""
from __future__ import annotations


class ComfyHostError(RuntimeError):
    """ComfyUI did not start, could not be reached, or answered a request with an error."""


class ComfyHostTimeout(ComfyHostError, TimeoutError):
    """ComfyUI did not start, or a prompt did not finish, within the time given."""
