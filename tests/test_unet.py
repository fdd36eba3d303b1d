"""Lmk2Video networks (PoseGuider, reference UNet, UNet3D): strict loading, batching equivalences, the reference-bank
rules and train-mode BatchNorm, on the tiny golden checkpoints. Numerical equality with the original is checked by
the golden cases d_/e_ (``python -m tests.golden``), also run here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aniportrait.checkpoint import CheckpointMismatchError, read_state_dict
from aniportrait.video.loading import (build_pose_guider, load_denoising_unet, load_pose_guider, load_reference_unet,
                                  read_unet_config)
from aniportrait.video.config import PoseGuiderConfig
from aniportrait.video.reference_unet import round_bank_like_original
from tests.golden import cases_unet
from tests.golden.runner import run_cases
from aniportrait.tiny_models import tiny_lmk2video_config

FRAMES, LATENT_SIZE, POSE_SIZE = 4, 8, 64


@pytest.fixture(scope="module")
def tiny(golden_dir: Path) -> Path:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return golden_dir / "tiny"


@pytest.fixture(scope="module")
def unet_config(tiny: Path) -> Path:
    return tiny / "stable-diffusion-v1-5" / "unet" / "config.json"


@pytest.fixture(scope="module")
def pose_guider(golden_dir: Path):
    return cases_unet.load_tiny_pose_guider(golden_dir)


@pytest.fixture(scope="module")
def models(golden_dir: Path, tiny: Path, unet_config: Path, pose_guider):
    reference = load_reference_unet(unet_config, tiny / "reference_unet.pth", torch.float32)
    denoising = load_denoising_unet(unet_config, tiny / "denoising_unet.pth", tiny / "motion_module.pth",
                                    torch.float32, tiny_lmk2video_config(golden_dir).unet)
    return reference, denoising, pose_guider


def _pose(generator: torch.Generator, batch: int = 1) -> torch.Tensor:
    """Pose frames in the original's range: 2 * uint8 - 1."""
    return torch.randint(0, 256, (batch, 3, FRAMES, POSE_SIZE, POSE_SIZE), generator=generator).float() * 2 - 1


def _window(models, generator: torch.Generator):
    """Latents, pose features and context of one random context window."""
    _, _, pose_guider = models
    latents = torch.randn(1, 4, FRAMES, LATENT_SIZE, LATENT_SIZE, generator=generator)
    with torch.inference_mode():
        features = pose_guider(_pose(generator))
    return latents, features, torch.randn(1, 1, 32, generator=generator)


def _bank(models, generator: torch.Generator) -> dict[str, torch.Tensor]:
    reference, _, _ = models
    with torch.inference_mode():
        bank = reference(torch.randn(1, 4, LATENT_SIZE, LATENT_SIZE, generator=generator),
                         torch.randn(1, 1, 32, generator=generator))
    return round_bank_like_original(bank)


def _denoise(models, latents, features, context, bank, mask) -> torch.Tensor:
    _, denoising, _ = models
    with torch.inference_mode():
        return denoising(latents, torch.tensor(500), context, features, bank, mask)


# --- strict loading -------------------------------------------------------------------------------------------

def test_reference_unet_rejects_another_models_file(tiny: Path, unet_config: Path):
    wrong = tiny / "pose_guider.pth"
    with pytest.raises(CheckpointMismatchError) as error:
        load_reference_unet(unet_config, wrong, torch.float32)
    message = str(error.value)
    assert str(wrong) in message and "reference_unet.pth" in message
    assert "missing keys: conv_in.weight" in message and "unexpected keys: scale" in message


def test_swapped_unet_files_name_the_slot_and_keys(tiny: Path, unet_config: Path):
    motion, spatial = tiny / "motion_module.pth", tiny / "denoising_unet.pth"
    with pytest.raises(CheckpointMismatchError) as error:
        load_denoising_unet(unet_config, denoising_unet_path=motion, motion_module_path=spatial, dtype=torch.float32)
    message = str(error.value)
    assert str(spatial) in message and "motion_module.pth)" in message
    assert "missing keys: down_blocks.0.motion_modules.0.temporal_transformer.norm.weight" in message


