"""Full-size state-dict manifests (``python -m tests.golden --manifests DIR``): every released checkpoint's key set
loads strictly into our modules, and the checker fails on any manifest it does not cover or that differs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.manifests import SUMMARY, check_manifests

POSE = "audio2pose.pt.json"


def _results_by_file(manifest_dir: Path) -> dict:
    results = check_manifests(manifest_dir)
    by_file = {r.array: r for r in results}
    assert len(by_file) == len(results), "one line per manifest file"
    return by_file


def test_every_manifest_checked_and_passing(golden_dir: Path):
    manifest_dir = golden_dir / "manifests"
    by_file = _results_by_file(manifest_dir)
    assert [r.line() for r in by_file.values() if not r.passed] == []
    assert set(by_file) == {path.name for path in manifest_dir.glob("*.json")} - {SUMMARY}


@pytest.mark.parametrize("change, problems", [
    (lambda keys: keys.pop("PPE.pe"), 1),  # our module has a tensor the file lacks
    (lambda keys: keys.update({"audio_encoder.encoder.pos_conv_embed.conv.weight":  # folded weight norm
                               keys.pop("audio_encoder.encoder.pos_conv_embed.conv.weight_v")}), 2),
    (lambda keys: keys.update({"id_embed.weight": [99, 512]}), 1),
], ids=["key removed", "key renamed", "shape changed"])
def test_differing_manifest_fails(golden_dir: Path, tmp_path: Path, change, problems: int):
    keys = json.loads((golden_dir / "manifests" / POSE).read_text())
    change(keys)
    (tmp_path / POSE).write_text(json.dumps(keys))
    result = _results_by_file(tmp_path)[POSE]
    assert not result.passed and result.max_abs_err == problems, result.line()


def test_unknown_manifest_and_wrong_summary_fail(golden_dir: Path, tmp_path: Path):
    (tmp_path / POSE).symlink_to(golden_dir / "manifests" / POSE)
    (tmp_path / "new_model.json").write_text("{}")
    summary = json.loads((golden_dir / "manifests" / SUMMARY).read_text())
    for entry in summary:
        entry["num_tensors"] += entry["file"] == POSE.removesuffix(".json")
    (tmp_path / SUMMARY).write_text(json.dumps(summary))
    by_file = _results_by_file(tmp_path)
    assert SUMMARY not in by_file
    assert not by_file["new_model.json"].passed and "no checker" in by_file["new_model.json"].note
    assert not by_file[POSE].passed and by_file[POSE].max_abs_err == 1 and SUMMARY in by_file[POSE].note
    absent = [r for name, r in by_file.items() if name not in (POSE, "new_model.json")]
    assert absent and all(not r.passed and "not found" in r.note for r in absent)
