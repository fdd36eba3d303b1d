"""What every bench script needs: best-of-N timing, a one-line machine description, and the results files."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Wall-clock seconds of the fastest of ``repeats`` calls of ``run()`` (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def machine_description() -> str:
    return f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"


def write_results(name: str, result: dict, markdown: str) -> None:
    """bench/results/<name>.json and .md, and the JSON on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(json.dumps(result, indent=2))
