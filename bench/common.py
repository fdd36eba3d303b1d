"""What every bench script needs: best-of-N timing, a one-line machine description, and the results files."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
# the shared inputs (golden cases, assets): ANIPORTRAIT_SHARED, else ../shared next to the repository
SHARED = Path(os.environ.get("ANIPORTRAIT_SHARED", Path(__file__).resolve().parents[2] / "shared")).resolve()
T = TypeVar("T")


def timed(run: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds of one call of ``run()``, and what it returned."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Wall-clock seconds of the fastest of ``repeats`` calls of ``run()`` (the least disturbed by other load)."""
    return min(timed(run)[0] for _ in range(repeats))


def machine_description() -> str:
    return f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"


def write_results(name: str, result: dict, markdown: str) -> None:
    """bench/results/<name>.json and .md, and the JSON on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(json.dumps(result, indent=2))
