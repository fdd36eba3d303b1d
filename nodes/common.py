"""The thin layer between ComfyUI and the pack's plain-torch library: model folder, cache, devices, progress."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping

import numpy as np
import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths

from ..aniportrait import slots
from ..aniportrait.cache import MODEL_CACHE
from ..aniportrait.files import ensure_models
from ..aniportrait.registry import MODEL_FILES, MODELS_FOLDER_NAME as FOLDER_NAME
from .paths import model_choice
from .runtime import mark_in_use

log = logging.getLogger("aniportrait")

WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".task", ".json", ".npy"}
PRECISIONS = ["auto", "fp16", "bf16", "fp32"]


def register_model_folder() -> None:
    """``ComfyUI/models/aniportrait`` (and any extra_model_paths entry for it) appears in dropdowns."""
    folder_paths.add_model_folder_path(FOLDER_NAME, os.path.join(folder_paths.models_dir, FOLDER_NAME),
                                       is_default=True)
    folder_paths.folder_names_and_paths[FOLDER_NAME][1].update(WEIGHT_SUFFIXES)


def models_dir() -> Path:
    return Path(folder_paths.get_folder_paths(FOLDER_NAME)[0])


def model_choices(registry_name: str, suffixes: Iterable[str]) -> list[str]:
    """Dropdown entries for one model slot: the registry's default name first (downloaded on first use if
    absent), then the other files in the models folder with a matching suffix that fit the slot (aniportrait/slots.py:
    the tensor names of a checkpoint, the class in a config)."""
    default = MODEL_FILES[registry_name].relpath
    suffixes = tuple(suffixes)
    files = [f for f in folder_paths.get_filename_list(FOLDER_NAME)
             if f.endswith(suffixes) and f != default and _fits_slot(registry_name, f)]
    return [default] + sorted(files)


def _fits_slot(registry_name: str, choice: str) -> bool:
    path = folder_paths.get_full_path(FOLDER_NAME, choice)
    if path is None:
        return False
    if slots.has_signature(registry_name):
        return slots.checkpoint_fits(registry_name, Path(path))
    if registry_name in slots.CONFIG_CLASSES:
        return slots.config_fits(registry_name, Path(path))
    return True


def folder_choices(registry_name: str) -> list[str]:
    """Dropdown entries for a folder model (e.g. wav2vec2-base-960h): the default, then sub-folders whose
    config.json names the slot's network."""
    default = MODEL_FILES[registry_name].relpath
    found = {str(Path(f).parent) for f in folder_paths.get_filename_list(FOLDER_NAME)
             if f.endswith("config.json") and str(Path(f).parent) not in (".", default)
             and _fits_slot(registry_name, f)}
    return [default] + sorted(found)


def resolve_models(choices: Mapping[str, str]) -> dict[str, Path]:
    """Paths of the models selected in dropdowns (``{registry name: choice}``).

    Registry defaults that are missing are downloaded together (unless ANIPORTRAIT_OFFLINE / HF_HUB_OFFLINE say
    otherwise), so one error lists every missing file of the node; any other choice must exist.
    """
    for name, choice in choices.items():
        model_choice(choice, name)  # nothing outside the models folder is ever looked at
    defaults = [name for name, choice in choices.items() if choice == MODEL_FILES[name].relpath]
    paths = ensure_models(defaults, models_dir()) if defaults else {}
    for name, choice in choices.items():
        if name not in paths:
            paths[name] = _existing_model(choice)
    return paths


def resolve_model(registry_name: str, choice: str) -> Path:
    return resolve_models({registry_name: choice})[registry_name]


def _existing_model(choice: str) -> Path:
    for base in folder_paths.get_folder_paths(FOLDER_NAME):
        candidate = Path(base) / choice
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"AniPortrait: the selected model '{choice}' is not in {models_dir()}. "
                            "Refresh the page (R) to update the list, or pick another file.")


def torch_device() -> torch.device:
    return mm.get_torch_device()


def resolve_dtype(precision: str, device: torch.device | None = None) -> torch.dtype:
    """``auto`` follows ComfyUI for the device (and its --force-fp16/--force-fp32...): fp16 where it would use fp16
    (what AniPortrait was run with), else bf16 where it would use that, else fp32 (the CPU)."""
    device = device or torch_device()
    if precision == "auto":
        if mm.should_use_fp16(device):
            return torch.float16
        return torch.bfloat16 if mm.should_use_bf16(device) else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


