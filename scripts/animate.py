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
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_DIR))

from aniportrait.comfy_host import ComfyClient, ComfyHostError, ComfyServer  # noqa: E402
from aniportrait.files import download_command, missing_files  # noqa: E402
from aniportrait.registry import FILM_MODELS, MODEL_FILES, MODELS_FOLDER_NAME, PACK_FOLDER_NAME  # noqa: E402
from scripts.workflow_api import WorkflowError, set_inputs, workflow_to_prompt  # noqa: E402

WORKFLOWS = PACK_DIR / "workflows"
# videos go here unless --out says otherwise (never into the pack's folder, which may be a git clone)
DEFAULT_OUTPUT_DIR = Path(os.environ.get("ANIPORTRAIT_OUTPUT_DIR", Path.home() / "aniportrait-output"))
PROGRESS_EVERY = 1.0  # seconds between two progress lines of the same node
FORMATS = {".mp4": "mp4 (h264+aac)", ".webm": "webm (vp9+opus)"}
SAMPLERS = ("APK_Lmk2VideoSampler", "APK_Lmk2VideoSamplerToFile")
VIDEO_WRITERS = ("APK_VideoCombine", "APK_Lmk2VideoSamplerToFile")  # the node whose file is the result


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


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
    parser.add_argument("--out", type=Path, help="video to write, .mp4 or .webm (default: "
                        f"{DEFAULT_OUTPUT_DIR}/IMAGE_AUDIO.mp4, numbered when it exists; "
                        "ANIPORTRAIT_OUTPUT_DIR changes the folder)")
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


