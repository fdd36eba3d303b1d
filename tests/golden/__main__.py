"""CLI: ``python -m tests.golden GOLDEN_DIR`` or ``python -m tests.golden --manifests DIR``."""
from __future__ import annotations

import argparse
import sys

from .runner import run_cases, run_manifests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__)
    parser.add_argument("golden_dir", nargs="?", help="folder with cases/ and tiny/ (layout of shared/golden)")
    parser.add_argument("--manifests", metavar="DIR", help="compare full-size models with DIR/*.json")
    parser.add_argument("--only", metavar="PREFIX", action="append",
                        help="run only cases whose name starts with PREFIX (repeatable)")
    args = parser.parse_args(argv)
    if not args.golden_dir and not args.manifests:
        parser.error("give GOLDEN_DIR and/or --manifests DIR")
    results = []
    if args.golden_dir:
        results += run_cases(args.golden_dir, args.only)
    if args.manifests:
        results += run_manifests(args.manifests)
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
