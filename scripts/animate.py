"""Animate a portrait with speech from the command line: runs the pack's ``workflows/audio_driven_long.json`` (the
sampler writes the video file as it goes, so any length fits in memory) in a headless ComfyUI and copies the video
out. With --pose-template, Head Pose Template takes the place of Audio2Pose. Start it through ``animate.sh``
(which finds or installs ComfyUI):

    bash animate.sh --image portrait.png --audio speech.wav --out talking.mp4
    bash animate.sh --image portrait.png --audio speech.wav --pose-template pose_temp.npy --steps 20

The server runs in a temporary base directory with only this pack loaded; the models folder is linked into it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR))

from models.files import download_command, missing_files  # noqa: E402
from models.registry import FILM_MODELS, MODEL_FILES  # noqa: E402
from scripts.workflow_api import WorkflowError, set_inputs, workflow_to_prompt  # noqa: E402
from tests.harness.client import ComfyClient  # noqa: E402
from tests.harness.server import ComfyServer  # noqa: E402

WORKFLOWS = PACK_DIR / "workflows"
FORMATS = {".mp4": "mp4 (h264+aac)", ".webm": "webm (vp9+opus)"}
PACK_FOLDER_NAME = "ComfyUI-AniPortrait-Kit"
SAMPLERS = ("APK_Lmk2VideoSampler", "APK_Lmk2VideoSamplerToFile")
VIDEO_WRITERS = ("APK_VideoCombine", "APK_Lmk2VideoSamplerToFile")  # the node whose file is the result


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


class ComfyUIServer(ComfyServer):
    """The tests' headless server, started with a given python and ComfyUI folder, on the GPU unless ``cpu``."""

    def __init__(self, python: Path, comfyui: Path, cpu: bool, **kwargs):
        super().__init__(comfyui.parent, **kwargs)
        self.python, self.main, self.cpu = python, comfyui / "main.py", cpu

    def command(self) -> list[str]:
        # the harness's options follow its python and main.py; they always include --cpu (the tests have no GPU)
        options = super().command()[2:]
        return [str(self.python), str(self.main), *(option for option in options if self.cpu or option != "--cpu")]


def gpu_available(python: Path) -> bool:
    """Whether the torch of ComfyUI's python sees a GPU (ComfyUI does not start on a CPU-only torch without --cpu)."""
    probe = ("import torch; print(torch.cuda.is_available() or torch.backends.mps.is_available()"
             " or (hasattr(torch, 'xpu') and torch.xpu.is_available()))")
    try:
        answer = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False  # ComfyUI's own start then reports what is wrong with this python
    return answer.stdout.strip().endswith("True")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="animate.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True, help="portrait photo (one face)")
    parser.add_argument("--audio", type=Path, required=True, help="speech (wav, mp3, flac, ...); sets the length")
    parser.add_argument("--out", type=Path, help="video to write, .mp4 or .webm (default: IMAGE_AUDIO.mp4 here)")
    parser.add_argument("--models", type=Path, help="models folder (default: COMFYUI/models/aniportrait)")
    parser.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI folder (main.py)")
    parser.add_argument("--python", type=Path, default=Path(sys.executable), help="python that runs ComfyUI")
    parser.add_argument("--pose-template", type=Path, help="head-pose template .npy instead of Audio2Pose")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="any other widget, by node type or title, e.g. APK_Audio2Pose.id_seed=7 "
                             "(VALUE is JSON, or a plain string); repeatable")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for the video")
    parser.add_argument("--keep-temp", action="store_true", help="keep the server's base folder (log, outputs)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when there is a GPU")
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> None:
    for flag, path in (("--image", args.image), ("--audio", args.audio), ("--pose-template", args.pose_template)):
        if path is not None and not path.is_file():
            raise CliError(f"{flag}: {path} does not exist or is not a file.")
    if not (args.comfyui / "main.py").is_file():
        raise CliError(f"--comfyui: {args.comfyui} is not a ComfyUI folder (no main.py in it).")
    if args.out.suffix.lower() not in FORMATS:
        raise CliError(f"--out: {args.out} must end in {' or '.join(FORMATS)}.")


def check_models(models: Path) -> None:
    missing = missing_files([name for name in MODEL_FILES if name not in FILM_MODELS], models)  # no FILM here
    if missing:
        lines = [f"{len(missing)} model file(s) missing in {models}:"]
        lines += [f"  - {path}  [{model.name}: {model.purpose}, {model.size}]" for model, path in missing]
        lines += ["Download them with:",
                  "  " + download_command(models, list(dict.fromkeys(model.name for model, _ in missing))),
                  "or point --models at a folder that holds AniPortrait's pretrained_weights/ layout."]
        raise CliError("\n".join(lines))


