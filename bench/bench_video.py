"""Lmk2Video speed and memory at FULL size (SD1.5 UNets + motion modules, PoseGuider 320, sd-vae-ft-mse, ViT-L/14
CLIP; random weights built from the configs, no download) on synthetic inputs.

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_video   # CPU: 64x64, 20 frames, 2 steps
    python -m bench.bench_video --device cuda                             # GPU: 512x512, 48 frames, 25 steps, fp16

Times each stage (CLIP, VAE encode, reference UNet, PoseGuider per window, UNet per CFG window, DDIM step, VAE
decode) and the whole sampler per frame, twice: one context window per UNet call (the original) and the memory
plan's several windows per call, so their ratio is measured in one run. Peak memory: CUDA max_memory_allocated per
stage; on the CPU the resident set size sampled every 5 ms. Also reports the measured per-window UNet and per-frame
decode memory next to the constants the memory plan in models/video/pipeline.py assumes.
Writes bench/results/video_<device>.json and .md. Needs torch, transformers, diffusers, opencv and psutil (a GPU
machine without diffusers can take its pure-Python wheel).
"""
from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import cv2
import numpy as np
import psutil
import torch

from models.video import pipeline as lmk2video
from models.video.clip_encoder import IMAGE_ENCODER_CONFIG, encode_image
from models.video.context import context_windows
from models.video.loading import build_denoising_unet, build_pose_guider, build_reference_unet
from models.video.pipeline import encode_reference, generate
from models.video.reference_unet import round_bank_like_original
from models.video.scheduler import DDIMSampler
from models.video.sd15_unet_config import SD15_UNET_CONFIG
from models.video.vae import SD_VAE_FT_MSE_CONFIG, decode_latents, encode_latent, vae_pixel_values

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
GIB = 2 ** 30


class Meter:
    """Wall time and peak memory of a block (device-synchronised on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.process = psutil.Process()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self, record: dict):
        self.sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        else:
            before = self.process.memory_info().rss
            peak = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], self.process.memory_info().rss)
                    stop.wait(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.sync()
            record["seconds"] = time.perf_counter() - start
            # the process's CPU time: on a shared CPU it moves much less with other load than the wall time
            record["cpu_seconds"] = time.process_time() - start_cpu
            if self.device.type == "cuda":
                top = torch.cuda.max_memory_allocated(self.device)
            else:
                stop.set()
                sampler.join()
                top = max(peak[0], self.process.memory_info().rss)
            record["peak_gib"] = top / GIB
            record["extra_gib"] = (top - before) / GIB  # above what was allocated when the stage began


def timed(meter: Meter, run: Callable[[], object], repeats: int) -> dict:
    """Best of ``repeats`` after one warm-up run (the warm-up is the only run when repeats is 0)."""
    record: dict = {}
    with meter.measure(record):
        run()
    best = dict(record)
    for _ in range(repeats):
        with meter.measure(record):
            run()
        if record["seconds"] < best["seconds"]:
            best = dict(record)
    return best


def reference_models(device: torch.device, dtype: torch.dtype) -> SimpleNamespace:
    """The encoders (CLIP, VAE, ReferenceNet) at full size; the denoising side is built after them, so the CPU run
    never holds all five networks at once."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    with torch.device(device):
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**IMAGE_ENCODER_CONFIG))
        vae = AutoencoderKL.from_config(SD_VAE_FT_MSE_CONFIG)
        reference_unet = build_reference_unet(SD15_UNET_CONFIG, dtype)
    return SimpleNamespace(image_encoder=torch.nn.Module.to(image_encoder, dtype).eval(),
                           vae=torch.nn.Module.to(vae, dtype).eval(), reference_unet=reference_unet)