def test_missing_key_is_named(tiny: Path, unet_config: Path, tmp_path: Path):
    state = read_state_dict(tiny / "denoising_unet.pth")
    del state["mid_block.resnets.1.conv2.bias"]
    damaged = tmp_path / "denoising_unet.pth"
    torch.save(state, damaged)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: mid_block\.resnets\.1\.conv2\.bias") as error:
        load_denoising_unet(unet_config, damaged, tiny / "motion_module.pth", torch.float32)
    assert str(damaged) in str(error.value)


def test_pose_guider_with_wrong_transformer_width_names_the_shapes(tiny: Path):
    with pytest.raises(CheckpointMismatchError, match=r"cross_attn1\.proj_in\.weight \(16, 32, 1, 1\) != \(1408"):
        load_pose_guider(tiny / "pose_guider.pth", torch.float32)  # the released 16 x 88, but a tiny file


def test_pose_guider_rejects_a_unet_file(tiny: Path):
    with pytest.raises(CheckpointMismatchError, match="final_proj.weight") as error:
        load_pose_guider(tiny / "reference_unet.pth", torch.float32)
    assert str(tiny / "reference_unet.pth") in str(error.value)


def test_reference_unet_accepts_sd15_output_layers(tiny: Path, unet_config: Path, tmp_path: Path):
    state = read_state_dict(tiny / "reference_unet.pth")
    width = state["conv_in.weight"].shape[0]
    state |= {"conv_norm_out.weight": torch.ones(width), "conv_norm_out.bias": torch.zeros(width),
              "conv_out.weight": torch.zeros(4, width, 3, 3), "conv_out.bias": torch.zeros(4)}
    torch.save(state, tmp_path / "unet_with_output_layers.pth")
    model = load_reference_unet(unet_config, tmp_path / "unet_with_output_layers.pth", torch.float32)
    assert "conv_out.weight" not in model.state_dict()


def test_unet_config_errors_name_the_file(unet_config: Path, tmp_path: Path):
    config = json.loads(unet_config.read_text()) | {"use_linear_projection": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="use_linear_projection") as error:
        read_unet_config(path)
    assert str(path) in str(error.value)
    with pytest.raises(FileNotFoundError, match="stable-diffusion-v1-5/unet/config.json"):
        read_unet_config(tmp_path / "absent.json")


# --- batching and the reference bank ----------------------------------------------------------------------------

def test_windows_and_cfg_halves_in_one_batch_equal_separate_calls(models):
    generator = torch.Generator().manual_seed(1)
    windows = [_window(models, generator) for _ in range(2)]
    bank = _bank(models, generator)
    # Batch layout [uncond w0, uncond w1, cond w0, cond w1]; uncond = zero context and no bank.
    latents = torch.cat([w[0] for w in windows] * 2)
    features = [torch.cat([w[1][k] for w in windows] * 2) for k in range(5)]
    contexts = torch.cat([torch.zeros_like(w[2]) for w in windows] + [w[2] for w in windows])
    batched = _denoise(models, latents, features, contexts, bank, torch.tensor([False, False, True, True]))
    for row, (window, cond) in enumerate([(0, False), (1, False), (0, True), (1, True)]):
        w_latents, w_features, w_context = windows[window]
        single = _denoise(models, w_latents, w_features, w_context if cond else torch.zeros_like(w_context),
                          bank if cond else None, None)
        torch.testing.assert_close(batched[row:row + 1], single, atol=2e-5, rtol=0)


def test_rows_without_reference_ignore_the_bank(models):
    generator = torch.Generator().manual_seed(2)
    latents, features, context = _window(models, generator)
    bank = _bank(models, generator)
    doubled = [f.repeat(2, 1, 1, 1, 1) for f in features]
    mixed = _denoise(models, latents.repeat(2, 1, 1, 1, 1), doubled, context.repeat(2, 1, 1), bank, [False, True])
    without = _denoise(models, latents, features, context, None, None)
    with_bank = _denoise(models, latents, features, context, bank, None)
    torch.testing.assert_close(mixed[:1], without, atol=2e-5, rtol=0)
    torch.testing.assert_close(mixed[1:], with_bank, atol=2e-5, rtol=0)
    assert (with_bank - without).abs().max() > 1e-2  # the bank does matter where it is read


