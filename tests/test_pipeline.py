"""Lmk2Video sampler behaviour with the tiny golden models (numbers against the original: tests/golden, cases f/g/h/i):
determinism, batching equivalences, the window options, bad inputs, interrupts and long videos."""
from __future__ import annotations

from dataclasses import replace
import dataclasses
import gc
import importlib.util
import logging
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from aniportrait.checkpoint import read_state_dict
from aniportrait.video.clip_encoder import encode_image, load_image_encoder
from aniportrait.video.context import context_windows, frame_coverage
from aniportrait.video.decoding import decode_video
from aniportrait.video.motion_module import VanillaTemporalModule
from aniportrait.video.pipeline import (VIDEO_MODEL_PARTS, SamplerRun, SamplerSettings, encode_reference, generate,
                                        initial_noise, load_video_models, snap_to_latent_grid)
from aniportrait.video.vae import SD_VAE_FT_MSE_CONFIG, load_vae, to_diffusers_layout
from aniportrait.tiny_models import tiny_video_files

SIZE = 64
SUM = "sum (original, guidance<=1)"
# 12 frames in windows of 4 overlapping by 1: four windows, the last wrapping around (closed loop)
SHORT = SamplerSettings(steps=2, context_frames=4, context_overlap=1)


@pytest.fixture(scope="module")
def models(golden_dir):
    torch.set_num_threads(2)
    return load_video_models(tiny_video_files(golden_dir))


@pytest.fixture(scope="module")
def reference(models, golden_dir):
    image = np.array(Image.open(golden_dir / "cases" / "ref_image.png").convert("RGB"))
    return encode_reference(models, image, SIZE, SIZE)


@pytest.fixture(scope="module")
def poses(golden_dir) -> np.ndarray:
    """100 rendered pose images (raw channel order) of the golden audio-driven case, at SIZE x SIZE."""
    frames = np.load(golden_dir / "cases" / "c_mesh_projection.npz")["pose_images"][:100]
    return np.stack([cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for frame in frames])


@pytest.fixture(scope="module")
def short_video(models, reference, poses) -> torch.Tensor:
    return generate(models, reference, poses[:12], replace(SHORT, seed=7))


# --- context windows ------------------------------------------------------------------------------------------

def test_closed_loop_windows_are_the_originals():
    assert context_windows(28) == [list(range(16)), list(range(12, 28)), [24, 25, 26, 27] + list(range(12))]
    assert context_windows(16) == [list(range(16))]
    assert frame_coverage(context_windows(20), 20) == [2] * 8 + [1] * 4 + [2] * 4 + [1] * 4


@pytest.mark.parametrize("num_frames, size, overlap", [(17, 16, 4), (60, 16, 4), (100, 8, 3), (9, 4, 0)])
def test_open_windows_stay_inside_the_video_and_cover_it(num_frames, size, overlap):
    windows = context_windows(num_frames, size, overlap, closed_loop=False)
    assert all(window == list(range(window[0], window[0] + size)) for window in windows)
    assert windows[-1][-1] == num_frames - 1
    assert min(frame_coverage(windows, num_frames)) >= 1
    starts = [window[0] for window in windows]
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))


def test_window_settings_are_checked():
    with pytest.raises(ValueError, match="context_overlap"):
        context_windows(40, 8, 8)
    with pytest.raises(ValueError, match="at least one frame"):
        context_windows(0)


# --- determinism and batching equivalences ----------------------------------------------------------------------

def test_same_inputs_and_seed_give_the_same_video(models, reference, poses, short_video):
    again = generate(models, reference, poses[:12], replace(SHORT, seed=7))
    assert torch.equal(again, short_video)
    assert short_video.shape == (12, SIZE, SIZE, 3) and short_video.dtype == torch.float32
    assert 0 <= short_video.min() and short_video.max() <= 1


