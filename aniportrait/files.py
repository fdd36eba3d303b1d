"""Finding model files on disk, downloading the missing ones, and saying clearly what is missing.

Downloads go through huggingface_hub (which honours ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``); the MediaPipe
task file, which is not on the hub, through plain HTTP. ``ANIPORTRAIT_OFFLINE=1`` turns downloads off.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable

from .progress import ProgressFn
from .registry import MODEL_FILES, ModelFile

log = logging.getLogger("aniportrait")

DOWNLOAD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_models.py"
HUB_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT = 3.0  # seconds for the reachability probe before downloading


class MissingModelFilesError(FileNotFoundError):
    """Raised when model files are absent and could not (or may not) be downloaded."""

    def __init__(self, missing: list[tuple[ModelFile, Path]], root: Path, reason: str):
        self.missing = missing
        lines = [f"AniPortrait: {len(missing)} model file(s) missing under {root} ({reason}):"]
        for model, path in missing:
            lines.append(f"  - {path}  [{model.name}: {model.purpose}, {model.size}]  from {model.source}")
        lines.append("Put each file at the path shown (the layout of AniPortrait's pretrained_weights/ folder), "
                     "or allow downloads (unset ANIPORTRAIT_OFFLINE / HF_HUB_OFFLINE and connect to the internet) "
                     "and run again, or download them with:")
        lines.append("  " + download_command(root, list(dict.fromkeys(model.name for model, _ in missing))))
        super().__init__("\n".join(lines))


def download_command(root: Path, names: list[str], python: str | Path = sys.executable) -> str:
    """The download command for a terminal, working when pasted: ``python`` (by default the one running now:
    ComfyUI's, which has huggingface_hub) and the script, by their full paths."""
    args = [str(python), str(DOWNLOAD_SCRIPT), "--models-dir", str(root), "--only", *names]
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


def download_hosts(models: Iterable[ModelFile]) -> list[tuple[str, int]]:
    """(host, port) a download of ``models`` connects to first: the proxy when one is set, else the source."""
    proxies = urllib.request.getproxies()
    hosts = []
    for model in models:
        url = urllib.parse.urlsplit(model.url or os.environ.get("HF_ENDPOINT", HUB_ENDPOINT))
        if url.scheme in proxies and not urllib.request.proxy_bypass(url.hostname or ""):
            url = urllib.parse.urlsplit(proxies[url.scheme])
        address = (url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
        if address not in hosts:
            hosts.append(address)
    return hosts


def connection_problem(models: Iterable[ModelFile], timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why a download of ``models`` cannot start (no route, no name resolution, refused), found with one short
    connection attempt per host instead of the libraries' minute of retries; None when every host answers."""
    for host, port in download_hosts(models):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            return f"no connection to {host}:{port} ({reason})"
    return None


def downloads_allowed() -> bool:
    return not any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes")
                   for var in ("ANIPORTRAIT_OFFLINE", "HF_HUB_OFFLINE"))


def required_paths(model: ModelFile, root: Path) -> list[Path]:
    """The files that must exist for ``model`` to be usable."""
    base = root / model.relpath
    return [base / part for part in model.parts] if model.is_folder else [base]


def with_safetensors_variant(path: Path) -> Path | None:
    """``path`` if it exists, else its ``.safetensors`` twin if that exists (accepted for every weight file)."""
    if path.is_file():
        return path
    twin = path.with_suffix(".safetensors")
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt") and twin.is_file():
        return twin
    if path.name == "pytorch_model.bin" and (path.parent / "model.safetensors").is_file():
        return path.parent / "model.safetensors"
    return None


def missing_files(names: Iterable[str], root: Path) -> list[tuple[ModelFile, Path]]:
    missing = []
    for name in names:
        model = MODEL_FILES[name]
        missing += [(model, p) for p in required_paths(model, root) if with_safetensors_variant(p) is None]
    return missing


def ensure_models(names: Iterable[str], root: Path | str, allow_download: bool | None = None,
                  progress: ProgressFn | None = None) -> dict[str, Path]:
    """Make sure every named model is on disk (downloading what is missing when allowed).

    Returns ``{name: path}`` (a file, or the folder of a folder model). Raises MissingModelFilesError naming
    every missing file, where it goes and where it comes from.
    """
    root = Path(root)
    names = list(dict.fromkeys(names))
    missing = missing_files(names, root)
    if missing:
        if allow_download is None:
            allow_download = downloads_allowed()
        if not allow_download:
            raise MissingModelFilesError(missing, root, "downloads are turned off")
        offline = connection_problem(model for model, _ in missing)
        if offline:
            log.warning("AniPortrait: cannot download %d model file(s): %s.", len(missing), offline)
            raise MissingModelFilesError(missing, root, f"cannot download: {offline}; connect to the internet "
                                                        "or download them elsewhere")
        failed, reasons = [], []
        for i, (model, path) in enumerate(missing):
            try:
                _download(model, path, root)
            except Exception as exc:  # network, auth, disk: report them all together below
                log.warning("AniPortrait: download of %s failed: %s", path, exc)
                failed.append((model, path))
                reasons.append(_short_reason(exc))
            if progress:
                progress(i + 1, len(missing))
        if failed:
            raise MissingModelFilesError(failed, root, "download failed: " + "; ".join(dict.fromkeys(reasons)))
    return {name: root / MODEL_FILES[name].relpath for name in names}


def _short_reason(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _download(model: ModelFile, path: Path, root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.url:
        log.info("AniPortrait: downloading %s -> %s", model.url, path)
        _download_url(model.url, path)
        return
    from huggingface_hub import hf_hub_download

    in_repo = path.relative_to(root / model.relpath).as_posix() if model.is_folder else path.name
    if model.hf_subfolder:
        in_repo = f"{model.hf_subfolder}/{in_repo}"
    # local_dir is chosen so that the repository path lands exactly on ``path``
    local_dir = path
    for _ in in_repo.split("/"):
        local_dir = local_dir.parent
    log.info("AniPortrait: downloading %s/%s -> %s", model.hf_repo, in_repo, path)
    hf_hub_download(model.hf_repo, in_repo, local_dir=str(local_dir))


def _download_url(url: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(response, out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
