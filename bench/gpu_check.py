"""The prepared GPU check (run through ``bash bench/gpu_check.sh``; see bench/README.md).

Writes random weights in AniPortrait's released formats (denoising_unet.pth + motion_module.pth, reference_unet.pth,
pose_guider.pth as fp32 pickles, sd-vae-ft-mse and the CLIP image encoder as saved folders, SD1.5's unet
config.json), loads them through the pack's own loaders, encodes a synthetic portrait and runs the pack's sampler
at 512x512, 25 DDIM steps, cfg 3.5, 16/4 context windows, fp16, for 48 and 144 frames. One JSON: seconds per frame,
peak VRAM (torch's max_memory_allocated and the peak of nvidia-smi's memory.used, sampled), the windows per UNet
call the memory plan chose (counted from the UNet's batch sizes), and what is known of the original pipeline.

``--smoke``: tiny networks, 64x64, 2 steps, float32 on the CPU: the same code path end to end in seconds (CI).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.bench_video import synthetic_inputs
from aniportrait.video.clip_encoder import IMAGE_ENCODER_CONFIG
from aniportrait.video.config import Lmk2VideoConfig, PoseGuiderConfig
from aniportrait.video.loading import (build_denoising_unet, build_pose_guider, build_reference_unet,
                                      is_motion_module_key)
from aniportrait.video.memory import DeviceMemory
from aniportrait.video.pipeline import (SamplerRun, SamplerSettings, VideoModelFiles, encode_reference, generate,
                                        load_video_models)
from aniportrait.video.sd15_unet_config import SD15_UNET_CONFIG
from aniportrait.video.speed import SPEED_OPTIONS, apply_speed
from aniportrait.video.vae import SD_VAE_FT_MSE_CONFIG

GIB = 2 ** 30
ORIGINAL_UNAVAILABLE = {
    "available": False,
    "reason": "the original AniPortrait code (Pose2VideoPipeline) is not in this repository nor on the GPU "
              "machine, so it was not run; the issue quotes users' figures for it: about 1.3 s/frame on an A100 "
              "at 512x512 with 10-16 GB of VRAM",
}


@dataclass(frozen=True)
class Scale:
    unet_config: dict
    vae_config: dict
    clip_config: dict
    pose_guider: tuple[int, int, int]  # channels, heads, head dim
    size: int
    steps: int
    frames: tuple[int, ...]
    context: tuple[int, int] = (16, 4)
    cfg: float = 3.5


FULL = Scale(unet_config=SD15_UNET_CONFIG, vae_config=SD_VAE_FT_MSE_CONFIG, clip_config=IMAGE_ENCODER_CONFIG,
             pose_guider=(320, 16, 88), size=512, steps=25, frames=(48, 144))
SMOKE = Scale(
    unet_config={**SD15_UNET_CONFIG, "block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 32,
                 "layers_per_block": 1},
    vae_config={**SD_VAE_FT_MSE_CONFIG, "block_out_channels": [16, 32, 32, 32], "layers_per_block": 1,
                "norm_num_groups": 8},
    clip_config={**IMAGE_ENCODER_CONFIG, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                 "num_hidden_layers": 2, "patch_size": 32, "projection_dim": 32},
    pose_guider=(32, 2, 16), size=64, steps=2, frames=(12, 20))


def write_released_weights(scale: Scale, folder: Path, device: torch.device) -> VideoModelFiles:
    """Random weights (built on ``device``, saved from the CPU in float32) in the released files' layout."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config_path = folder / "stable-diffusion-v1-5" / "unet" / "config.json"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(json.dumps(scale.unet_config))
    with torch.device(device):
        state = _cpu_state(build_denoising_unet(scale.unet_config))
        torch.save({k: v for k, v in state.items() if not is_motion_module_key(k)}, folder / "denoising_unet.pth")
        torch.save({k: v for k, v in state.items() if is_motion_module_key(k)}, folder / "motion_module.pth")
        del state
        torch.save(_cpu_state(build_reference_unet(scale.unet_config)), folder / "reference_unet.pth")
        channels, heads, head_dim = scale.pose_guider
        pose_guider = build_pose_guider(channels, PoseGuiderConfig(heads, head_dim))
        torch.save(_cpu_state(pose_guider), folder / "pose_guider.pth")
        AutoencoderKL.from_config(scale.vae_config).to("cpu").save_pretrained(folder / "sd-vae-ft-mse")
        CLIPVisionModelWithProjection(CLIPVisionConfig(**scale.clip_config)).to("cpu").save_pretrained(
            folder / "image_encoder")
    return VideoModelFiles(
        denoising_unet=folder / "denoising_unet.pth", reference_unet=folder / "reference_unet.pth",
        motion_module=folder / "motion_module.pth", pose_guider=folder / "pose_guider.pth", unet_config=config_path,
        vae=folder / "sd-vae-ft-mse", image_encoder=folder / "image_encoder",
        config=Lmk2VideoConfig(pose_guider=PoseGuiderConfig(*scale.pose_guider[1:])))


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().float().cpu().contiguous() for key, value in module.state_dict().items()}


