"""Model dropdowns list only files that fit the slot (aniportrait/slots.py): checkpoints are recognised by their tensor
names in every format the loaders read, whatever the file is called; configs by the class they name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from aniportrait import slots
from aniportrait.registry import MODEL_FILES

# the manifests list the tensor names of the released checkpoints
MANIFEST_OF_SLOT = {slot: f"{MODEL_FILES[slot].relpath}.json" for slot in slots.CHECKPOINT_SIGNATURES}
# slots that also accept another slot's checkpoint (both UNets come from SD 1.5's; the full one can be a ReferenceNet)
ALSO_FITS = {("reference_unet", "denoising_unet")}


@pytest.fixture(scope="module")
def tensor_names(golden_dir) -> dict[str, list[str]]:
    return {slot: list(json.loads((golden_dir / "manifests" / name).read_text()))
            for slot, name in MANIFEST_OF_SLOT.items()}


def save_checkpoint(path: Path, names: list[str], kind: str) -> Path:
    state = {name: torch.zeros(1) for name in names}
    if kind == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=(kind == "zip"))
    return path


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_checkpoints_fit_their_own_slot_only_whatever_their_name(tmp_path, tensor_names, kind):
    suffix = ".safetensors" if kind == "safetensors" else ".pth"
    files = {slot: save_checkpoint(tmp_path / f"weights_{index}{suffix}", names, kind)
             for index, (slot, names) in enumerate(tensor_names.items())}
    for slot in slots.CHECKPOINT_SIGNATURES:
        fitting = {owner for owner, path in files.items() if slots.checkpoint_fits(slot, path)}
        assert fitting == {slot} | {other for wanted, other in ALSO_FITS if wanted == slot}, slot


def test_unreadable_checkpoints_fall_back_to_the_file_name(tmp_path):
    unknown = tmp_path / "my_audio2mesh_finetune.ckpt"
    unknown.write_bytes(b"not a format we can peek into")
    assert slots.checkpoint_fits("audio2mesh", unknown)
    assert not slots.checkpoint_fits("audio2pose", unknown)


def test_a_replaced_file_is_checked_again(tmp_path, tensor_names):
    path = save_checkpoint(tmp_path / "weights.pth", tensor_names["audio2mesh"], "zip")
    assert slots.checkpoint_fits("audio2mesh", path)
    save_checkpoint(path, tensor_names["pose_guider"], "zip")
    assert not slots.checkpoint_fits("audio2mesh", path) and slots.checkpoint_fits("pose_guider", path)


def test_configs_fit_by_the_class_they_name(golden_dir, tmp_path):
    tiny = golden_dir / "tiny"
    configs = {"sd15_unet_config": tiny / MODEL_FILES["sd15_unet_config"].relpath,
               **{slot: tiny / MODEL_FILES[slot].relpath / "config.json"
                  for slot in ("vae", "image_encoder", "wav2vec2")}}
    for slot in slots.CONFIG_CLASSES:
        assert {owner for owner, path in configs.items() if slots.config_fits(slot, path)} == {slot}
    broken = tmp_path / "config.json"
    broken.write_text("[not a config")
    assert not any(slots.config_fits(slot, broken) for slot in slots.CONFIG_CLASSES)