def test_seed_is_the_noise_seed(models, reference, poses, short_video):
    injected = generate(models, reference, poses[:12],
                        replace(SHORT, init_latents=initial_noise(7, 12, SIZE, SIZE, torch.float32, 4)))
    assert torch.equal(injected, short_video)
    other_seed = generate(models, reference, poses[:12], replace(SHORT, seed=8))
    assert (other_seed - short_video).abs().max() > 1e-2


def test_one_window_per_unet_call_matches_batched_windows(models, reference, poses, short_video):
    one_by_one = generate(models, reference, poses[:12], replace(SHORT, seed=7), SamplerRun(windows_per_call=1))
    two_by_two = generate(models, reference, poses[:12], replace(SHORT, seed=7), SamplerRun(windows_per_call=2))
    assert (one_by_one - short_video).abs().max() < 1e-4
    assert (two_by_two - short_video).abs().max() < 1e-4


def test_decoding_several_frames_per_call_matches_frame_by_frame(models):
    latents = torch.randn((1, 4, 5, 8, 8), generator=torch.Generator().manual_seed(3))
    per_frame = decode_video(models.vae, latents, frames_per_call=1)
    assert per_frame.shape == (5, SIZE, SIZE, 3)
    for batch in (2, 5):
        assert (decode_video(models.vae, latents, frames_per_call=batch) - per_frame).abs().max() < 1e-5
    assert torch.equal(decode_video(models.vae, latents, frames_per_call=0), per_frame)  # at least one per call


def test_pose_features_recomputed_or_cached_give_the_same_video(models, reference, poses, short_video):
    no_cache = generate(models, reference, poses[:12], replace(SHORT, seed=7),
                        SamplerRun(memory_budget=1, windows_per_call=4, decode_batch=12))
    assert (no_cache - short_video).abs().max() < 1e-4


# --- window blending and loop mode (docs/departures.md#b6, #b9) -------------------------------------------------------

def test_sum_blend_is_the_original_only_without_guidance(models, reference, poses, short_video):
    assert torch.equal(generate(models, reference, poses[:12], replace(SHORT, seed=7, window_blend=SUM)), short_video)
    # one step: a frame's result depends only on its own blended prediction
    one_step = replace(SHORT, steps=1)
    averaged = generate(models, reference, poses[:12], replace(one_step, seed=7, guidance=1.0))
    summed = generate(models, reference, poses[:12], replace(one_step, seed=7, guidance=1.0, window_blend=SUM))
    shared = [0, 3, 6, 9]  # frames two windows predict
    alone = [1, 2, 4, 5, 7, 8, 10, 11]
    assert (summed[shared] - averaged[shared]).abs().amax(dim=(1, 2, 3)).min() > 1e-2
    assert torch.equal(summed[alone], averaged[alone])
    with pytest.raises(ValueError, match="window_blend"):
        generate(models, reference, poses[:12], replace(SHORT, window_blend="median"))


def test_open_loop_changes_only_what_the_wrapping_window_reaches(models, reference, poses):
    # 10 frames in windows of 4 overlapping by 1: [0-3] [3-6] [6-9] and, closed, [9, 0, 1, 2]. After two steps
    # frames 4 and 5 have only seen window [3-6], whose inputs the extra window did not change.
    closed = generate(models, reference, poses[:10], replace(SHORT, seed=3), SamplerRun(windows_per_call=1))
    opened = generate(models, reference, poses[:10], replace(SHORT, seed=3, closed_loop=False),
                      SamplerRun(windows_per_call=1))
    assert torch.equal(closed[4:6], opened[4:6])
    assert (closed[[0, 1, 2, 9]] - opened[[0, 1, 2, 9]]).abs().amax(dim=(1, 2, 3)).min() > 1e-3


# --- inputs ----------------------------------------------------------------------------------------------------

def test_no_pose_frames_is_a_clear_error(models, reference, poses):
    with pytest.raises(ValueError, match="no pose images"):
        generate(models, reference, poses[:0], SHORT)
    with pytest.raises(ValueError, match="uint8 frames"):
        generate(models, reference, poses[:4].astype(np.float32), SHORT)
    with pytest.raises(ValueError, match="init_latents"):
        generate(models, reference, poses[:4], replace(SHORT, init_latents=torch.zeros(1, 4, 5, 8, 8)))


