"""Test helpers around the headless ComfyUI of models.comfy_host: prompts wired by socket type, a tiny models
folder, a FILM stand-in."""
