"""The headless ComfyUI host of the library (aniportrait.comfy_host): what it raises when a server cannot start or a
request fails, and that the caller, not the host, decides whether the server may reach the internet."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyHostError, ComfyServer, free_port


def fake_comfyui(folder: Path, body: str) -> Path:
    """A ComfyUI folder whose main.py runs ``body`` instead of a server."""
    folder.mkdir()
    (folder / "main.py").write_text(body)
    return folder


def start_error(tmp_path: Path, **kwargs) -> str:
    comfyui = fake_comfyui(tmp_path / "ComfyUI", "import os\nprint('offline:', os.environ.get('HF_HUB_OFFLINE'))\n"
                                                 "raise SystemExit(3)\n")
    server = ComfyServer(comfyui, Path(sys.executable), base_dir=tmp_path / "base", **kwargs)
    with pytest.raises(ComfyHostError) as error:
        server.start()
    assert not server.is_running()
    return str(error.value)


def test_a_server_that_exits_while_starting_says_so_with_its_log(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    message = start_error(tmp_path)
    assert "exited with code 3" in message and str(tmp_path / "base" / "server.log") in message
    assert "offline: None" in message  # the host leaves the environment as it is


def test_offline_is_the_callers_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "offline: 1" in start_error(tmp_path, env=OFFLINE_ENV)


def test_a_python_that_does_not_exist_is_named(tmp_path):
    server = ComfyServer(fake_comfyui(tmp_path / "ComfyUI", ""), tmp_path / "no-python", base_dir=tmp_path / "base")
    with pytest.raises(ComfyHostError, match="cannot run ComfyUI with .*no-python"):
        server.start()


def test_a_server_that_does_not_answer_is_an_error_not_a_traceback_of_urllib():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ComfyHostError, match=f"GET {url}/object_info: ComfyUI did not answer"):
        ComfyClient(url, timeout=5).object_info()


@pytest.mark.server
def test_an_http_error_names_the_request_and_the_status(client, tmp_path):
    with pytest.raises(ComfyHostError, match="GET /no-such-route: ComfyUI answered HTTP 404"):
        client.get("/no-such-route")
    with pytest.raises(ComfyHostError, match=r"upload of \.\./escape\.png: ComfyUI answered HTTP 400"):
        client.upload(b"not an image", name="../escape.png")
