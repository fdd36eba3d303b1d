"""Download the AniPortrait model files into a models folder (default: ComfyUI/models/aniportrait).

    python scripts/download_models.py                       # everything the pack can use
    python scripts/download_models.py --only audio2mesh wav2vec2
    python scripts/download_models.py --models-dir /data/pretrained_weights

Run it with the Python that runs ComfyUI (it needs huggingface_hub). Files already present (or their
.safetensors twins) are kept. Hub files honour HF_ENDPOINT / HF_TOKEN.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR))

from aniportrait.files import (MissingModelFilesError, ensure_models, missing_files,  # noqa: E402
                              with_safetensors_variant)
from aniportrait.registry import MODEL_FILES, MODELS_FOLDER_NAME  # noqa: E402


def default_models_dir() -> Path:
    """``ComfyUI/models/aniportrait`` when the pack sits in ``ComfyUI/custom_nodes/``."""
    if PACK_DIR.parent.name == "custom_nodes":
        return PACK_DIR.parent.parent / "models" / MODELS_FOLDER_NAME
    raise SystemExit("This pack is not inside ComfyUI/custom_nodes/: say where the models go with --models-dir DIR")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, help="target folder (default: ComfyUI/models/aniportrait)")
    parser.add_argument("--only", nargs="+", choices=list(MODEL_FILES), metavar="NAME",
                        help=f"download only these models: {', '.join(MODEL_FILES)}")
    args = parser.parse_args(argv)
    root = args.models_dir or default_models_dir()
    names = args.only or list(MODEL_FILES)
    # ensure_models fetches the missing files in this order and reports after each one
    pending = [path for _, path in missing_files(names, root)]
    print(f"{len(pending)} of the files of {', '.join(names)} to download into {root}", flush=True)

    def report(done: int, total: int) -> None:
        path = pending[done - 1]
        print(f"[{done}/{total}] {'ok' if with_safetensors_variant(path) else 'FAILED'}  {path}", flush=True)

    try:
        ensure_models(names, root, allow_download=True, progress=report)
    except MissingModelFilesError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"all files of {', '.join(names)} are in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
