"""AniPortrait model and pipeline code: plain PyTorch/NumPy, importable and runnable without ComfyUI."""
