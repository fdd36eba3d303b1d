"""A models folder for tests: links to the tiny golden checkpoints plus the real MediaPipe task file."""
from __future__ import annotations

from pathlib import Path

from models.registry import MODEL_FILES


def build_models_dir(target: Path, golden: Path, assets: Path) -> Path:
    """``target`` with a link to every entry of ``golden/tiny`` (already in the layout of AniPortrait's
    pretrained_weights/) and to ``assets/<face landmarker task>``. Returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    landmarker = assets / MODEL_FILES["face_landmarker"].relpath
    sources = sorted((golden / "tiny").iterdir()) + [landmarker]
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: the tests need ../shared (set ANIPORTRAIT_SHARED)")
        (target / source.name).symlink_to(source.resolve(), target_is_directory=source.is_dir())
    return target