def denoising_models(vae: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> SimpleNamespace:
    with torch.device(device):
        return SimpleNamespace(vae=vae, denoising_unet=build_denoising_unet(SD15_UNET_CONFIG, dtype),
                               pose_guider=build_pose_guider(dtype=dtype))


def synthetic_inputs(size: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth colour portrait stand-in and pose images of thin coloured polylines (raw channel order)."""
    rng = np.random.default_rng(0)
    portrait = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size),
                          interpolation=cv2.INTER_CUBIC)
    base = rng.uniform(0.3, 0.7, (40, 2))
    poses = np.zeros((frames, size, size, 3), np.uint8)
    for i, canvas in enumerate(poses):
        points = ((base + 0.02 * np.sin(i / 5 + np.arange(40))[:, None]) * size).astype(np.int32)
        cv2.polylines(canvas, [points], False, (200, 180, 40), 2)
    return portrait, poses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, help="width = height (default 64 on CPU, 512 on CUDA)")
    parser.add_argument("--frames", type=int, help="video length (default 20 on CPU, 48 on CUDA)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default 2 on CPU, 25 on CUDA)")
    parser.add_argument("--cfg", type=float, default=3.5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    size = args.size or (512 if on_gpu else 64)
    frames = args.frames or (48 if on_gpu else 20)
    steps = args.steps or (25 if on_gpu else 2)
    dtype = torch.float16 if on_gpu else torch.float32
    repeats = 3 if on_gpu else 0
    torch.set_num_threads(args.threads)
    meter = Meter(device)

    portrait, poses = synthetic_inputs(size, frames)
    windows = context_windows(frames)
    window = len(windows[0])
    print(f"{device} {dtype} {size}x{size}, {frames} frames, {len(windows)} windows of {window}, {steps} steps",
          flush=True)
    build: dict[str, dict] = {"reference_models": {}, "denoising_models": {}}
    stages: dict[str, dict] = {}
    with torch.no_grad():
        with meter.measure(build["reference_models"]):
            encoders = reference_models(device, dtype)
        clip = encode_image(encoders.image_encoder, portrait)
        stages["clip"] = timed(meter, lambda: encode_image(encoders.image_encoder, portrait), repeats)
        pixels = vae_pixel_values(portrait, size, size)
        latent = encode_latent(encoders.vae, pixels)
        stages["vae_encode"] = timed(meter, lambda: encode_latent(encoders.vae, pixels), repeats)
        stages["reference_unet"] = timed(
            meter, lambda: round_bank_like_original(encoders.reference_unet(latent, clip[:, None])), repeats)
        reference = encode_reference(encoders, portrait, size, size)
        vae = encoders.vae
        del encoders, clip, latent
        with meter.measure(build["denoising_models"]):
            models = denoising_models(vae, device, dtype)
        print(f"models built in {sum(b['seconds'] for b in build.values()):.1f} s", flush=True)

        pose = (2.0 * torch.from_numpy(poses[:window]).permute(3, 0, 1, 2).float() - 1.0)[None]
        pose = pose.to(device=device, dtype=dtype).contiguous()
        stages["pose_guider_window"] = timed(meter, lambda: models.pose_guider(pose), repeats)
        features = [torch.cat([f, f]) for f in models.pose_guider(pose)]
        bank = {name: tokens.to(device) for name, tokens in reference.bank.items()}
        embeds = reference.clip_embeds.to(device)
        context = torch.cat([torch.zeros_like(embeds), embeds])
        noisy = torch.randn((2, 4, window, size // 8, size // 8), device=device, dtype=dtype)
        timestep = torch.tensor(999, device=device)
        stages["unet_cfg_window"] = timed(
            meter, lambda: models.denoising_unet(noisy, timestep, encoder_hidden_states=context,
                                                 pose_features=features, reference_bank=bank,
                                                 reference_mask=[False, True]), repeats)
        del features, noisy, bank
        scheduler = DDIMSampler()
        scheduler.set_timesteps(steps)
        latents = torch.randn((1, 4, frames, size // 8, size // 8), device=device, dtype=dtype)
        stages["ddim_step"] = timed(meter, lambda: scheduler.step(latents, 999, latents), repeats)
        stages["vae_decode_frame"] = timed(meter, lambda: decode_latents(vae, latents[:, :, :1]), repeats)
        budget = lmk2video.free_device_memory(device)
        decode_batch = min(frames, lmk2video.decode_frames_per_call(size, size, dtype, budget))
        stages["vae_decode_video"] = timed(meter, lambda: decode_latents(vae, latents, decode_batch), 0)
        stages["vae_decode_video"]["frames_per_call"] = decode_batch
        stages["vae_decode_video_one_per_call"] = timed(meter, lambda: decode_latents(vae, latents, 1), 0)
        del latents

    runs: dict[str, dict] = {}
    planned = lmk2video.unet_windows_per_call(window, size, size, args.cfg > 1, dtype,
                                              lmk2video.free_device_memory(device), len(windows))
    variants = (("one_window_per_call", 1), ("planned_windows_per_call", planned))
    for _ in range(1 if on_gpu else 2):  # alternated on the CPU, best of two: the machine is shared
        for name, per_call in variants:
            record: dict = {}
            with meter.measure(record):
                video = generate(models, reference, poses, steps=steps, guidance=args.cfg, seed=42,
                                 windows_per_call=per_call)
            record.update(windows_per_call=per_call, frames_per_second=frames / record["seconds"],
                          seconds_per_frame=record["seconds"] / frames, finite=bool(torch.isfinite(video).all()))
            print(f"{name} ({per_call}): {record['seconds']:.1f} s ({record['frames_per_second']:.3f} frames/s), "
                  f"peak {record['peak_gib']:.2f} GiB", flush=True)
            if name not in runs or record["seconds"] < runs[name]["seconds"]:
                runs[name] = record

    itemsize = torch.finfo(dtype).bits // 8
    unet_bytes = stages["unet_cfg_window"]["extra_gib"] * GIB / (window * (size // 8) ** 2 * 2 * itemsize)
    decode_bytes = stages["vae_decode_frame"]["extra_gib"] * GIB / (size * size * itemsize)
    result = {
        "device": torch.cuda.get_device_name(device) if on_gpu else f"CPU ({platform.processor() or 'x86-64'}, "
                                                                    f"{args.threads} threads)",
        "torch": torch.__version__, "dtype": str(dtype), "size": size, "frames": frames, "steps": steps,
        "cfg": args.cfg, "windows": len(windows), "window_frames": window,
        "build_seconds": {name: b["seconds"] for name, b in build.items()}, "stages": stages, "sampler": runs,
        "batching_speedup": runs["one_window_per_call"]["seconds"] / runs["planned_windows_per_call"]["seconds"],
        "batching_speedup_cpu_time": (runs["one_window_per_call"]["cpu_seconds"]
                                      / runs["planned_windows_per_call"]["cpu_seconds"]),
        "memory_plan": {
            "measured_unet_bytes_per_latent_element": unet_bytes,
            "assumed_unet_bytes_per_latent_element": lmk2video.UNET_BYTES_PER_LATENT_ELEMENT,
            "measured_decode_bytes_per_pixel": decode_bytes,
            "assumed_decode_bytes_per_pixel": lmk2video.DECODE_BYTES_PER_PIXEL,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"video_{device.type}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"# Lmk2Video benchmark ({result['device']})", "",
             f"Full-size networks, random weights, torch {result['torch']}, {result['dtype']}, "
             f"{result['size']}x{result['size']}, {result['frames']} frames ({result['windows']} closed-loop windows "
             f"of {result['window_frames']}), {result['steps']} DDIM steps, cfg {result['cfg']}. "
             "Written by `bench/bench_video.py`.", "",
             "| stage | seconds | process CPU s | peak GiB | above start GiB |", "|---|---|---|---|---|"]
    for name, stage in result["stages"].items():
        lines.append(f"| {name} | {stage['seconds']:.3f} | {stage['cpu_seconds']:.2f} | {stage['peak_gib']:.2f} "
                     f"| {stage['extra_gib']:.2f} |")
    lines += ["", "| sampler (generate: DDIM loop + decode) | windows per UNet call | seconds | process CPU s | "
                  "frames/s | peak GiB |", "|---|---|---|---|---|---|"]
    for name, run in result["sampler"].items():
        lines.append(f"| {name} | {run['windows_per_call']} | {run['seconds']:.1f} | {run['cpu_seconds']:.1f} "
                     f"| {run['frames_per_second']:.3f} | {run['peak_gib']:.2f} |")
    plan = result["memory_plan"]
    lines += ["", f"Batching windows: {result['batching_speedup']:.2f}x the speed of one window per call "
                  f"(process CPU time: {result['batching_speedup_cpu_time']:.2f}x).", "",
              f"Memory plan: UNet {plan['measured_unet_bytes_per_latent_element']:.0f} bytes per latent element "
              f"measured vs {plan['assumed_unet_bytes_per_latent_element']} assumed; VAE decode "
              f"{plan['measured_decode_bytes_per_pixel']:.0f} bytes per pixel measured vs "
              f"{plan['assumed_decode_bytes_per_pixel']} assumed.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