ModelBuilder = Callable[[], torch.nn.Module]


def cached_models(entries: Mapping[str, tuple[Hashable, ModelBuilder]],
                  memory_required: int = 0) -> dict[str, torch.nn.Module]:
    """Models from the shared cache (``{name: (cache key, build)}``), put on the compute device together.

    ``build`` makes a model on the CPU. The cache keeps it wrapped in a ModelPatcher so ComfyUI's memory manager
    accounts for it and can offload it when other nodes need the memory. Loading a node's models in one call
    keeps ComfyUI from offloading one of them to make room for the next; ``memory_required`` (bytes of work
    memory the node will need besides the weights) makes ComfyUI evict idle models first.
    """
    def wrap(build: ModelBuilder) -> comfy.model_patcher.ModelPatcher:
        holder = _hold(build().eval())
        size = weight_bytes(holder)
        log.info("AniPortrait: loaded %s (%s)", type(holder).__name__, describe_size(size, holder.held))
        return comfy.model_patcher.ModelPatcher(holder, load_device=torch_device(),
                                                offload_device=mm.unet_offload_device(), size=size)

    mark_in_use(key for key, _ in entries.values())
    patchers = {name: MODEL_CACHE.get(key, lambda build=build: wrap(build)) for name, (key, build) in entries.items()}
    mm.load_models_gpu(list(patchers.values()), memory_required=memory_required)
    return {name: patcher.model.held for name, patcher in patchers.items()}


def cached_model(key: Hashable, build: ModelBuilder) -> torch.nn.Module:
    return cached_models({"model": (key, build)})["model"]


class _PatcherHolder(torch.nn.Module):
    """What the ModelPatcher manages: it assigns attributes such as ``device`` to its model, which transformers and
    diffusers models expose as read-only properties, so they are held one level down."""

    def __init__(self, held: torch.nn.Module) -> None:
        super().__init__()
        self.held = held


_HOLDER_CLASSES: dict[type, type[_PatcherHolder]] = {}


def _hold(module: torch.nn.Module) -> _PatcherHolder:
    """A holder whose class is named after the held module's class, because ComfyUI's console names what it loads
    by the class of the patched module ("Requested to load UNet3DConditionModel", not "_PatcherHolder")."""
    held_class = type(module)
    if held_class not in _HOLDER_CLASSES:
        _HOLDER_CLASSES[held_class] = type(held_class.__name__, (_PatcherHolder,),
                                           {"__doc__": _PatcherHolder.__doc__, "__module__": __name__})
    return _HOLDER_CLASSES[held_class](module)


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's parameters and buffers, each shared tensor counted once (tied weights appear twice in
    a state dict, which is what ComfyUI's ``module_size`` adds up)."""
    storages = {}
    for tensor in [*module.parameters(), *module.buffers()]:
        storage = tensor.untyped_storage()
        storages[(storage.data_ptr(), tensor.device)] = storage.nbytes()
    return sum(storages.values())


def describe_size(size: int, module: torch.nn.Module) -> str:
    """E.g. "1640.3 MB in float16" for the model log line."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()}) or ["no weights"]
    return f"{size / 2**20:.1f} MB in {'/'.join(dtypes)}"


def check_interrupt() -> None:
    """Raises ComfyUI's interrupt exception when the user pressed Cancel."""
    mm.throw_exception_if_processing_interrupted()


def progress_bar(total: int) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that drives the node's progress bar in the UI."""
    return comfy.utils.ProgressBar(total).update_absolute


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """IMAGE ``[B, H, W, 3]`` float 0..1 -> uint8 ``[B, H, W, 3]`` (exact for images that came from uint8)."""
    return (images.detach().cpu().float().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def rgb_images_to_uint8(images: torch.Tensor, input_name: str) -> np.ndarray:
    """``images_to_uint8`` of the node input ``input_name``, refused with a clear error unless it is a non-empty
    RGB IMAGE batch."""
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] != 3:
        raise ValueError(f"AniPortrait: input '{input_name}' must be a non-empty RGB IMAGE batch [B, H, W, 3], "
                         f"got shape {list(images.shape)}. Check the node connected to '{input_name}'.")
    return images_to_uint8(images)


def uint8_to_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> IMAGE float 0..1 on ComfyUI's intermediate device."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0
    return tensor.to(mm.intermediate_device())
