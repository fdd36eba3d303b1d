"""Memory and speed against video length: the ready-made ``audio_driven_long`` workflow (the sampler draws pose
images per window and writes the video file as it goes) through a real ComfyUI on the tiny golden weights, for
speech of several lengths (lyl.wav repeated and cut to length).

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_length                  # 512², 1 step, 10/60/300 s
    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_length --size 64 --seconds 10 60 300 600

Each length runs in a fresh server, so one run's allocations cannot hide the next one's. Peak memory is the
resident set size of the server process, sampled every 20 ms from the moment the prompt is queued until it is
finished (and per node, from the websocket's "executing" events); "idle" is the same server's RSS after start-up,
before the prompt (the server runs on the CPU, as CI). Targets (issue 16): the longest clip's peak within 1.25x of
the shortest's, and at most 3 GB above the idle server. Writes bench/results/length[_NAME].json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile

from bench.common import SHARED, machine_description, write_results
from aniportrait.comfy_host import OFFLINE_ENV, ComfyClient, ComfyServer
from aniportrait.registry import MODELS_FOLDER_NAME, PACK_FOLDER_NAME
from scripts.animate import SAMPLERS
from scripts.workflow_api import set_inputs, workflow_to_prompt
from aniportrait.tiny_models import build_models_dir

REPO = Path(__file__).resolve().parents[1]
COMFY_ROOT = Path(os.environ.get("ANIPORTRAIT_COMFY_ROOT", Path.home() / ".cache" / "aniportrait-comfyui"))
GIB = 2 ** 30
FPS = 30.0
RSS_RATIO_TARGET, RSS_ABOVE_IDLE_TARGET_GIB = 1.25, 3.0


def speech_of_length(source: Path, seconds: float, target: Path) -> Path:
    """``source`` repeated until it lasts ``seconds``, cut there (FLAC: 10 minutes of WAV exceed ComfyUI's 100 MB
    upload limit)."""
    speech, rate = soundfile.read(source, dtype="float32")
    samples = round(seconds * rate)
    repeats = -(-samples // len(speech))
    soundfile.write(target, np.concatenate([speech] * repeats)[:samples], rate)
    return target


class PeakRss:
    """Largest RSS of a process while the block runs, sampled by a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.stage = "queued"
        self.stage_peaks: dict[str, int] = {}  # the largest RSS seen while each node ran
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = self.process.memory_info().rss
            self.peak = max(self.peak, rss)
            self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0), rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def long_workflow_prompt(client: ComfyClient, portrait: str, speech: str, size: int, steps: int) -> dict:
    object_info = client.object_info()
    prompt = workflow_to_prompt(json.loads((REPO / "workflows" / "audio_driven_long.json").read_text()), object_info)
    pose_guider = json.loads((SHARED / "golden" / "tiny" / "tiny_config.json").read_text())["pose_guider"]
    [sampler] = [node["class_type"] for node in prompt.values() if node["class_type"] in SAMPLERS]
    settings = {"width": {"value": size}, "height": {"value": size}, "fps": {"value": FPS},
                "Portrait (pick a file)": {"image": portrait}, "Speech (pick a file)": {"audio": speech},
                sampler: {"steps": steps, "filename_prefix": "bench/length"},
                "APK_LoadLmk2VideoModels": {"pose_guider_heads": pose_guider["transformer_num_attention_heads"],
                                            "pose_guider_head_dim": pose_guider["transformer_attention_head_dim"]}}
    for selector, values in settings.items():
        set_inputs(prompt, selector, **values)
    return prompt


