"""Lmk2Video speed and memory at FULL size (SD1.5 UNets + motion modules, PoseGuider 320, sd-vae-ft-mse, ViT-L/14
CLIP; random weights built from the configs, no download) on synthetic inputs.

    ~/.cache/aniportrait-comfyui/venv/bin/python -m bench.bench_video   # CPU: 64x64, 20 frames, 2 steps
    python -m bench.bench_video --device cuda                             # GPU: 512x512, 48 frames, 25 steps, fp16

Times each stage (CLIP, VAE encode, reference UNet, PoseGuider per window, UNet per CFG window, DDIM step, VAE
decode) and the whole sampler per frame, twice: one context window per UNet call (the original) and the memory
plan's several windows per call, so their ratio is measured in one run. Peak memory: CUDA max_memory_allocated per
stage; on the CPU the resident set size sampled every 5 ms, after handing freed memory back to the system (glibc),
so that a stage's growth is not hidden by memory an earlier stage freed. Also reports the measured memory of one
CFG window's UNet call and of one batched decode call next to the constants of the memory plan
(aniportrait/video/memory_plan.py).
Writes bench/results/video_<device>.json and .md. Needs torch, transformers, diffusers, opencv and psutil (a GPU
machine without diffusers can take its pure-Python wheel).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Callable

import cv2
import numpy as np
import psutil
import torch

from bench.common import machine_description, write_results
from aniportrait.checkpoint import device_and_dtype
from aniportrait.video import memory_plan
from aniportrait.video.clip_encoder import IMAGE_ENCODER_CONFIG, encode_image
from aniportrait.video.context import context_windows
from aniportrait.video.decoding import decode_video
from aniportrait.video.loading import build_denoising_unet, build_pose_guider, build_reference_unet
from aniportrait.video.pipeline import EncodedReference, SamplerRun, SamplerSettings, encode_reference, generate
from aniportrait.video.reference_unet import round_bank_like_original
from aniportrait.video.scheduler import DDIMScheduler
from aniportrait.video.sd15_unet_config import SD15_UNET_CONFIG
from aniportrait.video.vae import SD_VAE_FT_MSE_CONFIG, encode_latent, vae_pixel_values

GIB = 2 ** 30


def _release_freed_host_memory() -> None:
    """glibc keeps freed blocks mapped; without this a stage that reuses them shows no growth at all."""
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)


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
            _release_freed_host_memory()
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


def time_encoder_stages(meter: Meter, encoders: SimpleNamespace, portrait: np.ndarray, size: int,
                        repeats: int) -> dict[str, dict]:
    """CLIP, VAE encode and reference UNet, each on its own."""
    clip = encode_image(encoders.image_encoder, portrait)
    pixels = vae_pixel_values(portrait, size, size)
    latent = encode_latent(encoders.vae, pixels)
    return {
        "clip": timed(meter, lambda: encode_image(encoders.image_encoder, portrait), repeats),
        "vae_encode": timed(meter, lambda: encode_latent(encoders.vae, pixels), repeats),
        "reference_unet": timed(
            meter, lambda: round_bank_like_original(encoders.reference_unet(latent, clip[:, None])), repeats),
    }


def time_denoising_stages(meter: Meter, models: SimpleNamespace, reference: EncodedReference, poses: np.ndarray,
                          window: int, steps: int, repeats: int) -> dict[str, dict]:
    """PoseGuider and CFG UNet on one window, a DDIM step, and VAE decoding one frame and the whole video."""
    device, dtype = device_and_dtype(models.denoising_unet)
    frames, size = poses.shape[0], poses.shape[1]
    pose = (2.0 * torch.from_numpy(poses[:window]).permute(3, 0, 1, 2).float() - 1.0)[None]
    pose = pose.to(device=device, dtype=dtype).contiguous()
    features = [torch.cat([f, f]) for f in models.pose_guider(pose)]
    bank = {name: tokens.to(device) for name, tokens in reference.bank.items()}
    embeds = reference.clip_embeds.to(device)
    context = torch.cat([torch.zeros_like(embeds), embeds])
    noisy = torch.randn((2, 4, window, size // 8, size // 8), device=device, dtype=dtype)
    timestep = torch.tensor(999, device=device)
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(steps)
    latents = torch.randn((1, 4, frames, size // 8, size // 8), device=device, dtype=dtype)
    decode_batch = min(frames, memory_plan.decode_frames_per_call(size, size, dtype,
                                                                  memory_plan.free_device_memory(device)))
    stages = {
        "pose_guider_window": timed(meter, lambda: models.pose_guider(pose), repeats),
        "unet_cfg_window": timed(
            meter, lambda: models.denoising_unet(noisy, timestep, encoder_hidden_states=context,
                                                 pose_features=features, reference_bank=bank,
                                                 reference_mask=[False, True]), repeats),
        "ddim_step": timed(meter, lambda: scheduler.step(latents, 999, latents), repeats),
        "vae_decode_frame": timed(meter, lambda: decode_video(models.vae, latents[:, :, :1]), repeats),
        "vae_decode_video": timed(meter, lambda: decode_video(models.vae, latents, decode_batch), 0),
        "vae_decode_video_one_per_call": timed(meter, lambda: decode_video(models.vae, latents, 1), 0),
    }
    stages["vae_decode_video"]["frames_per_call"] = decode_batch
    return stages


def time_sampler(meter: Meter, models: SimpleNamespace, reference: EncodedReference, poses: np.ndarray,
                 steps: int, cfg: float, planned: int, rounds: int) -> dict[str, dict]:
    """The whole sampler with one window per UNet call and with the planned number, alternated ``rounds`` times
    (best of them: the machine may be shared)."""
    frames = poses.shape[0]
    runs: dict[str, dict] = {}
    for _ in range(rounds):
        for name, per_call in (("one_window_per_call", 1), ("planned_windows_per_call", planned)):
            record: dict = {}
            with meter.measure(record):
                video = generate(models, reference, poses, SamplerSettings(steps=steps, guidance=cfg, seed=42),
                                 SamplerRun(windows_per_call=per_call))
            record.update(windows_per_call=per_call, frames_per_second=frames / record["seconds"],
                          seconds_per_frame=record["seconds"] / frames, finite=bool(torch.isfinite(video).all()))
            print(f"{name} ({per_call}): {record['seconds']:.1f} s ({record['frames_per_second']:.3f} frames/s), "
                  f"peak {record['peak_gib']:.2f} GiB", flush=True)
            if name not in runs or record["seconds"] < runs[name]["seconds"]:
                runs[name] = record
    return runs


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
    with torch.no_grad():
        with meter.measure(build["reference_models"]):
            encoders = reference_models(device, dtype)
        stages = time_encoder_stages(meter, encoders, portrait, size, repeats)
        reference = encode_reference(encoders, portrait, size, size)
        vae = encoders.vae
        encoders = None  # gone before the denoising side is built (see reference_models)
        with meter.measure(build["denoising_models"]):
            models = denoising_models(vae, device, dtype)
        print(f"models built in {sum(b['seconds'] for b in build.values()):.1f} s", flush=True)
        stages.update(time_denoising_stages(meter, models, reference, poses, window, steps, repeats))

    planned = memory_plan.unet_windows_per_call(window, size, size, args.cfg > 1, dtype,
                                                memory_plan.free_device_memory(device), len(windows))
    runs = time_sampler(meter, models, reference, poses, steps, args.cfg, planned, rounds=1 if on_gpu else 2)

    unet_elements = window * (size // 8) ** 2 * 2  # frames x latent pixels x CFG rows of one window
    decoded_pixels = stages["vae_decode_video"]["frames_per_call"] * size * size  # one batched decode call
    result = {
        "device": torch.cuda.get_device_name(device) if on_gpu else f"CPU ({machine_description()}, "
                                                                    f"{args.threads} threads)",
        "torch": torch.__version__, "dtype": str(dtype), "size": size, "frames": frames, "steps": steps,
        "cfg": args.cfg, "windows": len(windows), "window_frames": window,
        "build_seconds": {name: b["seconds"] for name, b in build.items()}, "stages": stages, "sampler": runs,
        "batching_speedup": runs["one_window_per_call"]["seconds"] / runs["planned_windows_per_call"]["seconds"],
        "batching_speedup_cpu_time": (runs["one_window_per_call"]["cpu_seconds"]
                                      / runs["planned_windows_per_call"]["cpu_seconds"]),
        "memory_plan": {
            "measured_unet_bytes_per_latent_element":
                stages["unet_cfg_window"]["extra_gib"] * GIB / (unet_elements * dtype.itemsize),
            "assumed_unet_bytes_per_latent_element": memory_plan.UNET_BYTES_PER_LATENT_ELEMENT,
            "measured_decode_bytes_per_pixel":
                stages["vae_decode_video"]["extra_gib"] * GIB / (decoded_pixels * dtype.itemsize),
            "assumed_decode_bytes_per_pixel": memory_plan.DECODE_BYTES_PER_PIXEL,
        },
    }
    write_results(f"video_{device.type}", result, markdown(result))


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
              "Memory plan (one call at this size, its fixed buffers included, which dominate at small sizes): "
              f"UNet {plan['measured_unet_bytes_per_latent_element']:.0f} bytes per latent element "
              f"measured vs {plan['assumed_unet_bytes_per_latent_element']} assumed; VAE decode "
              f"{plan['measured_decode_bytes_per_pixel']:.0f} bytes per pixel measured vs "
              f"{plan['assumed_decode_bytes_per_pixel']} assumed.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
