"""A models folder for tests: links to the tiny golden checkpoints plus the real MediaPipe task file."""
from __future__ import annotations

from pathlib import Path

from aniportrait.registry import MODEL_FILES

from .film_stand_in import write_film_stand_in


def build_models_dir(target: Path, golden: Path, assets: Path, film: Path | None = None) -> Path:
    """``target`` with a link to every entry of ``golden/tiny`` (already in the layout of AniPortrait's
    pretrained_weights/) and to ``assets/<face landmarker task>``. FILM goes in under its released name: a link to
    ``film`` (a TorchScript stand-in, e.g. golden-wide's ``tiny/film_tiny.pt``) when that exists, else a generated
    cross-fade stand-in (golden/tiny has no FILM file). Returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    landmarker = assets / MODEL_FILES["face_landmarker"].relpath
    sources = sorted((golden / "tiny").iterdir()) + [landmarker]
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: the tests need ../shared (set ANIPORTRAIT_SHARED)")
        (target / source.name).symlink_to(source.resolve(), target_is_directory=source.is_dir())
    film_target = target / MODEL_FILES["film"].relpath
    if not film_target.exists():
        if film is not None and film.is_file():
            film_target.symlink_to(film.resolve())
        else:
            write_film_stand_in(film_target)
    return target