def parse_setting(text: str) -> tuple[str, str, object]:
    target, separator, raw = text.partition("=")
    selector, dot, name = target.rpartition(".")
    if not (separator and dot and selector and name):
        raise CliError(f"--set {text}: write NODE.INPUT=VALUE, e.g. APK_Audio2Pose.id_seed=7")
    try:
        return selector, name, json.loads(raw)
    except ValueError:
        return selector, name, raw


def build_prompt(args: argparse.Namespace, object_info: dict, uploaded: dict[str, str],
                 extra: list[tuple[str, str, object]]) -> dict:
    prompt = workflow_to_prompt(json.loads((WORKFLOWS / "audio_driven_long.json").read_text()), object_info)
    if args.pose_template:
        use_pose_template(prompt, uploaded["pose_template"])
    sampler = writer = "APK_Lmk2VideoSamplerToFile"
    settings = [("Portrait (pick a file)", "image", uploaded["image"]),
                ("Speech (pick a file)", "audio", uploaded["audio"]),
                ("width", "value", args.width), ("height", "value", args.height), ("fps", "value", args.fps),
                (sampler, "steps", args.steps), (sampler, "cfg", args.cfg), (sampler, "seed", args.seed),
                (writer, "format", FORMATS[args.out.suffix.lower()]),
                (writer, "filename_prefix", "AniPortrait/animate")]
    for selector, input_name, value in settings + extra:
        try:
            set_inputs(prompt, selector, **{input_name: value})
        except WorkflowError as error:
            raise CliError(str(error)) from error
    return prompt


def use_pose_template(prompt: dict, template: str) -> None:
    """Head Pose Template (``template``, looped to the speech) instead of Audio2Pose and its model loader."""
    [pose_id] = [key for key, node in prompt.items() if node["class_type"] == "APK_Audio2Pose"]
    pose = prompt[pose_id]["inputs"]
    loader_id, _ = pose["audio2pose_model"]
    del prompt[loader_id]
    prompt[pose_id] = {"class_type": "APK_HeadPoseTemplate",
                       "inputs": {"audio": pose["audio"], "fps": pose["fps"], "template": template}}


def run(args: argparse.Namespace, extra: list[tuple[str, str, object]], base_dir: Path) -> Path:
    cpu = args.cpu or not gpu_available(args.python)
    server = ComfyUIServer(args.python, args.comfyui, cpu, packs=[(PACK_FOLDER_NAME, PACK_DIR)],
                           model_folders={"aniportrait": args.models}, base_dir=base_dir)
    print(f"starting ComfyUI ({args.comfyui}, on the {'CPU' if cpu else 'GPU'}) ...", flush=True)
    with server:
        client = ComfyClient(server.url, timeout=120)
        if "APK_VideoCombine" not in client.object_info():
            raise CliError("ComfyUI started but did not load this pack; its log:\n" + server.log_tail(60))
        uploads = {"image": args.image, "audio": args.audio, "pose_template": args.pose_template}
        uploaded = {key: client.upload(path) for key, path in uploads.items() if path is not None}
        prompt = build_prompt(args, client.object_info(), uploaded, extra)
        status, answer = client.queue_prompt(prompt)
        if status != 200:
            raise CliError(f"ComfyUI refused the workflow: {json.dumps(answer, indent=1)}")
        print(f"generating (ComfyUI log: {server.log_path}) ...", flush=True)
        history = client.wait_history(answer["prompt_id"], timeout=args.timeout)
        if history["status"]["status_str"] != "success":
            raise CliError("generation failed:\n" + describe_failure(history))
        [combine_id] = [key for key, node in prompt.items() if node["class_type"] in VIDEO_WRITERS]
        [entry] = history["outputs"][combine_id]["images"]
        return server.output_dir / entry["subfolder"] / entry["filename"]


def describe_failure(history: dict) -> str:
    for kind, data in history["status"].get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
    return json.dumps(history["status"], indent=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out or Path(f"{args.image.stem}_{args.audio.stem}.mp4")
    args.models = (args.models or args.comfyui / "models" / "aniportrait").resolve()
    base_dir = Path(tempfile.mkdtemp(prefix="aniportrait-animate-"))
    started = time.monotonic()
    try:
        check_inputs(args)
        extra = [parse_setting(text) for text in args.set]
        check_models(args.models)
        video = run(args, extra, base_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, args.out)
    except CliError as error:
        print(f"animate: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep_temp:
            print(f"server files kept in {base_dir}")
        else:
            shutil.rmtree(base_dir, ignore_errors=True)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
