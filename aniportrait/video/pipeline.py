"""Lmk2Video: reference portrait + pose images -> video frames (the original's Pose2VideoPipeline,
docs/pipeline.md#sampler).

Two stages, so a reference can be encoded once and animated many times:
* ``encode_reference``: CLIP embedding, VAE latent and the ReferenceNet bank of the conditional element (run once;
  the unconditional CFG rows never read the bank, docs/pipeline.md#reference-attention).
* ``generate``: seeded noise, DDIM over fixed context windows with CFG, VAE decode.

Faithful by default (closed-loop windows, the original's seeded CPU noise, per-window PoseGuider statistics,
the reference bank rounded through float16); two documented departures are options: ``window_blend`` (the original
sums overlapping windows when guidance <= 1, docs/departures.md#b6 — we average unless asked for the original) and
``closed_loop`` (docs/departures.md#b9).

Memory: nothing grows with the video length except the latents (on the compute device; ``WindowBlend`` steps
each frame as soon as its windows are in, so there is no whole-video accumulator). Pose images come one window at
a time from a ``PoseSource`` (drawn from landmarks on demand, or rows of a uint8 array) and go to the device;
PoseGuider features are cached per window only while the cache fits the memory budget; several windows share one
UNet call (batch = windows × CFG rows) when they fit (``memory_plan``); the decoded frames go to the host batch by
batch, into one tensor or, with a ``frame_sink``, on to a video file as they come.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Protocol

import numpy as np
import torch

from ..cache import file_identity
from ..checkpoint import device_and_dtype
from ..data import check_rgb_image
from ..progress import InterruptCheck, ProgressFn, checking_interrupt
from .attention import attention_backend
from .clip_encoder import encode_image, load_image_encoder
from .config import RELEASED_CONFIG, Lmk2VideoConfig
from .context import context_windows, frame_coverage
from .decoding import decode_video
from .loading import load_denoising_unet, load_pose_guider, load_reference_unet
from .memory import DeviceMemory, run_in_batches
from .memory_plan import cfg_rows, decode_frames_per_call, unet_windows_per_call
from .pose_source import PoseImageArray, PoseSource, resize_frame, resize_note
from .pose_guider import check_window_statistics
from .reference_unet import round_bank_like_original
from .scheduler import DDIMConfig, DDIMScheduler
from .speed import is_compiled
from .streaming import FrameSink
from .vae import VAE_SCALE_FACTOR, encode_latent, load_vae, vae_pixel_values
from .window_blend import WindowBlend

log = logging.getLogger("aniportrait")

WINDOW_BLENDS = ("average", "sum (original, guidance<=1)")


class VideoModels(Protocol):
    """The networks (modules on one device, one dtype), as attributes; each stage reads only the ones it uses."""

    image_encoder: torch.nn.Module
    vae: torch.nn.Module
    reference_unet: torch.nn.Module
    denoising_unet: torch.nn.Module
    pose_guider: torch.nn.Module


@dataclass(frozen=True)
class VideoModelFiles:
    """Where each network's files are (AniPortrait's pretrained_weights/ layout, or the user's choices)."""

    denoising_unet: Path
    reference_unet: Path
    motion_module: Path
    pose_guider: Path
    unet_config: Path
    vae: Path              # a diffusers folder or a single weights file
    image_encoder: Path    # a transformers folder
    config: Lmk2VideoConfig = RELEASED_CONFIG  # the inference config's hyper-parameters (motion modules, ...)

    def _network(self, part: str) -> tuple[tuple[Path, ...], Callable[[torch.dtype], torch.nn.Module]]:
        """The files network ``part`` is built from, and how to build it on the CPU in a dtype."""
        networks = {
            "image_encoder": ((self.image_encoder,), lambda dtype: load_image_encoder(self.image_encoder, dtype)),
            "vae": ((self.vae,), lambda dtype: load_vae(self.vae, dtype)),
            "reference_unet": ((self.unet_config, self.reference_unet),
                               lambda dtype: load_reference_unet(self.unet_config, self.reference_unet, dtype)),
            "denoising_unet": ((self.unet_config, self.denoising_unet, self.motion_module),
                               lambda dtype: load_denoising_unet(self.unet_config, self.denoising_unet,
                                                                 self.motion_module, dtype, self.config.unet)),
            "pose_guider": ((self.pose_guider,),
                            lambda dtype: load_pose_guider(self.pose_guider, dtype, self.config.pose_guider))}
        if part not in networks:
            raise ValueError(f"unknown video model part {part!r}")
        return networks[part]

    def cache_key(self, part: str) -> tuple:
        """What ``load(part, ...)`` depends on: the identities of the files ``part`` is built from, plus the config
        settings of that part (only its own, so changing one does not load the other networks again)."""
        files, _ = self._network(part)
        settings = {"pose_guider": (self.config.pose_guider,), "denoising_unet": (self.config.unet,)}.get(part, ())
        return (part, *(file_identity(path) for path in files), *settings)

    def load(self, part: str, dtype: torch.dtype) -> torch.nn.Module:
        """Build one network on the CPU in ``dtype``, in eval mode (the PoseGuider keeps batch statistics)."""
        _, build = self._network(part)
        return build(dtype)


