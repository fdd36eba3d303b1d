"""Where file-name inputs may point: the one place that turns a name from a prompt into a path.

A prompt comes from anyone who can reach the server, so a name is never trusted: an input file must lie inside
ComfyUI's input folder (or the output/temp folder its ``[output]``/``[temp]`` annotation names) once ``..`` and
symlinks are resolved, and a model choice must be a plain relative path inside the models folder. Anything else is
refused with one message that does not depend on whether the file exists, so the answers reveal nothing about the
server's disk.

Symlinks inside the models folder are honoured (ComfyUI does the same; administrators link large weights there),
but a choice cannot climb out of the folder by itself.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import folder_paths

from ..aniportrait.cache import file_identity

UPLOAD_HINT = "Upload the file with the node's upload button (or put it into ComfyUI's input folder) and pick it."


def refused_input_message(input_name: str, name: str) -> str:
    return (f"AniPortrait: input '{input_name}': '{name}' is not a file in ComfyUI's input folder (names may not "
            f"leave the folder). {UPLOAD_HINT}")


def input_file(name: str, input_name: str) -> Path:
    """The file an input-file name (``speech.wav``, ``sub/x.npy [output]``...) points to, refused unless it is a
    file inside its folder after resolving ``..`` and symlinks."""
    try:
        relative, annotated_folder = folder_paths.annotated_filepath(name)
        folder = Path(annotated_folder or folder_paths.get_input_directory()).resolve()
        path = (folder / relative).resolve()
        if path != folder and path.is_relative_to(folder) and path.is_file():
            return path
    except (OSError, ValueError, TypeError):  # e.g. a NUL byte, a loop of links: refused like any bad name
        pass
    raise ValueError(refused_input_message(input_name, name))


def input_file_problem(name: str | None, input_name: str) -> bool | str:
    """For ``validate_inputs``: True, or the refusal message. A name arriving through a link (None at validation)
    is checked when the node runs."""
    if name is None:
        return True
    try:
        input_file(name, input_name)
    except ValueError as refused:
        return str(refused)
    return True


def input_file_identity(name: str, input_name: str) -> tuple[str, int, int]:
    """For ``fingerprint_inputs``: changes when the file is replaced under the same name."""
    return file_identity(input_file(name, input_name))


def is_inside_folder(choice: str) -> bool:
    """A model choice is a relative path without ``..`` steps (in POSIX or Windows spelling)."""
    if not isinstance(choice, str) or not choice or "\x00" in choice:
        return False
    windows = PureWindowsPath(choice)
    posix = PurePosixPath(choice.replace("\\", "/"))
    return not (windows.drive or windows.root or posix.is_absolute() or ".." in posix.parts)


def refused_model_message(input_name: str, choice: str) -> str:
    return (f"AniPortrait: input '{input_name}': '{choice}' is not a file in the models folder (model names are "
            "paths inside models/aniportrait, without '..'). Pick a model from the list (press R to refresh it).")


def model_choice(choice: str, input_name: str) -> str:
    """``choice`` if it names a path inside the models folder, else a ValueError."""
    if not is_inside_folder(choice):
        raise ValueError(refused_model_message(input_name, choice))
    return choice


def model_choices_problem(**choices: str | None) -> bool | str:
    """For ``validate_inputs`` of loader nodes: True, or the refusal of the first bad choice."""
    for input_name, choice in choices.items():
        if choice is not None and not is_inside_folder(choice):
            return refused_model_message(input_name, choice)
    return True


def save_location(filename_prefix: str, base: str, input_name: str, width: int = 0,
                  height: int = 0) -> tuple[Path, str, int, str]:
    """Where a node saves under ``filename_prefix`` in the output (or temp) folder ``base``: (folder, file name
    stem, next free counter, subfolder), refused when the prefix leaves the folder, also through a symlink."""
    if not filename_prefix.strip():
        raise ValueError(f"AniPortrait: input '{input_name}' is empty; enter a name such as 'AniPortrait/video'.")
    refusal = (f"AniPortrait: input '{input_name}': '{filename_prefix}' points outside ComfyUI's output folder. Use "
               "a relative prefix such as 'AniPortrait/video' (sub-folders are fine; '..' and absolute paths are not).")
    try:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, base, width, height)
    except OSError as exc:
        raise ValueError(f"AniPortrait: input '{input_name}': cannot create a folder for '{filename_prefix}' in "
                         f"'{base}': {exc}. Check that ComfyUI may write there, or start it with another "
                         "--output-directory.") from exc
    except Exception:  # ComfyUI refuses prefixes that climb out of the folder
        raise ValueError(refusal) from None
    if not Path(folder).resolve().is_relative_to(Path(base).resolve()):
        raise ValueError(refusal)
    return Path(folder), filename, counter, subfolder
