"""Config-driven hyper-parameters (aniportrait/video/config.py, scheduler.py, unet_blocks.py): non-default configs reach
the networks and the sampler, unsupported ones are refused with the key named. Built small on the CPU (or on the
meta device for shapes); independent references are diffusers' own UNet2DConditionModel and DDIMScheduler."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from aniportrait.video.config import (RELEASED_CONFIG, Lmk2VideoConfig, MotionModuleConfig, PoseGuiderConfig,
                                 UNet3DConfig)
from aniportrait.video.loading import build_denoising_unet, build_reference_unet, load_pose_guider
from aniportrait.video.motion_module import VanillaTemporalModule
from aniportrait.video.pose_guider import PoseGuider
from aniportrait.video.scheduler import DDIMConfig, DDIMScheduler

# an SD1.5-layout UNet config unlike SD1.5 in every size: 5 heads that do not divide the channels, 16 groups
SMALL_UNET = {"block_out_channels": [32, 64, 64, 64], "layers_per_block": 1, "attention_head_dim": 5,
              "cross_attention_dim": 24, "norm_num_groups": 16, "in_channels": 4, "out_channels": 4,
              "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
              "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
# inference_v2.yaml's layout with other values everywhere
OTHER_INFERENCE_CONFIG = {
    "unet_additional_kwargs": {
        "use_inflated_groupnorm": True, "unet_use_cross_frame_attention": False, "unet_use_temporal_attention": False,
        "use_motion_module": True, "motion_module_resolutions": [1, 4], "motion_module_mid_block": False,
        "motion_module_decoder_only": False, "motion_module_type": "Vanilla",
        "motion_module_kwargs": {"num_attention_heads": 2, "num_transformer_block": 2,
                                 "attention_block_types": ["Temporal_Self"] * 3, "temporal_position_encoding": False,
                                 "temporal_position_encoding_max_len": 24, "temporal_attention_dim_div": 2}},
    "noise_scheduler_kwargs": {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "scaled_linear",
                               "clip_sample": True, "steps_offset": 1, "prediction_type": "epsilon",
                               "rescale_betas_zero_snr": False, "timestep_spacing": "leading"},
    "pose_guider": {"transformer_num_attention_heads": 3, "transformer_attention_head_dim": 7},
    "sampler": "DDIM",
}


def test_released_values_are_the_defaults():
    assert Lmk2VideoConfig.from_dict({}) == RELEASED_CONFIG
    motion = RELEASED_CONFIG.unet.motion_module
    assert (motion.num_attention_heads, motion.num_transformer_block, motion.attention_blocks, motion.max_frames) \
        == (8, 1, 2, 32)
    assert (RELEASED_CONFIG.pose_guider.heads, RELEASED_CONFIG.pose_guider.head_dim) == (16, 88)
    assert RELEASED_CONFIG.scheduler.prediction_type == "v_prediction"


def test_every_value_of_an_inference_config_is_read():
    config = Lmk2VideoConfig.from_dict(OTHER_INFERENCE_CONFIG)
    assert config.unet == UNet3DConfig(
        motion_module_resolutions=(1, 4), motion_module_mid_block=False, motion_module_decoder_only=False,
        motion_module=MotionModuleConfig(num_attention_heads=2, num_transformer_block=2, attention_blocks=3,
                                         temporal_position_encoding=False, temporal_position_encoding_max_len=24,
                                         temporal_attention_dim_div=2))
    assert config.pose_guider == PoseGuiderConfig(heads=3, head_dim=7)
    assert config.scheduler == DDIMConfig(beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
                                          clip_sample=True, steps_offset=1, prediction_type="epsilon",
                                          rescale_betas_zero_snr=False, timestep_spacing="leading")


@pytest.mark.parametrize("section, key, value", [
    ("unet_additional_kwargs", "use_inflated_groupnorm", False),
    ("unet_additional_kwargs", "motion_module_type", "Conv"),
    ("unet_additional_kwargs", "unknown_switch", 1),
    ("motion_module_kwargs", "attention_block_types", ["Temporal_Self", "Temporal_Cross"]),
    ("motion_module_kwargs", "num_attention_heads", 0),
    ("noise_scheduler_kwargs", "thresholding", True),
    ("noise_scheduler_kwargs", "beta_schedule", "squaredcos_cap_v2"),
    ("pose_guider", "transformer_attention_head_dim", "88"),
])
def test_unsupported_values_are_refused_with_the_key(section, key, value):
    config = {"unet_additional_kwargs": {"motion_module_kwargs": {}}, "noise_scheduler_kwargs": {}, "pose_guider": {}}
    target = config["unet_additional_kwargs"] if section == "motion_module_kwargs" else config
    target.setdefault(section, {})[key] = value
    with pytest.raises(ValueError, match=key) as error:
        Lmk2VideoConfig.from_dict(config, source="my_config.yaml")
    assert "my_config.yaml" in str(error.value)


def _state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_unet_matches_diffusers_for_heads_that_do_not_divide_the_channels():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        ours = build_reference_unet(SMALL_UNET)
        theirs = UNet2DConditionModel(**SMALL_UNET)
    expected = {key: shape for key, shape in _state_shapes(theirs).items()
                if not key.startswith(("conv_norm_out.", "conv_out."))}
    assert _state_shapes(ours) == expected
    # 5 heads of channels // 5: inner widths 30 / 60, not the channels
    assert ours.down_blocks[0].attentions[0].proj_in.out_channels == 30
    assert ours.down_blocks[1].attentions[0].proj_in.out_channels == 60


def test_motion_modules_follow_the_config():
    config = Lmk2VideoConfig.from_dict(OTHER_INFERENCE_CONFIG).unet
    with torch.device("meta"):
        unet = build_denoising_unet(SMALL_UNET, settings=config)
    # resolutions [1, 4]: down blocks 0 and 2, up blocks 3 - i in {0, 2}: 3 and 1; no mid-block module
    has_modules = {f"{stage}{index}": block.motion_modules is not None
                   for stage, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks))
                   for index, block in enumerate(blocks)}
    assert has_modules == {"down0": True, "down1": False, "down2": True, "down3": False,
                           "up0": False, "up1": True, "up2": False, "up3": True}
    assert unet.mid_block.motion_modules is None
    transformer = unet.down_blocks[0].motion_modules[0].temporal_transformer
    # 32 channels, 2 heads, dim_div 2: heads of 8, inner width 16; 2 blocks of 3 attentions, no position table
    assert transformer.proj_in.out_features == 16 and len(transformer.transformer_blocks) == 2
    attentions = transformer.transformer_blocks[0].attention_blocks
    assert len(attentions) == 3 and all(a.pos_encoder is None and a.heads == 2 for a in attentions)
    assert not any(key.endswith("pos_encoder.pe") for key in unet.state_dict())


def test_denoising_unet_with_another_config_runs_any_window_length_without_position_table():
    torch.manual_seed(0)
    settings = Lmk2VideoConfig.from_dict(OTHER_INFERENCE_CONFIG).unet
    unet = build_denoising_unet(SMALL_UNET, settings=settings)
    frames = 40  # longer than any position table: allowed without one
    latents = torch.randn(1, 4, frames, 4, 4)
    features = [torch.zeros(1, c, frames, s, s) for c, s in ((32, 4), (32, 2), (64, 1), (64, 1), (64, 1))]
    with torch.inference_mode():
        out = unet(latents, torch.tensor(10), torch.randn(1, 1, 24), features)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_motion_module_heads_split_the_attention():
    """The temporal attention with h heads equals h separate softmax attentions over slices of the projections."""
    torch.manual_seed(1)
    config = MotionModuleConfig(num_attention_heads=4, attention_blocks=1, temporal_position_encoding=False)
    attention = VanillaTemporalModule(32, config).temporal_transformer.transformer_blocks[0].attention_blocks[0]
    x = torch.randn(3, 6, 32)
    q, k, v = attention.to_q(x), attention.to_k(x), attention.to_v(x)
    heads = [F.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 8 ** 0.5, dim=-1) @ v[..., s]
             for s in (slice(i * 8, (i + 1) * 8) for i in range(4))]
    with torch.inference_mode():
        torch.testing.assert_close(attention(x), attention.to_out[0](torch.cat(heads, dim=-1)))


def test_pose_guider_heads_and_use_ca_come_from_config_and_file(tmp_path):
    settings = PoseGuiderConfig(heads=3, head_dim=7)
    torch.save(PoseGuider(32, settings.heads, settings.head_dim).state_dict(), tmp_path / "with_ca.pth")
    guider = load_pose_guider(tmp_path / "with_ca.pth", torch.float32, settings)
    assert guider.cross_attn2.transformer_blocks[0].attn1.heads == 3
    assert guider.cross_attn2.proj_in.out_channels == 21
    torch.save(PoseGuider(32, use_ca=False).state_dict(), tmp_path / "without_ca.pth")
    plain = load_pose_guider(tmp_path / "without_ca.pth", torch.float32)  # use_ca read from the file's keys
    with torch.inference_mode():
        features = plain(torch.zeros(1, 3, 2, 64, 64))
    assert [f.shape[1] for f in features] == [32, 32, 64, 128, 128]


@pytest.mark.parametrize("overrides", [
    {},
    {"prediction_type": "epsilon", "timestep_spacing": "leading", "rescale_betas_zero_snr": False,
     "beta_schedule": "scaled_linear", "clip_sample": True},
    {"prediction_type": "sample", "timestep_spacing": "linspace", "set_alpha_to_one": False, "steps_offset": 0},
])
def test_ddim_matches_diffusers_for_other_configs(overrides):
    from diffusers import DDIMScheduler as DiffusersDDIMScheduler

    config = dataclasses.replace(RELEASED_CONFIG.scheduler, **overrides)
    kwargs = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    theirs, ours = DiffusersDDIMScheduler(**kwargs), DDIMScheduler(config)
    # diffusers' float32 cumprod is the same computation: exact on one machine
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=0, atol=0)
    generator = torch.Generator().manual_seed(2)
    for steps in (7, 25):
        theirs.set_timesteps(steps)
        assert ours.set_timesteps(steps).tolist() == theirs.timesteps.tolist()
        for timestep in ours.timesteps.tolist()[:3]:
            sample, output = torch.randn(2, 4, 3, 3, generator=generator), torch.randn(2, 4, 3, 3, generator=generator)
            expected = theirs.step(output, timestep, sample, eta=0.0)
            prev, original = ours.step(output, timestep, sample)
            torch.testing.assert_close(prev, expected.prev_sample, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(original, expected.pred_original_sample, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("only_last_features", [True, False])
def test_wav2vec2_hidden_state_choice_matches_transformers(only_last_features):
    """``only_last_fetures`` of the audio models' config: the last hidden state, or the mean of all of them."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from aniportrait.audio.wav2vec2 import Wav2Vec2FrameEncoder

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=[8] * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    torch.manual_seed(3)
    theirs = Wav2Vec2Model(config).eval()
    ours = Wav2Vec2FrameEncoder(config).eval()
    ours.load_state_dict(theirs.state_dict())
    ours.average_hidden_states = not only_last_features
    speech = torch.randn(1, 8000)
    frames = ours.cnn_frame_count(speech.shape[1])  # no resampling: transformers' frame rate
    with torch.inference_mode():
        output = theirs(speech, output_hidden_states=True)
        expected = output.last_hidden_state if only_last_features else \
            sum(output.hidden_states) / len(output.hidden_states)
        torch.testing.assert_close(ours(speech, frames), expected, rtol=1e-5, atol=1e-5)
