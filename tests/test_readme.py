"""The README's models table is the registry's: ``python -m tests.test_readme`` rewrites it after a registry change."""
from __future__ import annotations

import sys
from pathlib import Path

from aniportrait.registry import MODEL_FILES, ModelFile

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def _place(model: ModelFile) -> str:
    if model.is_folder:
        return f"`{model.relpath}/` ({', '.join(model.parts)})"
    return f"`{model.relpath}`"


def models_table() -> str:
    rows = ["| Model | Place under `ComfyUI/models/aniportrait/` | Source | Size | Used for |",
            "|---|---|---|---|---|"]
    rows += [f"| {m.name} | {_place(m)} | <{m.source}> | {m.size} | {m.purpose} |" for m in MODEL_FILES.values()]
    return "\n".join(rows)


def _split(text: str) -> tuple[str, str, str]:
    head, rest = text.split(START, 1)
    table, tail = rest.split(END, 1)
    return head, table, tail


def test_readme_models_table_matches_the_registry():
    assert START in README.read_text() and END in README.read_text(), f"{README} has no models table markers"
    _, table, _ = _split(README.read_text())
    assert table.strip() == models_table(), "README.md's models table is stale: run python -m tests.test_readme"


if __name__ == "__main__":
    head, _, tail = _split(README.read_text())
    README.write_text(f"{head}{START}\n{models_table()}\n{END}{tail}")
    print(f"updated the models table in {README}", file=sys.stderr)
