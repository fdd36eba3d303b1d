"""Golden cases d_ (PoseGuider) and e_ (reference-UNet bank + denoising UNet3D), run through the pack's loaders.

Tiny checkpoints load with the same functions as the released ones; tiny_config.json supplies the numbers the
files do not determine (motion-module layout and heads, the PoseGuider's inner transformer heads x head dim), read
as the inference config it is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aniportrait.video.loading import load_denoising_unet, load_pose_guider, load_reference_unet
from aniportrait.video.pose_guider import PoseGuider
from aniportrait.video.reference_unet import round_bank_like_original

from .compare import Comparison, compare
from aniportrait.tiny_models import tiny_lmk2video_config

POSE_FEATURE_TOL = 1e-3  # PoseGuider features: measured 1.1e-4 (fea4, no SIMD), README 4.5e-5
NOISE_PRED_TOL = 1e-4    # UNet3D output: measured 9.1e-6, README 3.6e-6
# banks are float16-rounded: a float32 difference of ~1e-6 can round to the neighbouring float16 value, so the
# tolerance is one float16 ulp at |x| < 8 (measured 1.9e-3 = 1 ulp at |x| < 4; README 4.9e-4)
BANK_TOL = 4e-3
# Train-mode (batch statistics) features must differ from the running-statistics ones by more than this; the
# tiny golden differs by 8 or more in every feature, float noise is ~1e-5.
EVAL_MODE_MIN_DIFFERENCE = 1.0


def load_tiny_pose_guider(golden: Path) -> PoseGuider:
    return load_pose_guider(golden / "tiny" / "pose_guider.pth", torch.float32,
                            tiny_lmk2video_config(golden).pose_guider)


def _differs(case: str, array: str, actual: torch.Tensor, other: np.ndarray) -> Comparison:
    difference = float(np.abs(actual.numpy().astype(np.float64) - other).max())
    return Comparison(case, array, difference, EVAL_MODE_MIN_DIFFERENCE, difference > EVAL_MODE_MIN_DIFFERENCE,
                      "must DIFFER by more than tol: eval-mode (running statistics) output")


@torch.inference_mode()
def check_pose_guider(case: str, info: dict, golden: Path) -> list[Comparison]:
    data = np.load(golden / "cases" / info["file"])
    features = load_tiny_pose_guider(golden)(torch.from_numpy(data["pose_cond"]))
    results = []
    for index, feature in enumerate(features):
        results.append(compare(case, f"fea{index}", feature.numpy(), data[f"fea{index}"], POSE_FEATURE_TOL))
        results.append(_differs(case, f"fea{index}_vs_eval_fea{index}", feature, data[f"eval_fea{index}"]))
    return results


@torch.inference_mode()
def check_unet(case: str, info: dict, golden: Path) -> list[Comparison]:
    tiny, cases = golden / "tiny", golden / "cases"
    data = np.load(cases / info["file"])
    args = info["args"]
    unet_config = tiny / "stable-diffusion-v1-5" / "unet" / "config.json"
    reference_unet = load_reference_unet(unet_config, tiny / "reference_unet.pth", torch.float32)
    denoising_unet = load_denoising_unet(unet_config, tiny / "denoising_unet.pth", tiny / "motion_module.pth",
                                         torch.float32, tiny_lmk2video_config(golden).unet)
    pose = torch.from_numpy(np.load(cases / "d_pose_guider.npz")["pose_cond"][:, :, :args["frames"]])
    pose_features = load_tiny_pose_guider(golden)(pose)  # one window: its statistics are those of the CFG-doubled batch

    context = torch.from_numpy(data["clip_image_embeds"])[:, None]
    bank = reference_unet(torch.from_numpy(data["ref_image_latents"]), context)
    results = []
    for index, name in enumerate(args["bank_module_order"]):
        ours = bank[name].to(torch.float16).numpy()
        results.append(compare(case, f"cond_bank{index:02d}", ours, data[f"cond_bank{index:02d}"], BANK_TOL, name))
        # The original ran the reference UNet on the CFG batch [zero context, image context]; only element 1
        # is ever read (element 0 belongs to the unconditional rows, which use plain self-attention), so our
        # single conditional run must equal element 1.
        results.append(compare(case, f"cfg_bank{index:02d}[1]", ours[0], data[f"cfg_bank{index:02d}"][1], BANK_TOL,
                               name))

    bank = round_bank_like_original(bank)
    latents, timestep = torch.from_numpy(data["latents"]), torch.from_numpy(data["t"])
    cond = denoising_unet(latents, timestep, context, pose_features, bank)
    results.append(compare(case, "cond_noise_pred", cond.numpy(), data["cond_noise_pred"], NOISE_PRED_TOL))
    cfg = denoising_unet(latents.repeat(2, 1, 1, 1, 1), timestep, torch.cat([torch.zeros_like(context), context]),
                         [feature.repeat(2, 1, 1, 1, 1) for feature in pose_features], bank,
                         reference_mask=torch.tensor([False, True]))
    results.append(compare(case, "cfg_noise_pred", cfg.numpy(), data["cfg_noise_pred"], NOISE_PRED_TOL,
                           "uncond element: plain self-attention, zero context"))
    return results


CASES = {"d_": check_pose_guider, "e_": check_unet}
