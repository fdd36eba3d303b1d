#!/usr/bin/env bash
# The prepared GPU check: bash bench/gpu_check.sh [--smoke] --out FILE.json [--speed compile,channels_last]
#                                                 [--budget-gib N]
# Full mode needs an NVIDIA GPU and torch, transformers, diffusers, opencv, psutil; missing pure-Python packages
# can travel as wheels in .whl/ (bench/README.md). --smoke: tiny networks on the CPU, for CI.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  SITE=$(mktemp -d /tmp/apk-wheels.XXXXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" -m bench.gpu_check "$@"