def test_bank_is_rounded_through_float16_and_keeps_its_dtype():
    generator = torch.Generator().manual_seed(3)
    bank = {"a": torch.randn(1, 16, 8, generator=generator), "b": torch.randn(1, 4, 8).to(torch.bfloat16)}
    rounded = round_bank_like_original(bank)
    assert {k: v.dtype for k, v in rounded.items()} == {"a": torch.float32, "b": torch.bfloat16}
    assert not torch.equal(rounded["a"], bank["a"])
    assert torch.equal(rounded["a"], bank["a"].half().float())
    assert torch.equal(round_bank_like_original(rounded)["a"], rounded["a"])


def test_bank_has_one_entry_per_spatial_transformer(models):
    reference, denoising, _ = models
    bank = _bank(models, torch.Generator().manual_seed(4))
    assert sorted(bank) == sorted(reference.bank_names) == sorted(denoising.bank_names)
    assert len(bank) == 10  # tiny: 1 layer per down block (3), mid (1), 2 per up block (6)
    assert all(t.shape[0] == 1 and t.shape[2] in (32, 64, 128) for t in bank.values())


def test_too_long_context_window_is_refused(models):
    _, denoising, _ = models
    latents = torch.zeros(1, 4, 33, 2, 2)
    with pytest.raises(ValueError, match="at most"):
        denoising(latents, 0, torch.zeros(1, 1, 32), [torch.zeros(1, 1, 33, 1, 1)] * 5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_close_to_float32(models, tiny: Path, unet_config: Path, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(5)
    latents, features, context = _window(models, generator)
    reference32 = _denoise(models, latents, features, context, None, None)
    denoising = load_denoising_unet(unet_config, tiny / "denoising_unet.pth", tiny / "motion_module.pth", dtype)
    with torch.inference_mode():
        low = denoising(latents.to(dtype), 500, context.to(dtype), [f.to(dtype) for f in features])
    assert low.dtype == dtype
    assert (low.float() - reference32).abs().max() < 0.2


# --- PoseGuider -------------------------------------------------------------------------------------------------

def test_pose_guider_uses_batch_statistics_in_any_mode(pose_guider):
    generator = torch.Generator().manual_seed(6)
    first, second = _pose(generator), _pose(generator)
    running_mean = pose_guider.conv_layers[1].running_mean.clone()
    with torch.inference_mode():
        eval_features = pose_guider.eval()(first)
        train_features = pose_guider.train()(first)
        pooled = pose_guider(torch.cat([first, second]))
    pose_guider.eval()
    for a, b in zip(eval_features, train_features):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert torch.equal(pose_guider.conv_layers[1].running_mean, running_mean)
    # Statistics come from the call's batch: pooling another window changes the first window's features.
    assert (pooled[0][:1] - eval_features[0]).abs().max() > 1e-2


def test_pose_guider_feature_shapes_round_up_like_the_unet():
    guider = build_pose_guider(32, PoseGuiderConfig(heads=2, head_dim=8))
    with torch.inference_mode():
        features = guider(torch.zeros(1, 3, 2, 72, 88))
    assert [tuple(f.shape) for f in features] == [(1, 32, 2, 9, 11), (1, 32, 2, 5, 6), (1, 64, 2, 3, 3),
                                                  (1, 128, 2, 2, 2), (1, 128, 2, 2, 2)]


# --- against the original ---------------------------------------------------------------------------------------

def test_golden_pose_guider_and_unet(golden_dir: Path):
    results = run_cases(golden_dir, only=cases_unet.CASES)
    assert len(results) > 20
    assert [r.line() for r in results if not r.passed] == []