def run_length(seconds: float, size: int, steps: int, models: Path, work: Path) -> dict:
    speech = speech_of_length(SHARED / "assets" / "lyl.wav", seconds, work / f"speech_{seconds:g}s.flac")
    server = ComfyServer.from_install(COMFY_ROOT, packs=[(PACK_FOLDER_NAME, REPO)],
                                      model_folders={MODELS_FOLDER_NAME: models},
                                      base_dir=work / f"server_{seconds:g}s", env=OFFLINE_ENV)
    with server:
        client = ComfyClient(server.url, timeout=120)
        prompt = long_workflow_prompt(client, client.upload(SHARED / "assets" / "lyl.png"), client.upload(speech),
                                      size, steps)
        idle = psutil.Process(server.pid).memory_info().rss
        started = time.monotonic()
        with PeakRss(server.pid) as rss:
            def follow(event: dict) -> None:
                node = (event.get("data") or {}).get("node")
                if event.get("type") == "executing" and node is not None:
                    rss.stage = prompt[node]["class_type"]

            run = client.run(prompt, timeout=48 * 3600, on_event=follow)
        wall = time.monotonic() - started
        if run.status != "success":
            raise RuntimeError(f"the {seconds:g} s run failed: {run.describe()}\n" + server.log_tail(40))
        [entry] = [image for output in run.outputs.values() for image in output.get("images", [])]
        video = server.output_dir / entry["subfolder"] / entry["filename"]
        frames = _frame_count(video)
    return {"seconds": seconds, "frames": frames, "wall_s": round(wall, 1), "s_per_frame": round(wall / frames, 4),
            "idle_rss_gib": round(idle / GIB, 3), "peak_rss_gib": round(rss.peak / GIB, 3),
            "above_idle_gib": round((rss.peak - idle) / GIB, 3), "file_mib": round(video.stat().st_size / 2**20, 2),
            "peak_rss_gib_while": {stage: round(value / GIB, 3) for stage, value in rss.stage_peaks.items()}}


def _frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


def markdown(result: dict) -> str:
    rows = result["runs"]
    lines = [f"# Memory against video length ({result['machine']})", "",
             "`workflows/audio_driven_long.json` through a real ComfyUI (CPU), "
             f"tiny golden weights, {result['size']}x{result['size']}, {result['steps']} step(s), cfg 3.5, "
             f"{FPS:g} fps; speech = lyl.wav repeated. A fresh server per length. Written by "
             "`bench/bench_length.py`.", "",
             "| speech s | frames | wall s | s/frame | idle RSS GiB | peak RSS GiB | peak above idle GiB | file MiB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seconds']:g} | {r['frames']} | {r['wall_s']} | {r['s_per_frame']} | {r['idle_rss_gib']} | "
              f"{r['peak_rss_gib']} | {r['above_idle_gib']} | {r['file_mib']} |" for r in rows]
    stages = list(rows[-1]["peak_rss_gib_while"])
    lines += ["", "Peak RSS (GiB) while each node ran:", "", "| speech s | " + " | ".join(stages) + " |",
              "|---|" + "---|" * len(stages)]
    lines += [f"| {r['seconds']:g} | " + " | ".join(str(r["peak_rss_gib_while"].get(stage, "")) for stage in stages)
              + " |" for r in rows]
    verdict = result["targets"]
    lines += ["", f"Peak RSS of the longest / shortest clip: {verdict['ratio']:.3f} (target <= {RSS_RATIO_TARGET}); "
              f"largest peak above the idle server: {verdict['max_above_idle_gib']:.3f} GiB "
              f"(target <= {RSS_ABOVE_IDLE_TARGET_GIB}): {'met' if verdict['met'] else 'NOT met'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--name", default="", help="results file suffix: bench/results/length_NAME.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aniportrait-bench-length-") as temporary:
        work = Path(temporary)
        models = build_models_dir(work / "models" / MODELS_FOLDER_NAME, SHARED / "golden", SHARED / "assets")
        runs = []
        for seconds in sorted(args.seconds):
            runs.append(run_length(seconds, args.size, args.steps, models, work))
            # after every length: a long series cut short still leaves its results
            write_results("length" + (f"_{args.name}" if args.name else ""), summary(args, runs),
                          markdown(summary(args, runs)))
    return 0


def summary(args: argparse.Namespace, runs: list[dict]) -> dict:
    ratio = runs[-1]["peak_rss_gib"] / runs[0]["peak_rss_gib"]
    above = max(run["above_idle_gib"] for run in runs)
    return {"machine": machine_description(), "size": args.size, "steps": args.steps,
            "runs": runs, "targets": {"ratio": round(ratio, 4), "max_above_idle_gib": above,
                                      "met": ratio <= RSS_RATIO_TARGET and above <= RSS_ABOVE_IDLE_TARGET_GIB}}


if __name__ == "__main__":
    raise SystemExit(main())
