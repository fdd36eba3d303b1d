"""Python side of ``ui_driver.cjs``: the real ComfyUI web UI in headless Chromium, one JSON request at a time.

    with UiBrowser(server_url) as ui:
        ui.eval("return Object.keys(LiteGraph.registered_node_types).length")
        ui.screenshot(Path("tests/artifacts/ui.png"))

Needs Debian's chromium (``apt-get install -y chromium``) and playwright-core
(``npm install --no-save --prefix tests/ui playwright-core@1``); ``missing_requirements()`` says what is absent.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

UI_DIR = Path(__file__).resolve().parent
DRIVER = UI_DIR / "ui_driver.cjs"
NODE_MODULES = UI_DIR / "node_modules"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def missing_requirements() -> list[str]:
    missing = []
    if not shutil.which("node"):
        missing.append("node (apt-get install -y nodejs)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if not (NODE_MODULES / "playwright-core").is_dir():
        missing.append("playwright-core (npm install --no-save --prefix tests/ui playwright-core@1)")
    return missing


class UiError(RuntimeError):
    """The page raised, or the driver could not do what was asked."""


class UiBrowser:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.startup_logs: dict[str, list[str]] = {}  # console and blocked requests while the page loaded
        self._process: subprocess.Popen | None = None

    def start(self) -> "UiBrowser":
        self._process = subprocess.Popen(
            ["node", str(DRIVER), self.base_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            start_new_session=True)
        self._answer()  # "ready" once the app has registered its node types
        self.startup_logs = self.logs()
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> "UiBrowser":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _answer(self) -> Any:
        line = self._process.stdout.readline()
        if not line:
            raise UiError(f"the UI driver exited (code {self._process.poll()})")
        answer = json.loads(line)
        if not answer["ok"]:
            raise UiError(answer["error"])
        return answer["value"]

    def request(self, op: str, **fields: Any) -> Any:
        self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self._process.stdin.flush()
        return self._answer()

    def eval(self, body: str, arg: Any = None) -> Any:
        """Run ``body`` as an async function in the page (``arg`` is its argument); returns its JSON result."""
        return self.request("eval", body=body, arg=arg)

    def screenshot(self, path: Path, clip: dict | None = None) -> Path:
        """The window (or its ``clip`` rectangle: x, y, width, height in pixels) as a PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.request("screenshot", path=str(path), clip=clip)
        return path

    def reload(self) -> None:
        self.request("reload")

    def set_viewport(self, width: int, height: int) -> None:
        """Resize the window (the page lays itself out again)."""
        self.request("viewport", width=width, height=height)

    def logs(self) -> dict[str, list[str]]:
        """Console lines and blocked (non-loopback) requests since the last call."""
        return self.request("logs")