def test_pose_images_of_another_size_are_resized(models, reference, poses, caplog):
    big = np.stack([cv2.resize(frame, (96, 80)) for frame in poses[:4]])
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        video = generate(models, reference, big, SamplerSettings(seed=1, steps=1))
    assert video.shape == (4, SIZE, SIZE, 3)
    assert "resizing" in caplog.text


def test_sizes_are_snapped_to_multiples_of_8(caplog):
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        assert snap_to_latent_grid(60, 70) == (64, 72)
    assert "multiple of 8" in caplog.text
    assert snap_to_latent_grid(512, 512) == (512, 512)


def test_reference_of_odd_size_encodes_at_the_snapped_size(models, golden_dir):
    image = np.array(Image.open(golden_dir / "cases" / "ref_image.png").convert("RGB"))
    encoded = encode_reference(models, image, 61, 75)
    assert (encoded.width, encoded.height) == (64, 72)
    assert encoded.latent.shape == (1, 4, 9, 8)
    with pytest.raises(ValueError, match="uint8 RGB"):
        encode_reference(models, image[..., :1], 64, 64)


# --- interrupts and long videos --------------------------------------------------------------------------------

class Cancelled(Exception):
    pass


def _alive_tensors_with_frames(num_frames: int) -> list[tuple[int, ...]]:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on some deprecated torch objects warns
        warnings.simplefilter("ignore")
        return [tuple(obj.shape) for obj in gc.get_objects()
                if isinstance(obj, torch.Tensor) and obj.ndim == 5 and obj.shape[2] == num_frames]


def test_alive_tensor_probe_finds_tensors():
    probe = torch.zeros(1, 1, 29, 1, 1)
    assert _alive_tensors_with_frames(29) == [tuple(probe.shape)]


def test_interrupt_stops_inside_a_unet_call_and_frees_the_work(models, reference, poses):
    """A cancel takes effect before the next layer, not at the end of the (possibly long) UNet call."""
    frames = 23  # a frame count no other tensor has
    unet = models.denoising_unet
    cancelled, finished_after_cancel, progress = [], [], []
    first_motion_module = next(m for m in unet.modules() if isinstance(m, VanillaTemporalModule))

    def check_interrupt():
        if cancelled:
            raise Cancelled

    def note_finished(module, *_):
        if cancelled:
            finished_after_cancel.append(module)

    hooks = [first_motion_module.register_forward_hook(lambda *_: cancelled.append(True))]
    hooks += [module.register_forward_hook(note_finished) for module in unet.modules()
              if module is not first_motion_module]
    try:
        with pytest.raises(Cancelled) as raised:
            generate(models, reference, poses[:frames], SHORT,
                     SamplerRun(windows_per_call=1, check_interrupt=check_interrupt,
                                progress=lambda done, total: progress.append((done, total))))
    finally:
        for hook in hooks:
            hook.remove()
    assert cancelled and finished_after_cancel == [] and progress == []
    assert raised.value.__traceback__ is not None  # the exception (and its frames) are still alive here
    assert _alive_tensors_with_frames(frames) == []
    assert not any(module._forward_pre_hooks for module in unet.modules())  # the interrupt checks are gone


def test_progress_counts_windows_then_decoded_frames(models, reference, poses):
    progress = []
    generate(models, reference, poses[:12], SHORT,
             SamplerRun(windows_per_call=2, decode_batch=5,
                        progress=lambda done, total: progress.append((done, total))))
    windows = len(context_windows(12, 4, 1))
    total = 2 * windows + 12
    assert progress == [(done, total) for done in range(2, 2 * windows + 1, 2)] + \
        [(2 * windows + done, total) for done in (5, 10, 12)]


def test_long_video_runs_through_all_windows(models, reference, poses):
    progress = []
    video = generate(models, reference, poses, SamplerSettings(steps=1),
                     SamplerRun(progress=lambda done, total: progress.append(done)))
    assert video.shape == (100, SIZE, SIZE, 3)
    assert torch.isfinite(video).all()
    windows = len(context_windows(100))
    assert windows == 9
    assert windows in progress and progress[-1] == windows + 100  # every window ran (one step), then every frame


