"""A real ComfyUI server for tests, isolated in its own base directory and process group.

    with ComfyServer(comfy_root, packs=[repo], model_folders={"aniportrait": models}) as server:
        ComfyClient(server.url).object_info()

``comfy_root`` is what ``.ci/install_comfyui.sh`` creates: ``venv/`` and ``ComfyUI/``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

# The server must never reach the internet: a missing model file is an error, not a download.
OFFLINE_ENV = {"ANIPORTRAIT_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, comfy_root: Path, packs: Sequence[tuple[str, Path]] = (),
                 model_folders: Mapping[str, Path] | None = None, base_dir: Path | None = None,
                 ready_timeout: float = 240.0, env: Mapping[str, str] | None = None):
        """``packs``: (folder name under custom_nodes, pack directory); ``model_folders``: folder name under
        ``models/`` -> directory to link there; ``env``: variables set for the server on top of (or instead of)
        the offline ones."""
        self.env = {**OFFLINE_ENV, **(env or {})}
        self.comfy_root = Path(comfy_root)
        self.packs = list(packs)
        self.model_folders = dict(model_folders or {})
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="comfy-base-"))
        self.ready_timeout = ready_timeout
        self.log_path = self.base_dir / "server.log"
        self.port: int | None = None
        self.ready_seconds: float | None = None
        self.startup_log = ""  # everything logged until the server answered (imports of the packs)
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def _prepare_base_dir(self) -> None:
        for sub in ("custom_nodes", "input", "output", "temp", "models", "user/default"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        for name, pack in self.packs:
            _link(self.base_dir / "custom_nodes" / name, Path(pack).resolve())
        for name, folder in self.model_folders.items():
            _link(self.base_dir / "models" / name, Path(folder).resolve())
        settings = self.base_dir / "user" / "default" / "comfy.settings.json"
        if not settings.exists():  # the web UI would open its first-run templates dialog over the canvas
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    def command(self) -> list[str]:
        return [str(self.comfy_root / "venv" / "bin" / "python"), str(self.comfy_root / "ComfyUI" / "main.py"),
                "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
                "--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:",
                "--disable-api-nodes", "--log-stdout",
                "--preview-method", "latent2rgb"]  # samplers send previews, as in a desktop install

    def start(self) -> "ComfyServer":
        self._prepare_base_dir()
        self.port = free_port()
        self._log_file = open(self.log_path, "w")
        started = time.monotonic()
        # own session: stop() signals the whole process group, and only it
        self._process = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.base_dir, start_new_session=True,
                                         env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"})
        while time.monotonic() - started < self.ready_timeout:
            if self._process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self._process.returncode} while starting:\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2):
                    self.ready_seconds = time.monotonic() - started
                    self.startup_log = self.log()
                    return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer /system_stats within {self.ready_timeout:.0f} s:\n"
                           + self.log_tail())

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self.is_running():
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def log_size(self) -> int:
        """A mark for ``log(since=...)``: what the server logs from now on."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log(self, since: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target:
            return
        raise FileExistsError(f"{link} already exists and is not a link to {target}")
    link.symlink_to(target, target_is_directory=target.is_dir())
