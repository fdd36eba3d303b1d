"""Reading checkpoints safely and loading them into modules with errors a user can act on."""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Callable, Mapping

import torch

_SHOWN_KEYS = 8


class CheckpointMismatchError(ValueError):
    """A file does not hold the weights the module expects (wrong file in a slot, or a damaged file)."""


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a pickled state dict (loaded with ``weights_only=True``).

    Every way a file can fail to read ends here, in one message that names the file and what to do; PyTorch's own
    text is cut down to its cause, since it goes on to suggest loading with ``weights_only=False``, which would run
    whatever code the file carries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AniPortrait: the weights file {path} is gone (removed or renamed since it was "
                                "selected). Put it back, or select another file (press R to refresh the lists), "
                                "and run again.")
    try:
        data = _read_weights(path)
    except Exception as exc:  # truncated, corrupt, refused by the safe unpickler, or not a weights file at all
        refused = _refused_global(exc)
        if refused:
            raise CheckpointMismatchError(
                f"AniPortrait: {path} was not loaded: besides tensors it holds Python objects or code ({refused}), "
                "and the pack loads weights only. Use the original file (download it again) or a .safetensors "
                "version of it.") from None
        raise CheckpointMismatchError(
            f"AniPortrait: {path} could not be read as a weights file; it is damaged, incomplete (an interrupted "
            f"download?) or not a checkpoint ({_first_sentence(exc)}). Delete it and run again to download it "
            "afresh (default files), or download it again from its source.") from None
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointMismatchError(f"AniPortrait: {path} does not contain a state dict of tensors. Check that "
                                      "the right file is selected in this slot, or download it again.")
    return dict(data)


def _read_weights(path: Path) -> object:
    if path.suffix in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # old (non-zip) pickles cannot be memory-mapped
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _refused_global(exc: Exception) -> str | None:
    """What the safe unpickler refused to import (e.g. "GLOBAL builtins.eval"), None for other failures."""
    match = re.search(r"Unsupported global: (\S+(?: \S+)?) was not an allowed global", str(exc))
    return f"it imports {match.group(1)}" if isinstance(exc, pickle.UnpicklingError) and match else None


def _first_sentence(exc: Exception) -> str:
    if isinstance(exc, pickle.UnpicklingError):  # the rest of PyTorch's text is advice to unpickle unsafely
        return "not a PyTorch weights pickle"
    text = str(exc).strip().split("\n")[0]
    text = re.split(r"(?<=[a-z])\. ", text)[0][:200]
    return f"{type(exc).__name__}: {text}" if text and "weights_only" not in text else type(exc).__name__


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


def load_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path | str,
                 expected: str, may_be_missing: Callable[[str], bool] = lambda key: False,
                 may_be_extra: Callable[[str], bool] = lambda key: False) -> None:
    """Load ``state_dict`` strictly into ``module``.

    ``may_be_missing`` / ``may_be_extra`` name the keys a released file legitimately lacks or carries on top.
    Any other missing or unexpected key, or any shape mismatch, raises CheckpointMismatchError naming the file,
    what was expected there, and the offending keys.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not may_be_missing(k)]
    unexpected = [k for k in state_dict if k not in own and not may_be_extra(k)]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
                   for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_describe(unexpected)}")
        if wrong_shape:
            problems.append(f"shape mismatches (file != model): {_describe(wrong_shape)}")
        raise CheckpointMismatchError(
            f"{source} does not look like {expected}: " + "; ".join(problems)
            + ". Check that the right file is selected in this slot (and the matching config), or download it again.")
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)


def checkpoint_shapes(state: Mapping[str, torch.Tensor], keys: tuple[str, ...], source: Path | str,
                      expected: str) -> list[torch.Size]:
    """Shapes of the tensors a model's widths are read from; a file lacking them is the wrong file."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointMismatchError(f"{source} does not look like {expected}: it has no {', '.join(missing)}. "
                                      "Check that the right file is selected in this slot.")
    return [state[key].shape for key in keys]


def build_uninitialised(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` without the cost of random initialisation (seconds for large models).

    The module is constructed on the meta device and then given uninitialised CPU storage, so every parameter
    and persistent buffer must afterwards be filled by ``load_weights`` (which fails on any missing key).
    Non-persistent buffers are NOT in a state dict: the caller must set them again.
    """
    with torch.device("meta"):
        module = build()
    return module.to_empty(device="cpu")


def device_and_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a loaded module's weights are (all of them share one device and dtype): where its inputs must go."""
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype
