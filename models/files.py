"""Finding model files on disk, downloading the missing ones, and saying clearly what is missing.

Downloads go through huggingface_hub (which honours ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``); the MediaPipe
task file, which is not on the hub, through plain HTTP. ``ANIPORTRAIT_OFFLINE=1`` turns downloads off.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterable

from .progress import ProgressFn
from .registry import MODEL_FILES, ModelFile

log = logging.getLogger("aniportrait")

DOWNLOAD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_models.py"


class MissingModelFilesError(FileNotFoundError):
    """Raised when model files are absent and could not (or may not) be downloaded."""

    def __init__(self, missing: list[tuple[ModelFile, Path]], root: Path, reason: str):
        self.missing = missing
        lines = [f"AniPortrait: {len(missing)} model file(s) missing under {root} ({reason}):"]
        for model, path in missing:
            lines.append(f"  - {path}  [{model.name}: {model.purpose}, {model.size}]  from {model.source}")
        names = " ".join(dict.fromkeys(model.name for model, _ in missing))
        lines.append("Put each file at the path shown (the layout of AniPortrait's pretrained_weights/ folder), "
                     "or allow downloads (unset ANIPORTRAIT_OFFLINE / HF_HUB_OFFLINE and connect to the internet) "
                     "and run again, or download them with:")
        lines.append(f"  python {DOWNLOAD_SCRIPT} --models-dir {root} --only {names}")
        super().__init__("\n".join(lines))


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
        failed = []
        for i, (model, path) in enumerate(missing):
            try:
                _download(model, path, root)
            except Exception as exc:  # network, auth, disk: report them all together below
                log.warning("AniPortrait: download of %s failed: %s", path, exc)
                failed.append((model, path))
            if progress:
                progress(i + 1, len(missing))
        if failed:
            raise MissingModelFilesError(failed, root, "download failed; see the log for the reason")
    return {name: root / MODEL_FILES[name].relpath for name in names}


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
