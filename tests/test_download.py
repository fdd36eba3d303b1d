"""The real download path (huggingface_hub + plain HTTP), against a local server that answers like the Hugging Face
hub and like the MediaPipe file host. It runs the download script in a subprocess: huggingface_hub reads HF_ENDPOINT
when it is imported."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aniportrait.registry import MODEL_FILES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "download_models.py"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LANDMARKER_URL_PATH = "/mediapipe-models/face_landmarker.task"

# What the hub holds: (repository, path in it) -> the same file in golden/tiny, which has the layout of
# AniPortrait's pretrained_weights/ folder (so it is also where the file must land).
HUB = {
    ("ZJYang/AniPortrait", "audio2mesh.pt"): "audio2mesh.pt",
    ("facebook/wav2vec2-base-960h", "config.json"): "wav2vec2-base-960h/config.json",
    ("facebook/wav2vec2-base-960h", "preprocessor_config.json"): "wav2vec2-base-960h/preprocessor_config.json",
    ("facebook/wav2vec2-base-960h", "pytorch_model.bin"): "wav2vec2-base-960h/pytorch_model.bin",
    ("lambdalabs/sd-image-variations-diffusers", "image_encoder/config.json"): "image_encoder/config.json",
    ("lambdalabs/sd-image-variations-diffusers", "image_encoder/pytorch_model.bin"): "image_encoder/pytorch_model.bin",
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "unet/config.json"): "stable-diffusion-v1-5/unet/config.json",
    ("stabilityai/sd-vae-ft-mse", "config.json"): "sd-vae-ft-mse/config.json",
    ("stabilityai/sd-vae-ft-mse", "diffusion_pytorch_model.safetensors"):
        "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
}
NAMES = ["audio2mesh", "wav2vec2", "image_encoder", "sd15_unet_config", "vae", "face_landmarker"]
LARGE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")  # kept in LFS on the hub: served through a CDN redirect


class FakeHub(ThreadingHTTPServer):
    """``/{repo}/resolve/main/{path}`` as the hub answers it: small files directly with ETag and X-Repo-Commit,
    large files with a redirect to another host (``localhost`` instead of ``127.0.0.1``) carrying X-Linked-Size and
    X-Linked-Etag. ``failures`` maps a request path to the HTTP status to answer instead."""

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.files = files  # request path -> content
        self.failures: dict[str, int] = {}
        self.unknown_requests: list[str] = []

    @property
    def port(self) -> int:
        return self.server_address[1]


class _HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?")[0]
        if path in self.server.failures:
            status = self.server.failures[path]
            self.send_response(status)
            if status == 404:
                self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/cdn/"):
            content = next((c for c in self.server.files.values() if _sha256(c) == path[5:]), None)
        else:
            content = self.server.files.get(path)
        if content is None:
            self.server.unknown_requests.append(f"{self.command} {path}")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        redirected = "/resolve/" in path and path.endswith(LARGE_SUFFIXES)
        if redirected:
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.port}/cdn/{_sha256(content)}")
            self.send_header("X-Linked-Size", str(len(content)))
            self.send_header("X-Linked-Etag", f'"{_sha256(content)}"')
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.sha1(content).hexdigest()}"')
            self.send_header("Content-Length", str(len(content)))
        if "/resolve/" in path:
            self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if with_body and not redirected:
            self.wfile.write(content)

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def hub(golden_dir, assets_dir):
    files = {f"/{repo}/resolve/main/{path}": (golden_dir / "tiny" / local).read_bytes()
             for (repo, path), local in HUB.items()}
    files[LANDMARKER_URL_PATH] = (assets_dir / MODEL_FILES["face_landmarker"].relpath).read_bytes()
    server = FakeHub(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    assert server.unknown_requests == [], "the download asked for files the hub does not have"


def run_download(hub: FakeHub, target: Path, names: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANIPORTRAIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub.port}", HF_HOME=str(target.parent / "hf-home"),
               ANIPORTRAIT_FACE_LANDMARKER_URL=f"http://127.0.0.1:{hub.port}{LANDMARKER_URL_PATH}",
               NO_PROXY="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.run([sys.executable, str(SCRIPT), "--models-dir", str(target), "--only", *names],
                          env=env, capture_output=True, text=True, timeout=300)


def expected_files(golden_dir: Path, assets_dir: Path) -> dict[str, Path]:
    """Where each downloaded file must land (relative to the models folder) and the file it must equal."""
    expected = {local: golden_dir / "tiny" / local for local in HUB.values()}
    landmarker = MODEL_FILES["face_landmarker"].relpath
    expected[landmarker] = assets_dir / landmarker
    return expected


def test_downloads_land_at_the_registry_paths_byte_identical(hub, tmp_path, golden_dir, assets_dir):
    target = tmp_path / "models"
    result = run_download(hub, target, NAMES)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = expected_files(golden_dir, assets_dir)
    for relpath, original in expected.items():
        landed = target / relpath
        assert landed.is_file(), f"{relpath} not downloaded\n{result.stdout}{result.stderr}"
        assert landed.read_bytes() == original.read_bytes(), relpath
    progress = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(expected) and all(" ok " in line for line in progress), result.stdout

    again = run_download(hub, target, NAMES)  # everything is there now: nothing to fetch
    assert again.returncode == 0 and "0 of the files" in again.stdout, again.stdout + again.stderr


def test_failed_downloads_are_reported_with_file_and_source(hub, tmp_path, golden_dir):
    wav2vec2_weights = (golden_dir / "tiny" / "wav2vec2-base-960h" / "pytorch_model.bin").read_bytes()
    hub.failures = {"/ZJYang/AniPortrait/resolve/main/audio2mesh.pt": 404,  # not on the hub
                    f"/cdn/{_sha256(wav2vec2_weights)}": 500,  # the file host fails after the hub answered
                    LANDMARKER_URL_PATH: 404}
    target = tmp_path / "models"
    result = run_download(hub, target, ["audio2mesh", "wav2vec2", "face_landmarker"])
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {target / "audio2mesh.pt": MODEL_FILES["audio2mesh"].source,
              target / "wav2vec2-base-960h" / "pytorch_model.bin": MODEL_FILES["wav2vec2"].source,
              target / MODEL_FILES["face_landmarker"].relpath: f"http://127.0.0.1:{hub.port}{LANDMARKER_URL_PATH}"}
    assert "3 model file(s) missing" in result.stderr and "download failed" in result.stderr
    listed = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    for path, source in failed.items():
        line = next((line for line in listed if line.startswith(f"  - {path} ")), None)
        assert line and line.endswith(f"from {source}"), f"{path} not listed with {source}:\n{result.stderr}"
        assert not path.exists(), f"a failed download left {path} behind"
        assert f"FAILED  {path}" in result.stdout
    assert len(listed) == len(failed)
    for kept in ("config.json", "preprocessor_config.json"):  # the rest of the folder did arrive
        assert (target / "wav2vec2-base-960h" / kept).is_file()
