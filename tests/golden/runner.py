"""Runs every golden case through the pack's own loaders and code, one comparison line per array."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterable

from .compare import Comparison, failure

# case name prefix -> module (under tests/golden/) whose CASES dict maps case-name prefixes to functions
# fn(case_name, case_info, golden: Path) -> list[Comparison]
CASE_MODULES = ("cases_audio", "cases_face", "cases_unet", "cases_video", "cases_reenactment")
CASE_MODULES += ("cases_film",)


def _case_functions() -> dict[str, Callable]:
    import importlib

    table: dict[str, Callable] = {}
    for name in CASE_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        table.update(module.CASES)
    return table


def _pick(table: dict[str, Callable], case_name: str) -> Callable | None:
    matches = [prefix for prefix in table if case_name.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


def run_cases(golden_dir: str | Path, only: Iterable[str] | None = None) -> list[Comparison]:
    golden = Path(golden_dir)
    index = json.loads((golden / "cases" / "index.json").read_text())
    table = _case_functions()
    results: list[Comparison] = []
    for case_name, info in index["cases"].items():
        if only and not any(case_name.startswith(p) for p in only):
            continue
        fn = _pick(table, case_name)
        if fn is None:
            results.append(failure(case_name, "-", NotImplementedError("no checker for this case")))
            print(results[-1].line(), flush=True)
            continue
        try:
            case_results = fn(case_name, info, golden)
        except Exception as exc:  # one broken case must not hide the others
            traceback.print_exc(file=sys.stderr)
            case_results = [failure(case_name, "-", exc)]
        for r in case_results:
            print(r.line(), flush=True)
        results += case_results
    return results


def run_manifests(manifest_dir: str | Path) -> list[Comparison]:
    from .manifests import check_manifests

    results = check_manifests(Path(manifest_dir))
    for r in results:
        print(r.line(), flush=True)
    return results
