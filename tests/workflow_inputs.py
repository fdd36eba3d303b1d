"""Short inputs under the file names the ready-made workflows expect, and the settings that make the workflows
run in seconds on the tiny golden weights (used by the API, browser and animate.sh tests)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from aniportrait.video_io import read_audio_track, read_video_frames, write_video
from scripts.animate import SAMPLERS, VIDEO_WRITERS  # noqa: F401 (the tests take them from here)

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / "workflows"
WORKFLOWS = ("audio_driven", "audio_driven_pose_template", "pose_video_driven", "face_reenactment",
             "audio_driven_long", "audio_driven_fast", "audio_driven_motion_edit", "audio_driven_with_driving_video")
FULL_RESOLUTION = ("audio_driven_motion_edit",)  # pasted back into the portrait
SPEECH_SECONDS = 0.6
VIDEO_FRAMES = 12
SIZE = 128  # smallest size at which MediaPipe still finds the faces of the test portraits
NO_FACE = "blank_wall.png"
UPLOAD_PREFIX = "apk_test_"  # other tests may upload the full-length originals under the plain names
# title of each file-picking node in the workflows -> (its file widget, the file name the workflow ships with)
FILE_WIDGETS = {
    "Portrait (pick a file)": ("image", "lyl.png"),
    "Speech (pick a file)": ("audio", "lyl.wav"),
    "Head Pose Template (pick a file)": ("template", "pose_temp.npy"),
    "Pose video (pick a file)": ("file", "pose_video.mp4"),
    "Driving video (pick a file)": ("file", "driving_video.mp4"),
}


def load_workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / f"{name}.json").read_text())


def speech_frames(seconds: float = SPEECH_SECONDS, fps: float = 30.0) -> int:
    """AniPortrait's video length for a speech clip: ceil(seconds * fps)."""
    return math.ceil(round(seconds * 16000) / 16000 * fps)


def make_inputs(folder: Path, assets: Path) -> dict[str, Path]:
    """The workflows' input files by the name they ship with: a 0.6 s speech clip, 12-frame driving videos, the
    portrait, the pose template, and (as NO_FACE) a portrait without a face."""
    folder.mkdir(parents=True, exist_ok=True)
    speech, rate = soundfile.read(assets / "lyl.wav", dtype="float32")
    soundfile.write(folder / "lyl.wav", speech[:round(SPEECH_SECONDS * rate)], rate)
    frames, fps = read_video_frames(assets / "pose_ref_video.mp4")
    track = read_audio_track(assets / "pose_ref_video.mp4")
    for name in ("pose_video.mp4", "driving_video.mp4"):
        write_video(folder / name, frames[:VIDEO_FRAMES], float(fps), track, "mp4")
    Image.fromarray(np.full((256, 256, 3), 180, np.uint8)).save(folder / NO_FACE)
    files = {path.name: path for path in folder.iterdir()}
    files["lyl.png"] = assets / "lyl.png"
    files["pose_temp.npy"] = assets / "pose_temp.npy"
    return files


def node_of_type(workflow: dict, types: tuple[str, ...]) -> dict:
    """The workflow's one node whose type is one of ``types``."""
    [node] = [node for node in workflow["nodes"] if node["type"] in types]
    return node


def tiny_settings(golden: Path, sampler: str = SAMPLERS[0]) -> dict[str, dict]:
    """Widget values (by node type or title) for the tiny weights: small frames, 2 steps (of the ``sampler`` node
    type), and the tiny PoseGuider's attention shape from tiny_config.json."""
    pose_guider = json.loads((golden / "tiny" / "tiny_config.json").read_text())["pose_guider"]
    return {
        "width": {"value": SIZE},
        "height": {"value": SIZE},
        sampler: {"steps": 2},
        "APK_LoadLmk2VideoModels": {"pose_guider_heads": pose_guider["transformer_num_attention_heads"],
                                    "pose_guider_head_dim": pose_guider["transformer_attention_head_dim"]},
    }


def upload_inputs(client, files: dict[str, Path]) -> dict[str, str]:
    """Uploads ``make_inputs`` files under prefixed names; returns {name in the workflows: uploaded name}."""
    return {name: client.upload(path, UPLOAD_PREFIX + name) for name, path in files.items()}


def file_settings(workflow: dict, uploaded: dict[str, str]) -> dict[str, dict]:
    """Widget values (by node title) pointing the workflow's file pickers at the uploaded inputs."""
    titles = {node.get("title") for node in workflow["nodes"]}
    return {title: {widget: uploaded[name]} for title, (widget, name) in FILE_WIDGETS.items() if title in titles}