# --- weight layouts ----------------------------------------------------------------------------------------------

def test_each_network_depends_only_on_its_own_config_settings(golden_dir):
    files = tiny_video_files(golden_dir)
    config = files.config
    guider = dataclasses.replace(config.pose_guider, heads=config.pose_guider.heads + 1)
    motion = dataclasses.replace(config.unet.motion_module, num_attention_heads=1)
    unet = dataclasses.replace(config.unet, motion_module=motion)
    changed = {"pose_guider": dataclasses.replace(config, pose_guider=guider),
               "denoising_unet": dataclasses.replace(config, unet=unet)}
    for changed_part, other_config in changed.items():
        other = dataclasses.replace(files, config=other_config)
        for part in VIDEO_MODEL_PARTS:
            assert (other.cache_key(part) != files.cache_key(part)) == (part == changed_part), part
    assert files.cache_key("vae") != files.cache_key("image_encoder")


def _comfy_diffusers_convert(comfy_root):
    """ComfyUI's own diffusers -> LDM VAE key conversion: an independent reference for ours."""
    spec = importlib.util.spec_from_file_location("comfy_diffusers_convert",
                                                  comfy_root / "ComfyUI" / "comfy" / "diffusers_convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ldm_single_file_vae_layout_round_trips(comfy_root, golden_dir):
    converter = _comfy_diffusers_convert(comfy_root)
    tiny = load_file(str(golden_dir / "tiny" / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"))
    back = to_diffusers_layout(converter.convert_vae_state_dict(tiny), num_levels=4)
    assert back.keys() == tiny.keys()
    assert all(torch.equal(back[key], tiny[key]) for key in tiny)


def test_full_size_ldm_vae_file_fits_the_built_in_config(comfy_root):
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        full = AutoencoderKL.from_config(SD_VAE_FT_MSE_CONFIG).state_dict()
    ldm = _comfy_diffusers_convert(comfy_root).convert_vae_state_dict(full)
    ldm = {f"first_stage_model.{key}": value for key, value in ldm.items()}  # as inside a full SD checkpoint
    back = to_diffusers_layout(ldm, num_levels=4)
    assert {key: tuple(value.shape) for key, value in back.items()} == \
        {key: tuple(value.shape) for key, value in full.items()}


def test_vae_with_deprecated_attention_names_loads(golden_dir, tmp_path, models):
    folder = tmp_path / "old-vae"
    folder.mkdir()
    shutil.copy(golden_dir / "tiny" / "sd-vae-ft-mse" / "config.json", folder / "config.json")
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    state = {}
    for key, value in load_file(str(golden_dir / "tiny" / "sd-vae-ft-mse" /
                                    "diffusion_pytorch_model.safetensors")).items():
        for new, old in renames.items():
            key = key.replace(new, old)
        state[key] = value
    assert any(".proj_attn." in key for key in state)
    save_file(state, str(folder / "diffusion_pytorch_model.safetensors"))
    latents = torch.randn((1, 4, 2, 8, 8), generator=torch.Generator().manual_seed(5))
    assert torch.equal(decode_video(load_vae(folder), latents), decode_video(models.vae, latents))


def test_image_encoder_without_stored_position_ids_loads(golden_dir, tmp_path, models):
    folder = tmp_path / "image_encoder"
    folder.mkdir()
    shutil.copy(golden_dir / "tiny" / "image_encoder" / "config.json", folder / "config.json")
    state = read_state_dict(golden_dir / "tiny" / "image_encoder" / "pytorch_model.bin")
    state.pop("vision_model.embeddings.position_ids")
    save_file(state, str(folder / "model.safetensors"))
    image = np.array(Image.open(golden_dir / "cases" / "ref_image.png").convert("RGB"))
    assert torch.equal(encode_image(load_image_encoder(folder), image), encode_image(models.image_encoder, image))