def check_models(models: Path, python: Path) -> None:
    missing = missing_files([name for name in MODEL_FILES if name not in FILM_MODELS], models)  # no FILM here
    if missing:
        lines = [f"{len(missing)} model file(s) missing in {models}:"]
        lines += [f"  - {path}  [{model.name}: {model.purpose}, {model.size}]" for model, path in missing]
        lines += ["Download them with (ComfyUI's Python has what the download needs):",
                  "  " + download_command(models, list(dict.fromkeys(model.name for model, _ in missing)), python),
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
    server = ComfyServer(args.comfyui, args.python, packs=[(PACK_FOLDER_NAME, PACK_DIR)],
                         model_folders={MODELS_FOLDER_NAME: args.models}, base_dir=base_dir, cpu=cpu)
    say(f"starting ComfyUI ({args.comfyui}, on the {'CPU' if cpu else 'GPU'}) ...")
    try:
        server.start()
    except ComfyHostError as error:
        raise CliError(f"ComfyUI did not start: {str(error).splitlines()[0]}") from error
    try:
        client = ComfyClient(server.url, timeout=120)
        if "APK_VideoCombine" not in client.object_info():
            raise CliError("ComfyUI started but did not load this pack; its log:\n" + server.log_tail(60))
        uploads = {"image": args.image, "audio": args.audio, "pose_template": args.pose_template}
        uploaded = {key: client.upload(path) for key, path in uploads.items() if path is not None}
        prompt = build_prompt(args, client.object_info(), uploaded, extra)
        say("generating; the first run also loads the models:")
        prompt_id = asyncio.run(follow(client, prompt, args.timeout))
        history = client.wait_history(prompt_id, timeout=60)
        if history["status"]["status_str"] != "success":
            raise CliError("generation failed:\n" + describe_failure(history))
        [combine_id] = [key for key, node in prompt.items() if node["class_type"] in VIDEO_WRITERS]
        [entry] = history["outputs"][combine_id]["images"]
        return server.output_dir / entry["subfolder"] / entry["filename"]
    except ComfyHostError as error:  # a refused upload, a server that stopped answering
        raise CliError(str(error)) from error
    finally:
        server.stop()


def say(text: str) -> None:
    print(text, flush=True)


async def follow(client: ComfyClient, prompt: dict, timeout: float) -> str:
    """Queues ``prompt`` and prints what ComfyUI reports over its websocket (each node as it starts, the progress of
    long nodes such as the sampler's steps) until it finishes; returns the prompt id. The socket is opened before
    queueing so no event is missed; aiohttp is ComfyUI's own dependency."""
    import aiohttp

    titles = {key: node.get("_meta", {}).get("title", node["class_type"]) for key, node in prompt.items()}
    socket_url = client.base_url.replace("http://", "ws://", 1) + f"/ws?clientId={client.client_id}"
    async with aiohttp.ClientSession() as session, session.ws_connect(socket_url) as socket:
        status, answer = await asyncio.to_thread(client.queue_prompt, prompt)
        if status != 200:
            raise CliError(f"ComfyUI refused the workflow: {json.dumps(answer, indent=1)}")
        prompt_id, printer = answer["prompt_id"], ProgressPrinter(titles)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await socket.receive(timeout=max(1.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:  # binary frames are previews
                if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
                continue
            event = json.loads(message.data)
            data = event.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            printer.show(event.get("type"), data)
            if event.get("type") in ("execution_success", "execution_error", "execution_interrupted"):
                return prompt_id
    raise CliError(f"no video after {timeout:.0f} s (--timeout)")


class ProgressPrinter:
    """One line per node as it starts, and its progress (steps, frames) at most every PROGRESS_EVERY seconds."""

    def __init__(self, titles: dict[str, str]):
        self.titles = titles
        self.last_line: dict[str, float] = {}
        self.started = time.monotonic()

    def show(self, kind: str | None, data: dict) -> None:
        node = str(data.get("node") or data.get("node_id") or "")
        title = self.titles.get(node, node)
        elapsed = f"[{time.monotonic() - self.started:5.0f} s]"
        if kind == "executing" and node:
            say(f"{elapsed} {title}")
        elif kind == "progress":
            now, value, total = time.monotonic(), data.get("value", 0), data.get("max") or 1
            if value >= total or now - self.last_line.get(node, 0.0) >= PROGRESS_EVERY:
                self.last_line[node] = now
                say(f"{elapsed}   {title}: {value}/{total} ({100 * value / total:.0f} %)")
        elif kind == "execution_error":
            say(f"{elapsed} {data.get('node_type', title)} failed")


def describe_failure(history: dict) -> str:
    for kind, data in history["status"].get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_message', '').strip()}"
    return json.dumps(history["status"], indent=1)


def default_output(image: Path, audio: Path) -> Path:
    """DEFAULT_OUTPUT_DIR/IMAGE_AUDIO.mp4, numbered (_2, _3, ...) rather than replacing an earlier video."""
    path = DEFAULT_OUTPUT_DIR / f"{image.stem}_{audio.stem}.mp4"
    number = 2
    while path.exists():
        path = DEFAULT_OUTPUT_DIR / f"{image.stem}_{audio.stem}_{number}.mp4"
        number += 1
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out or default_output(args.image, args.audio)
    args.models = (args.models or args.comfyui / "models" / MODELS_FOLDER_NAME).resolve()
    base_dir = Path(tempfile.mkdtemp(prefix="aniportrait-animate-"))
    server_log = base_dir / "server.log"
    started, succeeded = time.monotonic(), False
    try:
        check_inputs(args)
        extra = [parse_setting(text) for text in args.set]
        check_models(args.models, args.python)
        video = run(args, extra, base_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, args.out)
        succeeded = True
    except CliError as error:
        print(f"animate: {error}", file=sys.stderr)
        return 1
    finally:
        if not succeeded and server_log.exists():  # keep what ComfyUI said about the failed run
            print(f"animate: ComfyUI's log of this run is kept in {server_log}", file=sys.stderr)
        elif args.keep_temp:
            say(f"server files kept in {base_dir}")
        else:
            shutil.rmtree(base_dir, ignore_errors=True)
    say(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
