"""The sampler on a GPU's terms, checked on the CPU with the tiny golden models: split attention batches and a
swapped-in attention kernel, out-of-memory recovery, the float32 retry of a decode that overflows, previews, the
speed options, and a model cache that lets go under memory pressure."""
from __future__ import annotations

from dataclasses import replace
import copy
import functools
import importlib
import logging
import sys

import pytest
import torch

from aniportrait.cache import ModelCache
from aniportrait.video import attention as attention_module
from aniportrait.video.attention import attention_backend, sdpa_attention
from aniportrait.video.decoding import decode_video
from aniportrait.video.memory import DeviceMemory
from aniportrait.video.pipeline import SamplerRun, generate
from aniportrait.video.speed import apply_speed, compiled_blocks, is_compiled
from tests.test_pipeline import SHORT, models, poses, reference  # noqa: F401 (module fixtures)

FRAMES = 12
# what batching already moves the tiny model's video by (tests/test_pipeline.py): a swap of the attention kernel or
# the memory layout must stay within it
VIDEO_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def baseline(models, reference, poses):  # noqa: F811
    return generate(models, reference, poses[:FRAMES], replace(SHORT, seed=7))


def run(models, reference, poses, **options):  # noqa: F811
    """The short settings with seed 7, and ``options`` of the run (steps too)."""
    settings = replace(SHORT, seed=7, steps=options.pop("steps", SHORT.steps))
    return generate(models, reference, poses[:FRAMES], settings, SamplerRun(**options))


# --- attention -----------------------------------------------------------------------------------------------

