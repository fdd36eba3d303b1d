#!/usr/bin/env bash
# Animate a portrait with speech (AniPortrait, audio-driven) using ComfyUI headless:
#
#   bash animate.sh --image portrait.png --audio speech.wav [--out result.mp4] [--models DIR] [--comfyui DIR]
#                   [--python PY] [--width 512 --height 512 --steps 25 --cfg 3.5 --seed 42 --fps 30]
#                   [--pose-template pose_temp.npy] [--set NODE.INPUT=VALUE ...] [--cpu]
#
# ComfyUI: --comfyui DIR, else the one this pack sits in (ComfyUI/custom_nodes/<pack>), else the pinned CPU
# install of .ci/install_comfyui.sh (~/.cache/aniportrait-comfyui, installed on first use).
# Models: --models DIR, else COMFYUI/models/aniportrait (fill it with ComfyUI's python: PY scripts/download_models.py).
# Runs on the GPU when ComfyUI's torch sees one (--cpu: on the CPU anyway). Prints each step and the sampler's progress.
# Videos go to ~/aniportrait-output/ (ANIPORTRAIT_OUTPUT_DIR) unless --out says otherwise.
# `bash animate.sh --help` lists every option.
set -euo pipefail
PACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMFY="" PY="" ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --comfyui) COMFY=${2:?--comfyui needs a folder}; shift 2 ;;
    --python) PY=${2:?--python needs a path}; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ -z "$COMFY" ] && [ "$(basename "$(dirname "$PACK_DIR")")" = custom_nodes ]; then
  COMFY=$(dirname "$(dirname "$PACK_DIR")")
fi
for arg in "${ARGS[@]}"; do  # the options need no ComfyUI: answer before installing anything
  if [ "$arg" = "--help" ] || [ "$arg" = "-h" ]; then
    exec "${PY:-python3}" "$PACK_DIR/scripts/animate.py" --comfyui "${COMFY:-COMFYUI}" --help
  fi
done
if [ -z "$COMFY" ]; then
  ROOT=${ANIPORTRAIT_COMFY_ROOT:-$HOME/.cache/aniportrait-comfyui}
  if [ ! -f "$ROOT/.installed" ]; then
    echo "animate: first run: installing ComfyUI 0.3.75 (CPU build) with this pack's requirements into $ROOT" >&2
    echo "animate: this takes a few minutes (2 to 10), once; --comfyui DIR uses a ComfyUI you already have" >&2
  fi
  bash "$PACK_DIR/.ci/install_comfyui.sh" "$ROOT" >&2
  COMFY=$ROOT/ComfyUI
fi
if [ -z "$PY" ]; then  # the usual places of ComfyUI's own environment, else the python on PATH
  for candidate in "$COMFY/venv/bin/python" "$COMFY/.venv/bin/python" "$COMFY/../venv/bin/python"; do
    if [ -x "$candidate" ]; then PY=$candidate; break; fi
  done
  PY=${PY:-python3}
fi
exec "$PY" "$PACK_DIR/scripts/animate.py" --comfyui "$COMFY" --python "$PY" "${ARGS[@]}"
