"""A ComfyUI server in its own base directory and process group, with only the packs and model folders given.

    with ComfyServer(comfyui, python, packs=[("MyPack", pack_dir)], model_folders={"aniportrait": models}) as server:
        ComfyClient(server.url).object_info()
    with ComfyServer.from_install(comfy_root, env=OFFLINE_ENV) as server:  # the install of .ci/install_comfyui.sh
        ...
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

from .errors import ComfyHostError, ComfyHostTimeout

# For a server that must never reach the internet (a missing model file is then an error, not a download): the
# variables aniportrait/files.py's downloads_allowed() reads. The caller chooses; the server inherits its environment.
OFFLINE_ENV = {"ANIPORTRAIT_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, comfyui: Path, python: Path, packs: Sequence[tuple[str, Path]] = (),
                 model_folders: Mapping[str, Path] | None = None, base_dir: Path | None = None,
                 ready_timeout: float = 240.0, env: Mapping[str, str] | None = None, cpu: bool = False):
        """``comfyui``: the folder of ComfyUI's main.py; ``python``: the interpreter that runs it; ``packs``: (folder
        name under custom_nodes, pack directory); ``model_folders``: folder name under ``models/`` -> directory to
        link there; ``base_dir``: where ComfyUI keeps its inputs, outputs, user files and log (default: a new
        temporary folder); ``env``: variables set for the server on top of this process's environment (e.g.
        OFFLINE_ENV); ``cpu``: ComfyUI's --cpu (needed where torch has no GPU build)."""
        self.comfyui = Path(comfyui)
        self.python = Path(python)
        self.packs = list(packs)
        self.model_folders = dict(model_folders or {})
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="comfy-base-"))
        self.ready_timeout = ready_timeout
        self.env = dict(env or {})
        self.cpu = cpu
        self.log_path = self.base_dir / "server.log"
        self.port: int | None = None
        self.ready_seconds: float | None = None
        self.startup_log = ""  # everything logged until the server answered (imports of the packs)
        self._process: subprocess.Popen | None = None
        self._log_file = None

    @classmethod
    def from_install(cls, comfy_root: Path, cpu: bool = True, **kwargs) -> "ComfyServer":
        """The install of ``.ci/install_comfyui.sh`` in ``comfy_root`` (``venv/`` and ``ComfyUI/``, a CPU build of
        torch, hence ``cpu``)."""
        root = Path(comfy_root)
        return cls(root / "ComfyUI", root / "venv" / "bin" / "python", cpu=cpu, **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the leader of its process group)."""
        return self._process.pid if self.is_running() else None

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
        return [str(self.python), str(self.comfyui / "main.py"), *(["--cpu"] if self.cpu else []),
                "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch",
                "--base-directory", str(self.base_dir), "--database-url", "sqlite:///:memory:",
                "--disable-api-nodes", "--log-stdout",
                "--preview-method", "latent2rgb"]  # samplers send previews, as in a desktop install

    def start(self) -> "ComfyServer":
        self._prepare_base_dir()
        self.port = free_port()
        self._log_file = open(self.log_path, "w")
        started = time.monotonic()
        try:  # own session: stop() signals the whole process group, and only it
            self._process = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.base_dir, start_new_session=True,
                                             env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"})
        except OSError as error:
            self.stop()
            raise ComfyHostError(f"cannot run ComfyUI with {self.python}: {error}") from error
        while time.monotonic() - started < self.ready_timeout:
            if self._process.poll() is not None:
                self.stop()
                raise ComfyHostError(f"ComfyUI exited with code {self._process.returncode} while starting "
                                     f"(log: {self.log_path}):\n" + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2):
                    self.ready_seconds = time.monotonic() - started
                    self.startup_log = self.log()
                    return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise ComfyHostTimeout(f"ComfyUI did not answer /system_stats within {self.ready_timeout:.0f} s "
                               f"(log: {self.log_path}):\n" + self.log_tail())

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
