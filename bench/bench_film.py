"""The -acc speed-up on the CPU: sampling time of a clip with every pose frame diffused, and with only every
fi_step-th (Select Keyframes) plus FILM for the rest, on the same clip, in one run (alternated, best of N).

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_film                    # tiny golden weights
    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_film --weights full     # full-size, random weights

FILM itself runs with a stand-in (golden-wide's tiny ``film_tiny.pt``, else the tests' cross-fade): the released
film_net_fp16.pt is not available offline, so the FILM row measures the driver (schedule, batching, copies), not
the real network. Writes bench/results/film_<weights>_cpu.json and .md.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_video import denoising_models, reference_models, synthetic_inputs
from bench.common import SHARED, machine_description, timed, write_results
from aniportrait.video.frame_interpolation import interpolate, load_film, select_keyframes
from aniportrait.video.pipeline import SamplerSettings, encode_reference, generate, load_video_models
from aniportrait.tiny_models import tiny_video_files
from aniportrait.tiny_models import write_film_stand_in

DEFAULTS = {"tiny": {"size": 128, "frames": 48, "steps": 4}, "full": {"size": 64, "frames": 24, "steps": 2}}


def networks(weights: str):
    """(encoders, denoising networks) in float32 on the CPU."""
    if weights == "tiny":
        models = load_video_models(tiny_video_files(SHARED / "golden"), torch.float32, "cpu")
        return models, models
    encoders = reference_models(torch.device("cpu"), torch.float32)
    return encoders, denoising_models(encoders.vae, torch.device("cpu"), torch.float32)


def film_stand_in(folder: Path) -> torch.nn.Module:
    shared = SHARED / "golden-wide" / "tiny" / "film_tiny.pt"
    if shared.is_file():
        return load_film(shared, [shared.parent])
    return load_film(write_film_stand_in(folder / "film_net_fp16.pt"), [folder])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="tiny", choices=list(DEFAULTS))
    parser.add_argument("--size", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--fi-step", type=int, default=3)
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--rounds", type=int, default=2, help="alternated repeats (best kept)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = {name: getattr(args, name) or value for name, value in DEFAULTS[args.weights].items()}
    size, frames, steps = settings["size"], settings["frames"], settings["steps"]
    torch.set_num_threads(args.threads)

    encoders, denoisers = networks(args.weights)
    portrait, poses = synthetic_inputs(size, frames)
    with torch.no_grad():
        reference = encode_reference(encoders, portrait, size, size)
    keyframe_poses, plan = select_keyframes(torch.from_numpy(poses), args.fi_step)
    clips = {"every_frame": poses, "keyframes": keyframe_poses.numpy()}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    keyframe_video = None
    for _ in range(args.rounds):
        for name, clip in clips.items():
            cpu_start = time.process_time()
            elapsed, video = timed(lambda clip=clip: generate(
                denoisers, reference, clip, SamplerSettings(steps=steps, guidance=args.cfg, seed=42)))
            cpu = time.process_time() - cpu_start
            print(f"{name}: {clip.shape[0]} frames diffused in {elapsed:.2f} s ({cpu:.2f} s CPU)", flush=True)
            seconds[name] = min(seconds.get(name, elapsed), elapsed)
            cpu_seconds[name] = min(cpu_seconds.get(name, cpu), cpu)
            keyframe_video = video if name == "keyframes" else keyframe_video
    with tempfile.TemporaryDirectory() as folder:
        model = film_stand_in(Path(folder))
        film_seconds, video = timed(lambda: interpolate(model, keyframe_video, args.fi_step))
    assert video.shape[0] == plan.interpolated_frames

    result = {
        "machine": machine_description(), "threads": args.threads, "torch": torch.__version__,
        "weights": args.weights, "size": size, "frames": frames, "steps": steps, "cfg": args.cfg,
        "fi_step": args.fi_step, "keyframes": plan.keyframes, "output_frames": plan.interpolated_frames,
        "diffusion_seconds_every_frame": seconds["every_frame"], "diffusion_seconds_keyframes": seconds["keyframes"],
        "diffusion_speedup": seconds["every_frame"] / seconds["keyframes"],
        "process_cpu_seconds_every_frame": cpu_seconds["every_frame"],
        "process_cpu_seconds_keyframes": cpu_seconds["keyframes"],
        "process_cpu_speedup": cpu_seconds["every_frame"] / cpu_seconds["keyframes"],
        "film_stand_in_seconds": film_seconds,
    }
    write_results(f"film_{args.weights}_cpu", result, markdown(result))


def markdown(r: dict) -> str:
    return (f"# -acc (Select Keyframes + FILM) benchmark, CPU ({r['machine']}, {r['threads']} threads)\n\n"
            f"{r['weights']} weights, torch {r['torch']}, float32, {r['size']}x{r['size']}, {r['frames']} pose "
            f"frames, {r['steps']} DDIM steps, cfg {r['cfg']}, fi_step {r['fi_step']}. Written by "
            "`bench/bench_film.py` (best of alternated rounds).\n\n"
            "| sampler (DDIM + decode) on | frames diffused | seconds | process CPU s | seconds per output frame |\n"
            "|---|---|---|---|---|\n"
            f"| every pose frame | {r['frames']} | {r['diffusion_seconds_every_frame']:.2f} | "
            f"{r['process_cpu_seconds_every_frame']:.2f} | {r['diffusion_seconds_every_frame'] / r['frames']:.3f} |\n"
            f"| keyframes (fi_step {r['fi_step']}) | {r['keyframes']} | {r['diffusion_seconds_keyframes']:.2f} | "
            f"{r['process_cpu_seconds_keyframes']:.2f} | "
            f"{r['diffusion_seconds_keyframes'] / r['output_frames']:.3f} |\n\n"
            f"Diffusion speed-up: **{r['diffusion_speedup']:.2f}x** wall clock, "
            f"{r['process_cpu_speedup']:.2f}x process CPU time ({r['output_frames']} output frames from "
            f"{r['keyframes']} keyframes; the original's length rule, {r['frames'] - r['output_frames']} frame(s) "
            "short, or padded to the full length).\n\n"
            f"FILM driver with a tiny stand-in network: {r['film_stand_in_seconds']:.3f} s for "
            f"{r['output_frames'] - r['keyframes']} new frames. The real film_net_fp16.pt is much heavier (the "
            "original reports 1.3 -> 0.56 s per frame on an A100 with -acc, FILM included); its cost is not "
            "measured here.\n")


if __name__ == "__main__":
    main()
