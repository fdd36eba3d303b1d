"""How much of the sampler's work fits in one call: context windows per UNet call and frames per VAE-decode call.

The plan only decides batch sizes (the results agree to float rounding whatever it picks). A plan that is too
generous runs out of memory; one that is too careful only gives up a little speed (bench/results/video_cpu.md:
batching windows is 1.1-1.2x faster on the CPU, decoding several frames per call no faster at all). So the
estimates lean high, and the headroom leaves room for what they do not model (fixed per-call buffers, GPU
workspaces, allocator fragmentation).
"""
from __future__ import annotations

import psutil
import torch

from .vae import VAE_SCALE_FACTOR

# Working memory of one denoising-UNet call per latent element (frame x latent pixel x CFG row), per byte of the
# dtype. Measured on the CPU in float32 with the full-size networks (resident memory above the call's start, freed
# memory returned to the system first; bench/bench_video.py --size N): a call costs 14,500-20,100 per element at
# 256x256 and 320x320, of which 13,000-13,700 grow with the size; a fixed ~0.3 GiB per call makes up the rest (and
# dominates at the bench's default 64x64). Attention runs through F.scaled_dot_product_attention, whose memory
# grows linearly with the tokens on the CPU and on GPUs alike, so the cost per element and dtype byte carries over
# to fp16 on a GPU.
UNET_BYTES_PER_LATENT_ELEMENT = 20_000
# VAE-decode working memory per output pixel, per byte of the dtype: measured on the CPU (float32, batches of 20
# frames) 1,250-1,400 per added pixel plus a fixed ~0.05 GiB per call.
DECODE_BYTES_PER_PIXEL = 2_000
MEMORY_HEADROOM = 0.7  # the fraction of the free memory a plan may use
# Beyond a few windows / frames per call batching gains nothing measurable (above), while a plan that grows with the
# number of windows makes long videos hold more than short ones, up to the budget: these caps keep the sampler's
# memory the same for any length.
MAX_WINDOWS_PER_CALL = 8
MAX_DECODE_FRAMES_PER_CALL = 16


def free_device_memory(device: torch.device) -> int:
    """Bytes a plan may use now: free CUDA memory, or available host memory for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # reusable by torch
        return int((free + cached) * MEMORY_HEADROOM)
    return int(psutil.virtual_memory().available * MEMORY_HEADROOM)


def cfg_rows(guided: bool) -> int:
    """Batch rows per window in a UNet call: unconditional and conditional with classifier-free guidance, else one."""
    return 2 if guided else 1


def unet_window_bytes(window_frames: int, width: int, height: int, guided: bool, dtype: torch.dtype) -> int:
    """Working memory of one context window (both CFG rows when ``guided``) in a UNet call."""
    latent_elements = window_frames * (height // VAE_SCALE_FACTOR) * (width // VAE_SCALE_FACTOR) * cfg_rows(guided)
    return UNET_BYTES_PER_LATENT_ELEMENT * latent_elements * dtype.itemsize


def unet_windows_per_call(window_frames: int, width: int, height: int, guided: bool, dtype: torch.dtype,
                          budget: int, num_windows: int) -> int:
    """How many context windows one UNet call takes: as many as fit half of ``budget`` bytes (the other half is
    for cached PoseGuider features and decoding), at least one."""
    per_window = unet_window_bytes(window_frames, width, height, guided, dtype)
    return max(1, min(num_windows, MAX_WINDOWS_PER_CALL, budget // 2 // per_window))


def sampler_memory_required(window_frames: int, width: int, height: int, guided: bool, dtype: torch.dtype) -> int:
    """The least working memory the sampler plans with (one window per UNet call, i.e. a budget of twice its
    cost): what a host should keep free besides the weights."""
    return 2 * unet_window_bytes(window_frames, width, height, guided, dtype)


def decode_frames_per_call(width: int, height: int, dtype: torch.dtype, budget: int) -> int:
    """How many frames one VAE-decode call takes within ``budget`` bytes, at least one."""
    per_frame = DECODE_BYTES_PER_PIXEL * width * height * dtype.itemsize
    return max(1, min(MAX_DECODE_FRAMES_PER_CALL, budget // per_frame))
