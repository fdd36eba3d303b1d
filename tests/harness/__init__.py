"""Test helpers around the headless ComfyUI of aniportrait.comfy_host: prompts wired by socket type, a tiny models
folder, a FILM stand-in."""