class VramPeak:
    """The highest nvidia-smi memory.used (MiB) seen while it runs, sampled every 0.2 s (None without nvidia-smi)."""

    def __init__(self) -> None:
        self.peak_mib: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                self.peak_mib = max(self.peak_mib or 0.0, float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(0.2)

    def __enter__(self) -> "VramPeak":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_length(models, reference, poses, scale: Scale, device: torch.device, memory: DeviceMemory) -> dict:
    """One sampler run over ``poses``: time, peak memory and the UNet's batch sizes."""
    batches: list[int] = []
    hook = models.denoising_unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rows = 2 if scale.cfg > 1 else 1
    try:
        with VramPeak() as smi:
            sync(device)
            start = time.perf_counter()
            settings = SamplerSettings(steps=scale.steps, guidance=scale.cfg, seed=42,
                                       context_frames=scale.context[0], context_overlap=scale.context[1])
            video = generate(models, reference, poses, settings, SamplerRun(memory=memory))
            sync(device)
            seconds = time.perf_counter() - start
    finally:
        hook.remove()
    frames = poses.shape[0]
    return {
        "frames": frames, "seconds": round(seconds, 3), "s_per_frame": round(seconds / frames, 4),
        "windows_per_call": max(batches) // rows, "unet_calls": len(batches),
        "peak_vram_gib": {
            "torch_max_memory_allocated": (round(torch.cuda.max_memory_allocated(device) / GIB, 3)
                                           if device.type == "cuda" else None),
            "nvidia_smi_memory_used": None if smi.peak_mib is None else round(smi.peak_mib / 1024, 3)},
        "finite": bool(torch.isfinite(video).all()),
    }


def check(scale: Scale, device: torch.device, dtype: torch.dtype, speed: tuple[str, ...],
          budget_gib: float | None) -> dict:
    result: dict = {
        "machine": {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                    or platform.machine(), "torch": torch.__version__, "python": platform.python_version()},
        "settings": {"size": scale.size, "steps": scale.steps, "cfg": scale.cfg, "context_frames": scale.context[0],
                     "context_overlap": scale.context[1], "dtype": str(dtype).removeprefix("torch."),
                     "speed": list(speed), "budget_gib": budget_gib},
    }
    memory = DeviceMemory() if budget_gib is None else DeviceMemory(budget=lambda device: int(budget_gib * GIB))
    with tempfile.TemporaryDirectory(prefix="apk-gpu-check-") as folder, torch.no_grad():
        start = time.perf_counter()
        files = write_released_weights(scale, Path(folder), device)
        result["weights_written_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        models = load_video_models(files, dtype, device)
        result["weights_loaded_seconds"] = round(time.perf_counter() - start, 1)
    apply_speed(models.denoising_unet, speed)
    portrait, poses = synthetic_inputs(scale.size, max(scale.frames))
    start = time.perf_counter()
    reference = encode_reference(models, portrait, scale.size, scale.size)
    sync(device)
    result["reference_encode_seconds"] = round(time.perf_counter() - start, 3)
    runs = [run_length(models, reference, poses[:frames], scale, device, memory) for frames in scale.frames]
    for run in runs:
        print(f"{run['frames']} frames: {run['s_per_frame']} s/frame, {run['windows_per_call']} windows per call, "
              f"peak {run['peak_vram_gib']}", flush=True)
    result["runs"] = runs
    for key in ("s_per_frame", "windows_per_call"):
        result[key] = {str(run["frames"]): run[key] for run in runs}
    result["peak_vram"] = {str(run["frames"]): run["peak_vram_gib"] for run in runs}
    result["original"] = ORIGINAL_UNAVAILABLE
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny networks on the CPU (CI)")
    parser.add_argument("--out", required=True, type=Path, help="the JSON file to write")
    parser.add_argument("--speed", default="", help=f"comma-separated from {SPEED_OPTIONS} (default: none)")
    parser.add_argument("--budget-gib", type=float, help="memory budget of the plan (default: ComfyUI-style free "
                                                         "memory x headroom)")
    args = parser.parse_args()
    scale = SMOKE if args.smoke else FULL
    on_gpu = not args.smoke
    if on_gpu and not torch.cuda.is_available():
        parser.error("no CUDA GPU visible to torch; use --smoke for the CPU check")
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.float16 if on_gpu else torch.float32
    speed = tuple(option for option in args.speed.split(",") if option)
    started = time.perf_counter()
    result = {"mode": "smoke" if args.smoke else "full", **check(scale, device, dtype, speed, args.budget_gib)}
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_seconds']} s)")
    if not all(run["finite"] for run in result["runs"]):
        raise SystemExit("the sampler produced NaN/inf frames: see the runs in the JSON")


if __name__ == "__main__":
    main()
