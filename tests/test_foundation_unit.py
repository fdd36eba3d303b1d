"""The plain-Python foundation (no ComfyUI): model registry, safe checkpoint reading, strict loading, and the
missing-model messages."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from aniportrait import registry
from aniportrait.checkpoint import CheckpointMismatchError, load_weights, read_state_dict
from aniportrait.files import (DOWNLOAD_SCRIPT, MissingModelFilesError, downloads_allowed, ensure_models, missing_files,
                          required_paths, with_safetensors_variant)
from aniportrait.registry import MODEL_FILES

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin")
# in golden/tiny for the golden checker only; a user's models folder does not have it
GOLDEN_ONLY = {"tiny_config.json"}


def all_required_paths(root: Path) -> list[Path]:
    return [p for model in MODEL_FILES.values() for p in required_paths(model, root)]


# --- registry -------------------------------------------------------------------------------------------------

def test_registry_entries_are_complete():
    for name, model in MODEL_FILES.items():
        assert model.name == name
        assert model.size.strip() and model.purpose.strip(), name
        assert bool(model.hf_repo) != bool(model.url), f"{name}: exactly one of hf_repo / url"
        assert model.source.startswith("https://"), (name, model.source)
        if model.hf_repo:
            assert model.source.startswith(f"https://huggingface.co/{model.hf_repo}"), model.source


def test_registry_paths_are_unique_and_do_not_overlap(tmp_path):
    relpaths = [m.relpath for m in MODEL_FILES.values()]
    assert len(relpaths) == len(set(relpaths))
    files = all_required_paths(tmp_path)
    assert len(files) == len(set(files))
    for model in MODEL_FILES.values():
        if not model.is_folder:
            assert not any(p != tmp_path / model.relpath and tmp_path / model.relpath in p.parents for p in files)


def test_stage_lists_name_registry_entries_and_cover_it():
    stages = (registry.AUDIO2MESH_MODELS, registry.AUDIO2POSE_MODELS, registry.FACE_MODELS, registry.VIDEO_MODELS,
              registry.FILM_MODELS)
    used = {name for stage in stages for name in stage}
    assert used <= set(MODEL_FILES)
    assert used == set(MODEL_FILES), f"registry entries no stage uses: {set(MODEL_FILES) - used}"


def test_registry_layout_is_the_tiny_pretrained_weights_layout(golden_dir):
    """Every file of golden/tiny (AniPortrait's pretrained_weights/ layout) is a registry file, and the registry
    asks for nothing else except the MediaPipe file (kept in shared/assets) and FILM (golden/tiny may lack it)."""
    tiny = golden_dir / "tiny"
    tiny_files = {p for p in tiny.rglob("*") if p.is_file() and p.name not in GOLDEN_ONLY}
    registry_files = set(all_required_paths(tiny))
    assert tiny_files - registry_files == set(), "tiny files the registry does not know"
    assert {MODEL_FILES["face_landmarker"].relpath} <= {p.relative_to(tiny).as_posix()
                                                        for p in registry_files - tiny_files} <= \
        {MODEL_FILES["face_landmarker"].relpath, MODEL_FILES["film"].relpath}


def test_complete_models_folder_is_accepted_offline(tiny_models):
    paths = ensure_models(MODEL_FILES, tiny_models, allow_download=False)
    assert set(paths) == set(MODEL_FILES)
    for name, path in paths.items():
        assert path == tiny_models / MODEL_FILES[name].relpath and path.exists(), name


# --- read_state_dict -------------------------------------------------------------------------------------------

class _CreatesFileWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("file_format", ["zip", "legacy", "plain_pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, file_format):
    marker = tmp_path / "code_ran"
    payload = {"weight": torch.ones(2), "trap": _CreatesFileWhenUnpickled(marker)}
    path = tmp_path / "evil.pth"
    if file_format == "zip":
        torch.save(payload, path)
    elif file_format == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointMismatchError) as error:
        read_state_dict(path)
    assert not marker.exists(), "unpickling ran code from the file"
    message = str(error.value)
    assert message.startswith(f"AniPortrait: {path} ") and "weights_only" not in message, message


def test_plain_and_nested_state_dicts_and_safetensors_read_the_same(tmp_path):
    tensors = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3)}
    torch.save(tensors, tmp_path / "plain.pt")
    torch.save(tensors, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": tensors, "epoch": 3}, tmp_path / "nested.ckpt")
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    for name in ("plain.pt", "legacy.pt", "nested.ckpt", "plain.safetensors"):
        loaded = read_state_dict(tmp_path / name)
        assert loaded.keys() == tensors.keys(), name
        assert all(torch.equal(loaded[k], tensors[k]) for k in tensors), name


def test_file_without_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointMismatchError, match="does not contain a state dict"):
        read_state_dict(path)


# --- .safetensors variants -------------------------------------------------------------------------------------

def _safetensors_twins(path: Path) -> list[Path]:
    twins = [path.with_suffix(".safetensors")]
    if path.name == "pytorch_model.bin":  # the hub's own name for a converted transformers checkpoint
        twins.append(path.parent / "model.safetensors")
    return twins


WEIGHT_FILES = [p.as_posix() for p in all_required_paths(Path("")) if p.suffix in WEIGHT_SUFFIXES]


@pytest.mark.parametrize("relpath", WEIGHT_FILES)
def test_safetensors_variant_is_accepted_for_every_weight_file(tmp_path, relpath):
    path = tmp_path / relpath
    for twin in _safetensors_twins(path):
        twin.parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.ones(1)}, str(twin))
        assert with_safetensors_variant(path) == twin
        missing = {p for _, p in missing_files(MODEL_FILES, tmp_path)}
        assert path not in missing and twin not in missing
        twin.unlink()
    assert with_safetensors_variant(path) is None


def test_original_file_wins_over_its_safetensors_twin(tmp_path):
    path = tmp_path / "audio2mesh.pt"
    torch.save({"w": torch.ones(1)}, path)
    save_file({"w": torch.zeros(1)}, str(path.with_suffix(".safetensors")))
    assert with_safetensors_variant(path) == path


def test_config_files_have_no_safetensors_variant(tmp_path):
    config = tmp_path / "config.json"
    config.with_suffix(".safetensors").write_bytes(b"")
    assert with_safetensors_variant(config) is None


# --- load_weights ----------------------------------------------------------------------------------------------

def _module() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def test_load_weights_loads_matching_state_dict():
    source, target = _module(), _module()
    load_weights(target, source.state_dict(), "net.pth", "a test net")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_load_weights_error_names_file_expectation_and_keys():
    state = _module().state_dict()
    del state["1.bias"]
    state["extra.weight"] = torch.ones(1)
    state["0.weight"] = torch.ones(5, 4)
    with pytest.raises(CheckpointMismatchError) as error:
        load_weights(_module(), state, Path("/models/pose_guider.pth"), "the PoseGuider")
    message = str(error.value)
    for part in ("/models/pose_guider.pth", "the PoseGuider", "missing keys: 1.bias", "unexpected keys: extra.weight",
                 "0.weight (5, 4) != (3, 4)"):
        assert part in message


def test_load_weights_tolerates_only_declared_gaps():
    state = _module().state_dict()
    del state["1.bias"]
    state["lm_head.weight"] = torch.ones(1)
    load_weights(_module(), state, "f.bin", "x", may_be_missing=lambda k: k == "1.bias",
                 may_be_extra=lambda k: k.startswith("lm_head."))
    with pytest.raises(CheckpointMismatchError, match="lm_head.weight"):
        load_weights(_module(), state, "f.bin", "x", may_be_missing=lambda k: k == "1.bias")


def test_load_weights_shortens_long_key_lists():
    state = {f"stray.{i}": torch.ones(1) for i in range(20)} | _module().state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"\(20 in all\)"):
        load_weights(_module(), state, "f.bin", "x")


# --- missing models and offline mode --------------------------------------------------------------------------

def test_offline_error_lists_every_missing_file_with_place_and_source(tmp_path):
    with pytest.raises(MissingModelFilesError) as error:
        ensure_models(MODEL_FILES, tmp_path, allow_download=False)
    message = str(error.value)
    expected = all_required_paths(tmp_path)
    assert [p for _, p in error.value.missing] == expected
    assert f"{len(expected)} model file(s) missing under {tmp_path}" in message
    for model in MODEL_FILES.values():
        for path in required_paths(model, tmp_path):
            line = next(line for line in message.splitlines() if f" {path} " in line)
            assert model.source in line and model.size in line, line
    assert str(DOWNLOAD_SCRIPT) in message and "--only " + " ".join(MODEL_FILES) in message
    assert DOWNLOAD_SCRIPT.is_file(), "the error message points at a script that does not exist"


def test_error_names_only_what_is_missing(tiny_models, tmp_path):
    partial = tmp_path / "models"
    partial.mkdir()
    for entry in tiny_models.iterdir():
        if entry.name != "wav2vec2-base-960h":
            (partial / entry.name).symlink_to(entry.resolve())
    (partial / "wav2vec2-base-960h").mkdir()
    (partial / "wav2vec2-base-960h" / "config.json").symlink_to(tiny_models / "wav2vec2-base-960h" / "config.json")
    with pytest.raises(MissingModelFilesError) as error:
        ensure_models(["audio2mesh", "wav2vec2"], partial, allow_download=False)
    folder = partial / "wav2vec2-base-960h"
    assert [p for _, p in error.value.missing] == [folder / "preprocessor_config.json", folder / "pytorch_model.bin"]
    assert "--only wav2vec2" in str(error.value)


@pytest.mark.parametrize("variable", ["ANIPORTRAIT_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("value, allowed", [("1", False), ("true", False), ("YES", False), ("0", True), ("", True)])
def test_offline_variables_switch_downloads_off(monkeypatch, variable, value, allowed):
    monkeypatch.delenv("ANIPORTRAIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(variable, value)
    assert downloads_allowed() is allowed


@pytest.mark.parametrize("variable", ["ANIPORTRAIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_ensure_models_does_not_download_when_offline(monkeypatch, tmp_path, variable):
    monkeypatch.setenv(variable, "1")
    # an endpoint that refuses connections: reaching it would turn the reason into "download failed"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(MissingModelFilesError, match=r"downloads are turned off"):
        ensure_models(["audio2mesh"], tmp_path)
    assert list(tmp_path.iterdir()) == []
