"""A headless ComfyUI: start a server with given packs and model folders in its own base directory, and talk to
it over HTTP and its websocket as the web UI does. Standard library only (``ComfyClient.run`` also needs
websocket-client); used by ``animate.sh``, ``workflows/build_workflows.py``, the benchmarks and the tests.

    with ComfyServer.from_install(comfy_root, packs=[("MyPack", pack_dir)]) as server:
        ComfyClient(server.url).object_info()
"""
from .client import ComfyClient, PromptRun
from .errors import ComfyHostError, ComfyHostTimeout
from .server import OFFLINE_ENV, ComfyServer, free_port

__all__ = ["ComfyClient", "ComfyHostError", "ComfyHostTimeout", "ComfyServer", "OFFLINE_ENV", "PromptRun",
           "free_port"]
