"""HTTP + websocket client for ComfyUI's API, as the web UI uses it (standard library; ``run`` also needs
websocket-client)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ComfyHostError, ComfyHostTimeout

FINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


@dataclass
class PromptRun:
    """What one queued prompt produced: the POST /prompt answer, the websocket events, the history entry."""

    http_status: int
    response: dict
    events: list[dict] = field(default_factory=list)
    history: dict | None = None
    previews: int = 0  # preview images received while it ran (binary websocket messages)

    @property
    def prompt_id(self) -> str | None:
        return self.response.get("prompt_id")

    @property
    def status(self) -> str | None:
        """'success' or 'error' (history), None when the prompt was never queued."""
        return self.history["status"]["status_str"] if self.history else None

    def events_of(self, kind: str) -> list[dict]:
        return [event["data"] for event in self.events if event.get("type") == kind]

    @property
    def error(self) -> dict | None:
        """The ``execution_error`` data (node_id, node_type, exception_type, exception_message, traceback...)."""
        errors = self.events_of("execution_error")
        return errors[0] if errors else None

    @property
    def executed_nodes(self) -> set[str]:
        """Nodes that really ran (not served from ComfyUI's output cache)."""
        return {data["node"] for data in self.events_of("executing") if data.get("node") is not None}

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {}) if self.history else {}

    def describe(self) -> str:
        """A short account of what went wrong (or how it ended), for error messages."""
        if self.http_status != 200:
            return f"POST /prompt -> HTTP {self.http_status}: {_shorten(self.response)}"
        if self.error:
            return (f"{self.error.get('node_type')} (node {self.error.get('node_id')}) raised "
                    f"{self.error.get('exception_type')}: {self.error.get('exception_message')}\n"
                    + "".join(self.error.get("traceback") or []))
        finals = [event["type"] for event in self.events if event.get("type") in FINAL_EVENTS]
        return f"status {self.status}, final events {finals}"


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())

    # plain HTTP

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded JSON or text); HTTP errors are returned, not raised. Raises ComfyHostError when the
        server cannot be reached."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())
        except OSError as error:  # refused, reset, timed out
            reason = getattr(error, "reason", None) or error
            raise ComfyHostError(f"{method} {self.base_url}{path}: ComfyUI did not answer ({reason}); "
                                 "is the server still running?") from error

    def get(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise ComfyHostError(f"GET {path}: ComfyUI answered HTTP {status}: {_shorten(data)}")
        return data

    def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def object_info(self, node_class: str | None = None) -> dict:
        info = self.get("/object_info" + (f"/{node_class}" if node_class else ""))
        return info[node_class] if node_class else info

    def upload(self, source: Path | bytes, name: str | None = None, overwrite: bool = True) -> str:
        """POST /upload/image (used for audio and video files too); returns the name to put in a prompt."""
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else source
        name = name or Path(source).name
        fields = {"overwrite": "true" if overwrite else "false", "type": "input"}
        body, content_type = _multipart(fields, "image", name, data)
        status, answer = self.request("POST", "/upload/image", body, {"Content-Type": content_type})
        if status != 200:
            raise ComfyHostError(f"upload of {name}: ComfyUI answered HTTP {status}: {_shorten(answer)}")
        return answer["name"] if not answer.get("subfolder") else f"{answer['subfolder']}/{answer['name']}"

    def free(self, unload_models: bool = True, free_memory: bool = True) -> int:
        status, _ = self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})
        return status

    def interrupt(self) -> int:
        status, _ = self.post_json("/interrupt", {})
        return status

    # prompts

    def queue_prompt(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt: 200 {'prompt_id', 'number', 'node_errors'} or 400 {'error', 'node_errors'}."""
        return self.post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def history(self, prompt_id: str) -> dict | None:
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def wait_history(self, prompt_id: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry and entry.get("status") and (entry["status"]["completed"]
                                                  or entry["status"]["status_str"] == "error"):
                return entry
            time.sleep(0.2)
        raise ComfyHostTimeout(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict, timeout: float = 300.0,
            on_event: Callable[[dict], None] | None = None) -> PromptRun:
        """Queue ``prompt`` and collect its websocket events until it finishes (the socket is opened first so no
        event is missed). ``on_event`` sees each JSON event as it arrives (e.g. to interrupt at a given node)."""
        try:
            import websocket  # websocket-client: not a requirement of the pack, only of this method
        except ImportError as error:
            raise ComfyHostError("ComfyClient.run needs websocket-client (pip install websocket-client)") from error

        ws_url = self.base_url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        socket = websocket.create_connection(ws_url, timeout=5)
        try:
            status, response = self.queue_prompt(prompt)
            result = PromptRun(status, response)
            if status != 200:
                return result
            self._collect(socket, result, timeout, on_event)
        finally:
            socket.close()
        result.history = self.wait_history(result.prompt_id, timeout=60)
        return result

    def _collect(self, socket, result: PromptRun, timeout: float,
                 on_event: Callable[[dict], None] | None) -> None:
        import websocket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = socket.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException as error:
                raise ComfyHostError(f"ComfyUI closed the websocket while prompt {result.prompt_id} ran; "
                                     "did the server stop?") from error
            if isinstance(message, bytes):  # preview images
                result.previews += 1
                continue
            event = json.loads(message)
            data = event.get("data") or {}
            if data.get("prompt_id") not in (None, result.prompt_id):
                continue
            result.events.append(event)
            if on_event:
                on_event(event)
            if event.get("type") in FINAL_EVENTS and data.get("prompt_id") == result.prompt_id:
                return
        raise ComfyHostTimeout(f"prompt {result.prompt_id} did not finish within {timeout:.0f} s; "
                           f"last events: {result.events[-5:]}")


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shorten(answer: Any, limit: int = 3000) -> str:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return text if len(text) <= limit else text[:limit] + " ..."


def _multipart(fields: dict[str, str], file_field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
