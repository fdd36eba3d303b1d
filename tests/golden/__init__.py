"""Equivalence checker: the pack's code against the original implementation's outputs (golden cases).

    python -m tests.golden GOLDEN_DIR               # every case of GOLDEN_DIR/cases/index.json
    python -m tests.golden --manifests MANIFEST_DIR  # full-size key/shape check of every model
"""
