"""Shared test fixtures: where things are, the ComfyUI install, a tiny models folder and a real server."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyServer
from aniportrait.registry import MODELS_FOLDER_NAME, PACK_FOLDER_NAME
from aniportrait.tiny_models import build_models_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANIPORTRAIT_SHARED", REPO.parent / "shared")).resolve()
GOLDEN = SHARED / "golden"
FILM_STAND_IN = SHARED / "golden-wide" / "tiny" / "film_tiny.pt"  # TorchScript stand-in for film_net_fp16.pt
ASSETS = SHARED / "assets"
ARTIFACTS = REPO / "tests" / "artifacts"  # git-ignored; CI keeps it for post-mortems


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "tiny").is_dir():
        pytest.fail(f"golden data not found at {GOLDEN}: put the shared folder beside the repository "
                    "or set ANIPORTRAIT_SHARED")
    return GOLDEN


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    return ASSETS


def _golden_case(golden_dir: Path, file_name: str) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "cases" / file_name) as case:
        return {name: case[name] for name in case.files}


@pytest.fixture(scope="session")
def mesh_case(golden_dir) -> dict[str, np.ndarray]:
    """Golden case c: the reference's MediaPipe results, projection and pose images."""
    return _golden_case(golden_dir, "c_mesh_projection.npz")


@pytest.fixture(scope="session")
def reenactment_case(golden_dir) -> dict[str, np.ndarray]:
    """Golden case j: driving frames with their per-frame MediaPipe results and the retarget path."""
    return _golden_case(golden_dir, "j_reenactment.npz")


@pytest.fixture(scope="session")
def comfy_root() -> Path:
    """The ComfyUI install of .ci/install_comfyui.sh (venv/ + ComfyUI/), installed on first use."""
    root = Path(os.environ.get("ANIPORTRAIT_COMFY_ROOT", Path.home() / ".cache" / "aniportrait-comfyui"))
    if not (root / "venv" / "bin" / "python").exists() or not (root / "ComfyUI" / "main.py").exists():
        subprocess.run(["bash", str(REPO / ".ci" / "install_comfyui.sh"), str(root)], check=True)
    return root


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path, assets_dir: Path) -> Path:
    """A models folder (layout of pretrained_weights/) of links to the tiny golden checkpoints (FILM: see
    build_models_dir)."""
    return build_models_dir(tmp_path_factory.mktemp("models") / MODELS_FOLDER_NAME, golden_dir, assets_dir,
                            FILM_STAND_IN)


@pytest.fixture(scope="session")
def comfy_server(comfy_root: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real ComfyUI with this pack and the tiny models, shared by the whole session."""
    server = ComfyServer.from_install(comfy_root, packs=[(PACK_FOLDER_NAME, REPO)],
                                      model_folders={MODELS_FOLDER_NAME: tiny_models},
                                      base_dir=tmp_path_factory.mktemp("comfy-base"), env=OFFLINE_ENV)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(server.log_path, ARTIFACTS / "comfyui-server.log")


@pytest.fixture(scope="session")
def client(comfy_server: ComfyServer) -> ComfyClient:
    return ComfyClient(comfy_server.url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failing server test shows the end of the server log next to its own output."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("comfy_server")
    if report.failed and isinstance(server, ComfyServer):
        report.sections.append(("ComfyUI server log (last 150 lines)", server.log_tail(150)))
