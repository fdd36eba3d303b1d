"""animate.sh, the command-line way to the audio-driven workflow: a video from a portrait and speech on the tiny
weights, and clear messages for missing models and bad arguments."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aniportrait.comfy_host import ComfyServer
from aniportrait.video_io import read_audio_track, read_video_frames
from scripts.animate import build_prompt, gpu_available, parse_args
from tests.workflow_inputs import NO_FACE, SIZE, make_inputs, speech_frames, tiny_settings

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1]


def animate(comfy_root: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "animate.sh"), "--comfyui", str(comfy_root / "ComfyUI"), *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def tiny_arguments(golden: Path) -> list[str]:
    arguments = []
    for selector, values in tiny_settings(golden, "APK_Lmk2VideoSamplerToFile").items():
        for name, value in values.items():
            arguments += ["--set", f"{selector}.{name}={value}"]
    return arguments


def test_makes_a_talking_video_on_the_tiny_weights(tmp_path, comfy_root, tiny_models, golden_dir, assets_dir):
    inputs = make_inputs(tmp_path / "inputs", assets_dir)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "solo_lyl.mp4").write_bytes(b"an earlier video")
    result = animate(comfy_root, "--image", assets_dir / "solo.png", "--audio", inputs["lyl.wav"],
                     "--models", tiny_models, *tiny_arguments(golden_dir), cwd=tmp_path,
                     env={"ANIPORTRAIT_OUTPUT_DIR": str(tmp_path / "videos")})
    assert result.returncode == 0, result.stdout + result.stderr
    # progress while it runs: each node as it starts, and the sampler's steps
    sampler = re.escape("Lmk2Video Sampler to Video File (AniPortrait)")
    assert re.search(rf"\] {sampler}\n", result.stdout), result.stdout
    assert re.search(rf"{sampler}: (\d+)/\1 \(100 %\)", result.stdout), result.stdout
    # the default output folder, numbered instead of replacing the earlier video; nothing written where it ran
    video = tmp_path / "videos" / "solo_lyl_2.mp4"
    assert (tmp_path / "videos" / "solo_lyl.mp4").read_bytes() == b"an earlier video"
    assert not list(tmp_path.glob("*.mp4"))
    frames, fps = read_video_frames(video)
    assert frames.shape == (speech_frames(), SIZE, SIZE, 3) and fps == 30
    audio = read_audio_track(video)
    assert audio.sample_rate == 44100 and audio.waveform.shape[1] == round(speech_frames() / 30 * 44100)


def test_missing_models_are_listed_with_the_download_command(tmp_path, comfy_root, assets_dir):
    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "audio2mesh.pt").write_bytes(b"present")
    result = animate(comfy_root, "--image", assets_dir / "solo.png", "--audio", assets_dir / "lyl.wav",
                     "--models", empty, cwd=tmp_path)
    assert result.returncode == 1
    assert str(empty / "denoising_unet.pth") in result.stderr
    assert str(empty / "audio2mesh.pt") not in result.stderr
    assert f"scripts/download_models.py --models-dir {empty}" in result.stderr
    assert "starting ComfyUI" not in result.stdout  # refused before starting anything


def test_a_failed_run_keeps_the_server_log_and_says_where(tmp_path, comfy_root, tiny_models, golden_dir,
                                                         assets_dir):
    inputs = make_inputs(tmp_path / "inputs", assets_dir)
    result = animate(comfy_root, "--image", inputs[NO_FACE], "--audio", inputs["lyl.wav"], "--models", tiny_models,
                     "--out", tmp_path / "out.mp4", *tiny_arguments(golden_dir), cwd=tmp_path)
    assert result.returncode == 1
    assert "generation failed" in result.stderr and "APK_ReferenceFace" in result.stderr
    [kept] = re.findall(r"ComfyUI's log of this run is kept in (\S+)", result.stderr)
    log = Path(kept).read_text()
    shutil.rmtree(Path(kept).parent)
    assert "Exception during processing" in log and "Traceback" in log  # ComfyUI's account of the failure


def test_help_needs_no_comfyui(tmp_path):
    result = subprocess.run(["bash", str(REPO / "animate.sh"), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "ANIPORTRAIT_COMFY_ROOT": str(tmp_path / "none")})
    assert result.returncode == 0 and "--image" in result.stdout
    assert not (tmp_path / "none").exists()  # nothing installed


@pytest.mark.parametrize("args, message", [
    (["--image", "nowhere.png", "--audio", "speech.wav"], "--image: nowhere.png does not exist"),
    (["--audio", "speech.wav"], "the following arguments are required: --image"),
    (["--image", "face.png", "--audio", "speech.wav", "--out", "video.avi"], "must end in .mp4 or .webm"),
    (["--image", "face.png", "--audio", "speech.wav", "--set", "steps=2"], "write NODE.INPUT=VALUE"),
])
def test_bad_arguments_are_explained_before_anything_starts(tmp_path, comfy_root, args, message):
    (tmp_path / "speech.wav").write_bytes(b"RIFF")
    (tmp_path / "face.png").write_bytes(b"PNG")
    result = animate(comfy_root, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "starting ComfyUI" not in result.stdout


def test_comfyui_is_asked_for_the_cpu_only_without_a_gpu(tmp_path):
    def command(cpu: bool) -> list[str]:
        server = ComfyServer(tmp_path / "ComfyUI", Path(sys.executable), base_dir=tmp_path / "base", cpu=cpu)
        return server.command()

    assert command(cpu=True).count("--cpu") == 1
    assert "--cpu" not in command(cpu=False)
    assert command(cpu=False)[:2] == [sys.executable, str(tmp_path / "ComfyUI" / "main.py")]
    assert gpu_available(tmp_path / "no-python") is False


def test_pose_template_takes_the_place_of_audio2pose(client, tmp_path):
    args = parse_args(["--image", "portrait.png", "--audio", "speech.wav", "--comfyui", str(tmp_path),
                       "--pose-template", "pose_temp.npy"])
    args.out = Path("talking.mp4")
    uploaded = {"image": "portrait.png", "audio": "speech.wav", "pose_template": "pose_temp.npy"}
    prompt = build_prompt(args, client.object_info(), uploaded, [])
    types = [node["class_type"] for node in prompt.values()]
    assert "APK_Audio2Pose" not in types and "APK_LoadAudio2PoseModel" not in types
    [template] = [key for key, node in prompt.items() if node["class_type"] == "APK_HeadPoseTemplate"]
    assert prompt[template]["inputs"]["template"] == "pose_temp.npy"
    [project] = [node for node in prompt.values() if node["class_type"] == "APK_ProjectLandmarks"]
    assert project["inputs"]["pose"] == [template, 0]
    assert "APK_Lmk2VideoSamplerToFile" in types  # the streaming path, as without a template