def test_attention_split_into_batches_gives_the_same_numbers(monkeypatch):
    q, k, v = (torch.randn(10, 7, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    whole = sdpa_attention(q, k, v, heads=4)
    monkeypatch.setattr(attention_module, "BATCH_LIMIT", 3)
    assert torch.equal(sdpa_attention(q, k, v, heads=4), whole)


def test_sampler_with_small_attention_batches_matches(models, reference, poses, baseline, monkeypatch):  # noqa: F811
    monkeypatch.setattr(attention_module, "BATCH_LIMIT", 50)  # the motion modules send 2 x 4 x 8 x 8 = 512
    assert (run(models, reference, poses, windows_per_call=4) - baseline).abs().max() < VIDEO_TOLERANCE


def test_split_attention_checks_the_interrupt_between_batches(monkeypatch):
    q = torch.randn(10, 2, 8)
    checks = []
    monkeypatch.setattr(attention_module, "BATCH_LIMIT", 3)
    with attention_backend(check_interrupt=lambda: checks.append(1)):
        sdpa_attention(q, q, q, heads=2)
    assert len(checks) == 4


def test_comfyui_attention_kernel_gives_the_same_video(models, reference, poses, baseline, comfy_root):  # noqa: F811
    """ComfyUI's own kernel (as the nodes install it) in this process, on the CPU."""
    sys.path.insert(0, str(comfy_root / "ComfyUI"))
    try:
        importlib.import_module("comfy.cli_args").args.cpu = True  # as the test server runs (no CUDA here)
        comfy_attention = importlib.import_module("comfy.ldm.modules.attention")
    finally:
        sys.path.remove(str(comfy_root / "ComfyUI"))
    calls = []

    def kernel(q, k, v, heads):
        calls.append(q.shape)
        return comfy_attention.optimized_attention(q, k, v, heads=heads)

    with attention_backend(kernel):
        video = run(models, reference, poses)
    assert calls and (video - baseline).abs().max() < VIDEO_TOLERANCE
    before = len(calls)
    run(models, reference, poses, steps=1)
    assert len(calls) == before  # only inside the block


# --- out of memory -------------------------------------------------------------------------------------------

class FailingAbove:
    """Wraps a module's forward: raises torch.OutOfMemoryError for batches above ``limit`` rows."""

    def __init__(self, monkeypatch, module, method: str, limit: int):
        self.sizes = []
        original = getattr(module, method)

        def forward(sample, *args, **kwargs):
            self.sizes.append(sample.shape[0])
            if sample.shape[0] > limit:
                raise torch.OutOfMemoryError("injected: out of memory")
            return original(sample, *args, **kwargs)

        monkeypatch.setattr(module, method, forward)


def test_out_of_memory_halves_windows_per_call_and_retries(models, reference, poses, baseline, monkeypatch,  # noqa: F811
                                                           caplog):
    unet_calls = FailingAbove(monkeypatch, models.denoising_unet, "forward", limit=2)  # CFG rows: one window
    decode_calls = FailingAbove(monkeypatch, models.vae, "decode", limit=3)
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        video = run(models, reference, poses, windows_per_call=4, decode_batch=12)
    assert (video - baseline).abs().max() < VIDEO_TOLERANCE
    assert unet_calls.sizes[:3] == [8, 4, 2]  # 4 windows, 2, then 1 (x 2 CFG rows)
    assert set(unet_calls.sizes[3:]) == {2}    # later calls keep the size that fitted
    assert decode_calls.sizes[:3] == [12, 6, 3]
    assert "retrying with 2 context windows" in caplog.text and "retrying with 3 frames" in caplog.text


def test_one_frame_that_does_not_fit_is_decoded_in_tiles(models, monkeypatch, caplog):  # noqa: F811
    latents = torch.randn((1, 4, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    expected = decode_video(models.vae, latents, 3)
    FailingAbove(monkeypatch, models.vae, "decode", limit=0)
    tiles = []
    original_tiled = models.vae.tiled_decode
    monkeypatch.setattr(models.vae, "tiled_decode", lambda z: tiles.append(z.shape[0]) or original_tiled(z))
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        video = decode_video(models.vae, latents, 3, DeviceMemory())
    assert tiles == [1, 1, 1]
    assert (video - expected).abs().max() < 1e-5
    assert "decoding the rest in tiles" in caplog.text


def test_a_forced_small_budget_runs_one_window_and_one_frame_per_call(models, reference, poses, baseline,  # noqa: F811
                                                                      monkeypatch):
    unet_calls = FailingAbove(monkeypatch, models.denoising_unet, "forward", limit=1000)
    decode_calls = FailingAbove(monkeypatch, models.vae, "decode", limit=1000)
    video = run(models, reference, poses, memory=DeviceMemory(budget=lambda device: 1))
    assert set(unet_calls.sizes) == {2} and set(decode_calls.sizes) == {1}
    assert (video - baseline).abs().max() < VIDEO_TOLERANCE


def test_other_errors_are_not_retried(models, reference, poses, monkeypatch):  # noqa: F811
    def broken(*args, **kwargs):
        raise ValueError("not a memory problem")

    monkeypatch.setattr(models.denoising_unet, "forward", broken)
    with pytest.raises(ValueError, match="not a memory problem"):
        run(models, reference, poses, windows_per_call=4)


# --- precision -----------------------------------------------------------------------------------------------

def test_decode_batch_with_nan_is_redone_in_float32(models, monkeypatch, caplog):  # noqa: F811
    latents = torch.randn((1, 4, 4, 8, 8), generator=torch.Generator().manual_seed(4))
    half_vae = torch.nn.Module.to(copy.deepcopy(models.vae), torch.bfloat16)
    # the retry runs the half-precision weights in float32 (the full-precision file is not at hand)
    expected = decode_video(torch.nn.Module.to(copy.deepcopy(half_vae), torch.float32), latents, 2)
    vae_class = type(half_vae)
    original = vae_class.decode

    def overflowing_in_half(self, z, *args, **kwargs):
        output = original(self, z, *args, **kwargs)
        if next(self.parameters()).dtype != torch.float32:
            output.sample[:, :, :2] = float("nan")  # what an fp16 overflow leaves behind
        return output

    monkeypatch.setattr(vae_class, "decode", overflowing_in_half)
    with caplog.at_level(logging.WARNING, logger="aniportrait"):
        video = decode_video(half_vae, latents, 2, DeviceMemory())
    assert torch.isfinite(video).all()
    assert (video - expected).abs().max() < 1e-5
    assert caplog.text.count("produced NaN/inf") == 1  # float32 from the first bad batch on
    assert next(half_vae.parameters()).dtype == torch.bfloat16  # the cached model is left as it was


# --- previews and speed options --------------------------------------------------------------------------------

def test_preview_sees_the_predicted_clean_latents_of_every_step(models, reference, poses):  # noqa: F811
    previews, steps = [], []
    run(models, reference, poses, preview=lambda clean: previews.append(clean.clone()),
        on_step=lambda step, latents: steps.append(latents.clone()))
    middle = steps[0].shape[2] // 2
    steps = [latents[:, :, middle:middle + 1] for latents in steps]
    assert len(previews) == SHORT.steps and previews[0].shape == steps[0].shape
    # the last DDIM step lands on its own prediction; earlier ones are still noisier than it
    assert torch.allclose(previews[-1], steps[-1], atol=1e-5)
    assert not torch.allclose(previews[0], steps[0], atol=1e-2)


def test_channels_last_gives_the_same_video(models, reference, poses, baseline):  # noqa: F811
    apply_speed(models.denoising_unet, ("channels_last",))
    try:
        video = run(models, reference, poses, windows_per_call=3)
    finally:
        apply_speed(models.denoising_unet, ())
    assert (video - baseline).abs().max() < VIDEO_TOLERANCE
    assert all(module.weight.is_contiguous() for module in models.denoising_unet.modules()
               if isinstance(module, torch.nn.Conv2d))


def test_compiled_unet_traces_each_block_once_as_one_graph(models, reference, poses, baseline,  # noqa: F811
                                                           monkeypatch):
    """4 windows, 3 per call: the last group is padded to 3, so each compiled block is traced once, as one graph
    (fullgraph: no break), for both steps. Dynamo's eager backend stands in for inductor, whose code generation
    takes minutes here (bench/gpu_check.sh --speed compile times the real one)."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager", fullgraph=True))
    unet = models.denoising_unet
    torch._dynamo.reset()
    counters.clear()
    apply_speed(unet, ("compile",))
    try:
        assert is_compiled(unet)
        checks = []
        video = run(models, reference, poses, windows_per_call=3, check_interrupt=lambda: checks.append(1))
    finally:
        apply_speed(unet, ())
        torch._dynamo.reset()
    assert not is_compiled(unet) and "forward" not in unet.down_blocks[0].__dict__
    assert (video - baseline).abs().max() < VIDEO_TOLERANCE
    assert counters["stats"]["unique_graphs"] == len(compiled_blocks(unet))
    assert not counters["recompiles"]
    assert checks  # the interrupt is still checked, between compiled blocks


# --- model cache -----------------------------------------------------------------------------------------------

def test_cache_lets_go_of_idle_models_least_recently_used_first_under_memory_pressure():
    sizes = {"a": 30, "b": 30, "c": 30, "d": 30}
    cache = ModelCache(reserve=20)
    cache.available = lambda: 100 - sum(sizes[key] for key in cache.keys())
    for name in "abc":
        cache.get(name, lambda name=name: name.upper())
    cache.get("a", lambda: pytest.fail("a is cached"))  # a is now the most recently used
    cache.is_idle = lambda key: key != "b"  # b is in use
    assert cache.release_idle() == 1  # 10 left, 20 wanted: c (least recently used and idle) goes
    assert cache.keys() == ["b", "a"]
    assert cache.release_idle() == 0  # 40 left: enough
    cache.get("d", lambda: "D", size_hint=60)  # 80 wanted: a goes too, b stays (in use)
    assert cache.keys() == ["b", "d"]
