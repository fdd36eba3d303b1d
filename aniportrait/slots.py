"""Which files in the models folder fit which model slot, so a loader's dropdown lists only files it can load.

The check is cheap and never loads weights: a checkpoint's tensor names are read from the safetensors header, from
the pickle inside a torch zip (``data.pkl``), or from the start of a legacy torch pickle, and matched against the
names that slot's network has; a folder model's ``config.json`` names its class. A file whose names cannot be read
(another format) fits when the slot's name is part of its file name.
"""
from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# the keys of a legacy (non-zip) torch pickle come before its tensor data
LEGACY_PICKLE_BYTES = 8 * 2**20
SAFETENSORS_MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class Signature:
    """Substrings of tensor names a checkpoint for the slot has (all of ``required``, none of ``forbidden``)."""

    required: tuple[bytes, ...]
    forbidden: tuple[bytes, ...] = ()

    def matches(self, names: bytes) -> bool:
        return all(part in names for part in self.required) and not any(part in names for part in self.forbidden)


CHECKPOINT_SIGNATURES = {
    "audio2mesh": Signature((b"audio_encoder.", b"in_fn."), forbidden=(b"id_embed",)),
    "audio2pose": Signature((b"audio_encoder.", b"id_embed")),
    # both UNets come from Stable Diffusion 1.5's; the denoising one keeps its output convolution
    "denoising_unet": Signature((b"conv_in.weight", b"time_embedding.", b"conv_out.weight")),
    "reference_unet": Signature((b"conv_in.weight", b"time_embedding.")),
    "motion_module": Signature((b"motion_modules.",), forbidden=(b"conv_in.weight",)),
    "pose_guider": Signature((b"conv_layers", b"final_proj"), forbidden=(b"audio_encoder.",)),
}
# folder models and configs: values of "_class_name" (diffusers) or "model_type" (transformers) in config.json
CONFIG_CLASSES = {
    "sd15_unet_config": {"UNet2DConditionModel", "UNet3DConditionModel"},
    "vae": {"AutoencoderKL"},
    "image_encoder": {"clip_vision_model", "clip"},
    "wav2vec2": {"wav2vec2"},
}


def checkpoint_fits(slot: str, path: Path) -> bool:
    """Whether the checkpoint at ``path`` has the tensors of ``slot`` (by file name when they cannot be read)."""
    stat = path.stat()
    names = _tensor_names(str(path), stat.st_size, stat.st_mtime_ns)
    if names is None:
        return slot.lower() in path.name.lower()
    return CHECKPOINT_SIGNATURES[slot].matches(names)


def config_fits(slot: str, config: Path) -> bool:
    """Whether ``config`` (a config.json) describes the network of ``slot``."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return bool({data.get("_class_name"), data.get("model_type")} & CONFIG_CLASSES[slot])


def has_signature(slot: str) -> bool:
    return slot in CHECKPOINT_SIGNATURES


@lru_cache(maxsize=256)
def _tensor_names(path: str, size: int, mtime_ns: int) -> bytes | None:
    """The bytes that hold a checkpoint's tensor names, or None for a format we cannot peek into. ``size`` and
    ``mtime_ns`` key the cache, so a replaced file is read again."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if zipfile.is_zipfile(handle):
                return _zip_pickle(handle)
            handle.seek(0)
            if len(head) == 8 and 0 < struct.unpack("<Q", head)[0] <= min(size - 8, SAFETENSORS_MAX_HEADER):
                header = handle.read(8 + struct.unpack("<Q", head)[0])[8:]
                if header.lstrip().startswith(b"{"):
                    return header
            if head[:1] == b"\x80":  # a pickle protocol opcode: a legacy torch.save file
                return handle.read(LEGACY_PICKLE_BYTES)
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def _zip_pickle(handle) -> bytes | None:
    with zipfile.ZipFile(handle) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        return archive.read(pickles[0]) if pickles else None