VIDEO_MODEL_PARTS = tuple(VideoModels.__annotations__)  # the networks, in the order load_video_models loads them


def load_video_models(files: VideoModelFiles, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> VideoModels:
    """All five networks on ``device`` (outside ComfyUI: tests, benchmarks, scripts)."""
    return SimpleNamespace(**{part: files.load(part, dtype).to(device) for part in VIDEO_MODEL_PARTS})


@dataclass
class EncodedReference:
    """What the sampler needs from the reference portrait. Tensors live on the CPU (moved at generation)."""

    clip_embeds: torch.Tensor              # (1, 1, D): the cross-attention context of the conditional rows
    latent: torch.Tensor                   # (1, 4, H/8, W/8): scaled VAE posterior mean
    bank: dict[str, torch.Tensor]          # ReferenceNet norm1 per block (1, L, C), fp16-rounded: docs/departures.md#b8
    width: int
    height: int
    dtype: torch.dtype                     # the precision it was encoded in


def snap_to_latent_grid(width: int, height: int) -> tuple[int, int]:
    """The nearest sizes the VAE can represent (multiples of 8), with a log note when they differ."""
    snapped = tuple(max(VAE_SCALE_FACTOR, int(round(v / VAE_SCALE_FACTOR)) * VAE_SCALE_FACTOR)
                    for v in (width, height))
    if snapped != (width, height):
        log.warning("AniPortrait: %dx%d is not a multiple of 8; using %dx%d.", width, height, *snapped)
    return snapped


@torch.no_grad()
def encode_reference(models: VideoModels, image: np.ndarray, width: int, height: int) -> EncodedReference:
    """Encode an RGB uint8 (H, W, 3) reference image at its source resolution for a width x height video."""
    check_rgb_image(image, "the reference image")
    width, height = snap_to_latent_grid(width, height)
    image_encoder, vae, reference_unet = models.image_encoder, models.vae, models.reference_unet
    device, dtype = device_and_dtype(reference_unet)
    clip_embeds = encode_image(image_encoder, image).to(device=device, dtype=dtype)[:, None]
    latent = encode_latent(vae, vae_pixel_values(image, width, height)).to(device=device, dtype=dtype)
    bank = round_bank_like_original(reference_unet(latent, clip_embeds))
    return EncodedReference(clip_embeds=clip_embeds.cpu(), latent=latent.cpu(),
                            bank={name: value.cpu() for name, value in bank.items()},
                            width=width, height=height, dtype=dtype)


def prepare_pose_images(pose_images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Checked (F, height, width, 3) uint8 pose frames; other sizes are resized (cv2 bilinear, as the scripts do)."""
    if not isinstance(pose_images, np.ndarray) or pose_images.dtype != np.uint8 or pose_images.ndim != 4 \
            or pose_images.shape[-1] != 3:
        raise ValueError("pose images must be uint8 frames (F, H, W, 3), got "
                         f"{getattr(pose_images, 'dtype', type(pose_images))} {getattr(pose_images, 'shape', '')}.")
    if pose_images.shape[0] == 0:
        raise ValueError("no pose images: the video needs at least one pose frame. Check the node that made them.")
    if pose_images.shape[1:3] != (height, width):
        resize_note((pose_images.shape[2], pose_images.shape[1]), width, height)
        pose_images = np.stack([resize_frame(frame, width, height) for frame in pose_images])
    return np.ascontiguousarray(pose_images)


def initial_noise(seed: int, num_frames: int, width: int, height: int, dtype: torch.dtype,
                  channels: int) -> torch.Tensor:
    """(1, channels, F, H/8, W/8) on the CPU, drawn in one call from a generator seeded with ``seed``
    (docs/pipeline.md#initial-noise); ``channels`` = the denoising UNet's in_channels (4), as the original reads it.

    Drawn in the generation dtype as the original's ``randn_tensor`` does: in float16 PyTorch's CPU sampler
    produces different numbers than float32-then-cast, and every frame's noise depends on F.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (1, channels, num_frames, height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR)
    return torch.randn(shape, generator=generator, dtype=dtype)


class _PoseFeatures:
    """PoseGuider features per window. BatchNorm uses each window's own batch statistics (docs/departures.md#b3), so a
    window is always run alone; results are cached when all windows fit ``cache_budget`` bytes, else recomputed."""

    def __init__(self, pose_guider: torch.nn.Module, poses: PoseSource, windows: list[list[int]],
                 device: torch.device, dtype: torch.dtype, cache_budget: int) -> None:
        self.pose_guider = pose_guider
        self.poses = poses  # host uint8 frames, raw channel order, made per window
        self.windows = windows
        self.device, self.dtype = device, dtype
        self.cache_budget = cache_budget
        self.cache: dict[int, list[torch.Tensor]] | None = {}

    def _pose_tensor(self, window: list[int]) -> torch.Tensor:
        frames = torch.from_numpy(self.poses.frames(window))
        if self.device.type == "cuda":
            frames = frames.pin_memory()
        frames = frames.to(self.device, non_blocking=True)
        # uint8 straight to 2v-1, not /255 first: the original's VaeImageProcessor quirk (range [-1, 509])
        pose = 2.0 * frames.permute(3, 0, 1, 2).float() - 1.0
        return pose[None].to(self.dtype).contiguous()

    def get(self, index: int) -> list[torch.Tensor]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        features = self.pose_guider(self._pose_tensor(self.windows[index]))
        if self.cache is not None:
            size = sum(f.numel() * f.element_size() for f in features)
            if size * len(self.windows) <= self.cache_budget:
                self.cache[index] = features
            else:
                self.cache = None
        return features


class _WindowBatches:
    """Index tensors, contexts and masks for UNet calls over several windows at once."""

    def __init__(self, windows: list[list[int]], clip_embeds: torch.Tensor, guided: bool,
                 device: torch.device) -> None:
        self.windows = windows
        self.indices = torch.tensor(windows, dtype=torch.int64, device=device)  # (n_windows, f)
        self.guided = guided
        self.rows = cfg_rows(guided)
        self._clip_embeds = clip_embeds
        self._contexts: dict[int, tuple[torch.Tensor, list[bool]]] = {}

    def context(self, count: int) -> tuple[torch.Tensor, list[bool]]:
        """Encoder hidden states (rows·count, 1, D) and the reference mask (read on the host, so a list):
        unconditional rows first (zero embedding, no reference), then the conditional rows."""
        if count not in self._contexts:
            cond = self._clip_embeds.expand(count, -1, -1)
            if self.guided:
                self._contexts[count] = (torch.cat([torch.zeros_like(cond), cond]), [False] * count + [True] * count)
            else:
                self._contexts[count] = (cond.contiguous(), [True] * count)
        return self._contexts[count]

    def latent_input(self, latents: torch.Tensor, group: list[int]) -> torch.Tensor:
        """(rows·K, 4, f, h, w): each window's frames, once per CFG row."""
        index = self.indices[group]
        k, f = index.shape
        chosen = latents[0].index_select(1, index.reshape(-1))  # (4, K·f, h, w)
        batch = chosen.unflatten(1, (k, f)).transpose(0, 1)
        return torch.cat([batch] * self.rows).contiguous()


@dataclass
class _Sampling:
    """The fixed settings of one generation."""

    timesteps: list[int]
    guidance: float
    guided: bool           # CFG rows (guidance > 1), as the original decides
    average: bool          # divide overlapping windows by their count (always, or the original: only with CFG)
    windows: list[list[int]]
    windows_per_call: int
    pose_cache_budget: int


@dataclass(frozen=True)
class SamplerSettings:
    """What decides the video: the sampler node's settings and the inference config's scheduler. The same models,
    reference, poses and settings give the same video."""

    steps: int = 25
    guidance: float = 3.5          # <= 1 runs without CFG (as the original)
    seed: int = 42
    context_frames: int = 16
    context_overlap: int = 4
    window_blend: str = "average"  # or "sum (original, guidance<=1)"
    closed_loop: bool = True       # the original's windows: the last one wraps around to the first frames
    scheduler: DDIMConfig = RELEASED_CONFIG.scheduler  # noise_scheduler_kwargs (VideoModelFiles.config.scheduler)
    init_latents: torch.Tensor | None = None  # (1, 4, F, h, w) instead of the seed's noise


@dataclass(frozen=True)
class SamplerRun:
    """How a run uses the machine and reports on itself; none of it changes the video beyond float rounding.

    ``windows_per_call`` / ``decode_batch`` / ``memory_budget`` (bytes) default to a plan from the free device
    memory (``memory``: how to measure it and recover from running out; out of memory halves the batches and
    retries). ``progress(done, total)`` counts UNet windows, then decoded frames; ``check_interrupt`` also runs
    before every layer, so a cancel takes effect at once. ``on_step(i, latents)`` sees the latents after each DDIM
    step (tests compare them), ``preview`` the predicted clean latents x0 (1, 4, 1, h, w) of the middle frame at
    each step. With ``frame_sink``, the frames go to it a decode batch at a time, in order, instead of being
    returned."""

    windows_per_call: int | None = None
    decode_batch: int | None = None
    memory_budget: int | None = None
    memory: DeviceMemory = field(default_factory=DeviceMemory)
    progress: ProgressFn | None = None
    check_interrupt: InterruptCheck | None = None
    on_step: Callable[[int, torch.Tensor], None] | None = None
    preview: Callable[[torch.Tensor], None] | None = None
    frame_sink: FrameSink | None = None


@torch.no_grad()
def generate(models: VideoModels, reference: EncodedReference, pose_images: np.ndarray | PoseSource,
             settings: SamplerSettings = SamplerSettings(), run: SamplerRun = SamplerRun()) -> torch.Tensor | None:
    """Animate ``reference`` along ``pose_images``: uint8 (F, H, W, 3) in the RAW drawing channel order, or a
    ``PoseSource`` that makes each window's images when they are needed (e.g. drawn from landmarks).

    Returns float32 (F, H, W, 3) RGB frames in [0, 1] on the CPU; with ``run.frame_sink``, the frames go to it
    instead and nothing of the video's size is held (returns None). The latents of all frames stay on the compute
    device for the whole run (64 KB per frame at 512² in float32, half in float16).
    """
    if settings.window_blend not in WINDOW_BLENDS:
        raise ValueError(f"window_blend must be one of {WINDOW_BLENDS}, got {settings.window_blend!r}.")
    width, height = reference.width, reference.height
    poses = pose_images if isinstance(pose_images, PoseSource) else \
        PoseImageArray(prepare_pose_images(pose_images, width, height))
    num_frames = poses.num_frames
    windows = context_windows(num_frames, settings.context_frames, settings.context_overlap, settings.closed_loop)
    check_window_statistics(len(windows[0]), width, height)
    unet, pose_guider, vae = models.denoising_unet, models.pose_guider, models.vae
    device, dtype = device_and_dtype(unet)
    latent_shape = (1, unet.config.in_channels, num_frames, height // VAE_SCALE_FACTOR, width // VAE_SCALE_FACTOR)
    init_latents = settings.init_latents
    if init_latents is None:
        latents = initial_noise(settings.seed, num_frames, width, height, dtype, unet.config.in_channels)
    elif tuple(init_latents.shape) != latent_shape:
        raise ValueError(f"init_latents must have shape {latent_shape}, "
                         f"got {tuple(init_latents.shape)}.")
    else:
        latents = init_latents.to(dtype, copy=True)  # stepped in place

    guided = settings.guidance > 1.0
    memory = run.memory
    budget = memory.budget(device) if run.memory_budget is None else run.memory_budget
    windows_per_call = run.windows_per_call
    if windows_per_call is None:
        windows_per_call = unet_windows_per_call(len(windows[0]), width, height, guided, dtype, budget, len(windows))
    scheduler = DDIMScheduler(settings.scheduler)
    sampling = _Sampling(timesteps=scheduler.set_timesteps(settings.steps).tolist(), guidance=settings.guidance,
                         guided=guided, average=settings.window_blend == "average" or guided, windows=windows,
                         windows_per_call=windows_per_call,
                         # one step uses each window's features once: nothing to cache
                         pose_cache_budget=budget // 4 if settings.steps > 1 else 0)
    log.info("AniPortrait: %d frames in %d windows, %d per UNet call, %d steps%s.", num_frames, len(windows),
             windows_per_call, settings.steps, ", CFG" if guided else "")
    denoise_work = len(sampling.timesteps) * len(windows)
    total_work = denoise_work + num_frames
    try:
        with checking_interrupt(run.check_interrupt, unet, pose_guider, vae), \
                attention_backend(check_interrupt=run.check_interrupt):
            progress = run.progress
            # the denoising's share of the progress: windows out of all the work, decoding included
            denoising = replace(run, progress=progress and (lambda done, _: progress(done, total_work)))
            latents = _denoise(unet, pose_guider, reference, poses, latents.to(device), scheduler, sampling,
                               denoising)
            decode_batch = run.decode_batch
            if decode_batch is None:
                # measured again: the denoising work tensors are gone now
                decode_budget = memory.budget(device) if run.memory_budget is None else run.memory_budget
                decode_batch = decode_frames_per_call(width, height, dtype, decode_budget)
            return decode_video(vae, latents, decode_batch, memory, run.check_interrupt,
                                progress and (lambda done, _: progress(denoise_work + done, total_work)),
                                sink=run.frame_sink)
    except BaseException as error:
        # an interrupt or error must not keep the work tensors alive through the frames of its traceback
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        latents = None
        memory.release()


@dataclass
class _UNetCalls:
    """The UNet calls of one denoising step: ``self(start, stop)`` adds the predictions of windows start..stop-1
    (one call) to ``blend``, which steps each frame once all its windows are in. An object, not a closure: a
    traceback keeps the function of each of its frames alive, and a closure's function would keep the work tensors
    alive after an interrupt."""

    unet: torch.nn.Module
    batches: _WindowBatches
    pose_features: _PoseFeatures
    bank: dict[str, torch.Tensor]
    latents: torch.Tensor
    timestep: torch.Tensor
    blend: WindowBlend
    done_before: int
    total: int
    run: SamplerRun
    pad_to: int = 0  # when > 0, every call gets this many windows (a compiled UNet then never recompiles)

    def __call__(self, start: int, stop: int) -> None:
        if self.run.check_interrupt:
            self.run.check_interrupt()
        real = list(range(start, stop))
        if self.pad_to and stop < len(self.batches.indices):
            self.pad_to = stop - start  # a full group: the size to pad to (smaller after running out of memory)
        # the last group repeats its last window up to the fixed size; the repeats' predictions are not used
        group, rows = real + real[-1:] * max(0, self.pad_to - len(real)), self.batches.rows
        per_window = [self.pose_features.get(index) for index in group]
        features = [torch.cat([window[level] for window in per_window] * rows) for level in range(5)]
        context, mask = self.batches.context(len(group))
        prediction = self.unet(self.batches.latent_input(self.latents, group), self.timestep,
                               encoder_hidden_states=context, pose_features=features, reference_bank=self.bank,
                               reference_mask=mask)
        del per_window, features  # before the blend allocates
        for position, window_index in enumerate(real):
            # this window's rows: its unconditional and its conditional prediction
            self.blend.add(self.batches.windows[window_index], prediction[position::len(group)])
        if self.run.progress:
            self.run.progress(self.done_before + stop, self.total)


def _denoise(unet: torch.nn.Module, pose_guider: torch.nn.Module, reference: EncodedReference,
             poses: PoseSource, latents: torch.Tensor, scheduler: DDIMScheduler, sampling: _Sampling,
             run: SamplerRun) -> torch.Tensor:
    """The DDIM loop over all steps and windows (docs/pipeline.md#ddim-loop); returns the final latents, stepped in
    place. Runs of windows share a UNet call (``sampling.windows_per_call``, fewer after running out of memory)."""
    device, dtype = latents.device, latents.dtype
    windows = sampling.windows
    batches = _WindowBatches(windows, reference.clip_embeds.to(device=device, dtype=dtype), sampling.guided, device)
    pose_features = _PoseFeatures(pose_guider, poses, windows, device, dtype, sampling.pose_cache_budget)
    bank = {name: value.to(device=device, dtype=dtype) for name, value in reference.bank.items()}
    blend = WindowBlend(latents, frame_coverage(windows, latents.shape[2]), sampling.average, sampling.guided,
                        sampling.guidance, scheduler, preview_frame=latents.shape[2] // 2)
    timesteps = torch.tensor(sampling.timesteps, dtype=torch.int64).to(device)
    latents.mul_(scheduler.init_noise_sigma)
    total = len(sampling.timesteps) * len(windows)
    for step, timestep in enumerate(sampling.timesteps):
        blend.start_step(timestep)
        predict = _UNetCalls(unet, batches, pose_features, bank, latents, timesteps[step], blend,
                             step * len(windows), total, run,
                             pad_to=sampling.windows_per_call if is_compiled(unet) else 0)
        sampling.windows_per_call = run_in_batches(len(windows), sampling.windows_per_call, predict, run.memory,
                                                   "context windows per UNet call")
        del predict
        if run.on_step:
            run.on_step(step, latents.clone())  # a snapshot: the next step updates the latents in place
        if run.preview:
            run.preview(blend.preview_clean)
    return latents
