"""Test harness around a real ComfyUI: start a server with this pack, talk to it, build prompts and models folders."""
