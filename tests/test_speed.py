"""Speed options: torch.compile of the UNet (setting and flag), channels_last, bf16, cheap torch_gc, tiled VAE
decode with its out-of-memory fallback, the bf16 NaN retry, and (on CUDA only) a sampling loop without host syncs."""

from __future__ import annotations

import argparse
import gc
import os

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from modules import (
    checkpoint_factory,
    cmd_args,
    devices,
    processing,
    rng,
    sd_models,
    sd_speed,
    sd_vae,
    shared,
    vae_tiling,
)

slow = pytest.mark.skipif(
    not os.environ.get("SD_WEBUI_SLOW_TESTS"),
    reason="compiles with inductor (minutes on a 2-core CPU); set SD_WEBUI_SLOW_TESTS=1",
)
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def txt2img(**kw) -> Image.Image:
    args = dict(
        prompt="a red fox",
        sampler_name="Euler",
        steps=2,
        width=64,
        height=64,
        seed=11,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    args.update(kw)
    return processing.process_images(processing.StableDiffusionProcessingTxt2Img(**args)).images[0]


def tiny_unet() -> UNet2DConditionModel:
    unet_config, _ = checkpoint_factory._configs("sd1", "tiny")
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config).eval().requires_grad_(False)


def tiny_vae() -> AutoencoderKL:
    _, vae_config = checkpoint_factory._configs("sd1", "tiny")
    torch.manual_seed(0)
    return AutoencoderKL(**vae_config).eval().requires_grad_(False)


def unet_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 8, 8, generator=g), torch.tensor([999.0, 500.0]), torch.randn(2, 77, 64, generator=g)


# -- torch.compile ---------------------------------------------------------------------------------------------------


def test_compile_is_off_by_default_and_the_flag_wins_over_the_setting(sd1):
    assert shared.opts.unet_compile == "Disable" and shared.opts.unet_compile_regional is False
    assert sd_speed.requested(shared.cmd_opts, shared.opts) is None
    assert not sd_speed.is_compiled(sd1.unet)
    flags = argparse.Namespace(torch_compile="max-autotune", torch_compile_regional=True)
    opts = argparse.Namespace(unet_compile="default", unet_compile_regional=False)
    assert sd_speed.requested(flags, opts) == sd_speed.CompileRequest("max-autotune", regional=True)
    no_flag = argparse.Namespace(torch_compile=None, torch_compile_regional=False)
    assert sd_speed.requested(no_flag, opts) == sd_speed.CompileRequest("default", regional=False)
    assert cmd_args.parser.parse_args(["--torch-compile"]).torch_compile == "default"
    assert cmd_args.parser.parse_args(["--torch-compile", "reduce-overhead"]).torch_compile == "reduce-overhead"


def test_changing_the_setting_compiles_and_uncompiles_the_loaded_model_with_the_cache_in_the_data_dir(sd1, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    try:
        shared.opts.set("unet_compile", "default")
        assert sd_speed.is_compiled(sd1.unet)  # lazily: nothing is compiled before the first call
        assert sd1.compile_request == sd_speed.CompileRequest("default")
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == os.path.join(shared.data_path, "cache", "torch-compile")
        assert os.path.isdir(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        assert torch._inductor.config.freezing is False  # weights are not folded into the graph
    finally:
        shared.opts.set("unet_compile", "Disable")
    assert not sd_speed.is_compiled(sd1.unet) and sd1.compile_request is None


def test_compiled_unet_follows_in_place_weight_patches_without_recompiling():
    """What LoRA relies on: patching weights in place (or swapping a Parameter) neither recompiles nor is ignored.
    Dynamo's guards decide recompiles whatever the backend, so the fast `eager` backend is enough here."""
    from torch._dynamo.utils import counters

    unet = tiny_unet()
    x, t, c = unet_inputs()
    keys = list(unet.state_dict())
    with torch.no_grad():
        reference = unet(x, t, encoder_hidden_states=c).sample
        sd_speed.compile_unet(unet, sd_speed.CompileRequest("default", regional=True, backend="eager"))
        assert sd_speed.is_compiled(unet) and list(unet.state_dict()) == keys
        out = unet(x, t, encoder_hidden_states=c).sample
        torch.testing.assert_close(out, reference)
        graphs = counters["stats"]["unique_graphs"]

        block = next(m for m in unet.modules() if m.__class__.__name__ == "BasicTransformerBlock")
        block.attn1.to_q.weight.mul_(3.0)
        patched = unet(x, t, encoder_hidden_states=c).sample
        block.attn2.to_out[0].weight = torch.nn.Parameter(block.attn2.to_out[0].weight * 2.0, requires_grad=False)
        swapped = unet(x, t, encoder_hidden_states=c).sample
        assert counters["stats"]["unique_graphs"] == graphs, "a weight patch recompiled the UNet"
        with sd_speed.eager():
            eager_swapped = unet(x, t, encoder_hidden_states=c).sample
        assert (patched - reference).abs().max() > 1e-3, "the in-place patch was ignored"
        torch.testing.assert_close(swapped, eager_swapped)
        sd_speed.uncompile(unet)
        assert not sd_speed.is_compiled(unet)


def test_compile_is_not_combined_with_offloading(caplog):
    model = argparse.Namespace(unet=tiny_unet(), offloader=object())
    flags = argparse.Namespace(opt_channelslast=False, torch_compile="default", torch_compile_regional=False)
    assert sd_speed.apply(model, cmd_opts=flags) is None
    assert not sd_speed.is_compiled(model.unet) and "not used with --medvram/--lowvram" in caplog.text


@slow
def test_inductor_compiled_generation_matches_eager(sd1):
    from torch._dynamo.utils import counters

    eager = np.asarray(txt2img(), dtype=np.int16)
    graphs = counters["stats"]["unique_graphs"]
    try:
        shared.opts.set("unet_compile", "default")
        with torch._dynamo.config.patch(suppress_errors=False):  # a failed compile must fail here, not run eagerly
            compiled = np.asarray(txt2img(), dtype=np.int16)
    finally:
        shared.opts.set("unet_compile", "Disable")
    assert counters["stats"]["unique_graphs"] > graphs
    assert np.abs(compiled - eager).max() <= 1


def test_channels_last_flag_changes_the_layout_not_the_image(sd1):
    before = np.asarray(txt2img(), dtype=np.int16)
    flags = argparse.Namespace(opt_channelslast=True, torch_compile=None, torch_compile_regional=False)
    try:
        sd_speed.apply(sd1, cmd_opts=flags)
        assert sd1.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        after = np.asarray(txt2img(), dtype=np.int16)
    finally:
        sd1.unet.to(memory_format=torch.contiguous_format)
    assert np.abs(after - before).max() <= 1


# -- precision, memory release ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,unet,vae",
    [
        ([], torch.float16, torch.float16),
        (["--bf16"], torch.bfloat16, torch.bfloat16),
        (["--bf16", "--no-half-vae"], torch.bfloat16, torch.float32),
        (["--bf16", "--no-half"], torch.float32, torch.float32),
    ],
)
def test_half_precision_dtype_on_a_gpu(monkeypatch, flags, unet, vae):
    monkeypatch.setattr(devices, "get_device_for", lambda task, use_cpu, device_id=None: torch.device("cuda"))
    try:
        devices.configure(cmd_args.parser.parse_args(flags))
        assert (devices.dtype_unet, devices.dtype_vae) == (unet, vae)
    finally:
        monkeypatch.undo()
        devices.configure(shared.cmd_opts)
    assert devices.dtype == torch.float32


def test_torch_gc_skips_the_full_collection_and_library_objects_are_frozen(sd1, monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or 0)
    devices.torch_gc()
    assert calls == []
    assert gc.get_freeze_count() > 10000  # frozen before the first model was built


# -- tiled VAE decode ------------------------------------------------------------------------------------------------


def test_tiles_cover_the_image_exactly_for_a_local_decoder():
    """With a decoder that looks at each latent cell alone, tiling must reproduce the whole-image result exactly,
    whatever the sizes: this checks the tile, margin and blend geometry."""
    latents = torch.randn(1, 4, 33, 40, generator=torch.Generator().manual_seed(2))

    def local(z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(z[:, :3] * 2 + z[:, 3:], scale_factor=8, mode="nearest")

    for tile in (8, 13, 16, 40):
        torch.testing.assert_close(vae_tiling.decode(local, latents, tile), local(latents))


def test_tiled_decode_is_close_to_the_whole_decode_on_the_tiny_vae():
    vae = tiny_vae()
    latents = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = vae.decode(latents).sample
        tiled = vae_tiling.decode(lambda z: vae.decode(z).sample, latents, vae_tiling.tile_cells(96, vae))
        vae.enable_tiling()  # diffusers' own tiling at the same tile size, for scale
        vae.tile_sample_min_size, vae.tile_latent_min_size = 96, 12
        theirs = vae.decode(latents).sample
    assert tiled.shape == whole.shape == (1, 3, 160, 160)
    ours_error = (tiled - whole).abs().mean().item()
    theirs_error = (theirs - whole).abs().mean().item()
    correlation = torch.corrcoef(torch.stack([tiled.flatten(), whole.flatten()]))[0, 1].item()
    # Random weights exaggerate GroupNorm's dependence on the whole image. Measured: 0.062 (diffusers' tiling
    # 0.149), correlation 0.970, on values of standard deviation ~0.4.
    assert ours_error < 0.08 and correlation > 0.95
    assert ours_error < theirs_error / 2


def test_decode_latents_tiles_only_when_asked_and_the_image_is_larger_than_a_tile(sd1, monkeypatch):
    shapes = []
    original = sd1.decode_first_stage
    monkeypatch.setattr(sd1, "decode_first_stage", lambda z: shapes.append(tuple(z.shape[-2:])) or original(z))
    latents = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(3))
    whole = sd_vae.decode_latents(sd1, latents)
    assert shapes == [(20, 20)]
    shared.opts.sd_vae_tiled_decode = True
    shared.opts.sd_vae_tile_size = 96
    try:
        shapes.clear()
        tiled = sd_vae.decode_latents(sd1, latents)
        assert len(shapes) == 4 and all(max(s) < 20 for s in shapes)
        assert tiled.shape == whole.shape == (1, 3, 160, 160)
        assert (tiled - whole).abs().mean() < 0.05  # images in [0, 1]
        shapes.clear()
        sd_vae.decode_latents(sd1, latents[..., :12, :12])  # not larger than a tile: whole
        assert shapes == [(12, 12)]
    finally:
        shared.opts.sd_vae_tiled_decode = False
        shared.opts.sd_vae_tile_size = 512


def test_out_of_memory_in_a_whole_image_decode_is_retried_in_tiles(sd1, monkeypatch, caplog):
    original = sd1.decode_first_stage

    def limited(z: torch.Tensor) -> torch.Tensor:
        if max(z.shape[-2:]) > 20:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(z)

    monkeypatch.setattr(sd1, "decode_first_stage", limited)
    latents = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(4))
    shared.opts.sd_vae_tile_size = 96
    try:
        images = sd_vae.decode_latents(sd1, latents)
    finally:
        shared.opts.sd_vae_tile_size = 512
    assert images.shape == (1, 3, 192, 192) and torch.isfinite(images).all()
    assert "retrying in tiles of 96 pixels" in caplog.text


def test_all_nan_half_vae_is_retried_in_bfloat16_when_asked(sd1):
    vae = sd1.first_stage_model
    saved = {k: v.clone() for k, v in vae.state_dict().items()}
    old_dtype = devices.dtype_vae
    with torch.no_grad():
        vae.post_quant_conv.weight.mul_(300)  # activations ~1e5: beyond float16, fine in bfloat16
    devices.dtype_vae = torch.float16
    vae.to(torch.float16)
    shared.opts.auto_vae_precision_bfloat16 = True
    try:
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 300
        images = sd_vae.decode_latents(sd1, latents)
        assert not torch.isnan(images).any()
        assert devices.dtype_vae == torch.bfloat16 and vae.dtype == torch.bfloat16
    finally:
        shared.opts.auto_vae_precision_bfloat16 = False
        devices.dtype_vae = old_dtype
        vae.to(torch.float32)
        vae.load_state_dict(saved)


# -- sigmas on the CPU, latents on the GPU ---------------------------------------------------------------------------


def test_k_samplers_take_cpu_sigmas_with_latents_on_another_device():
    """Sigmas stay on the CPU so that the loop never waits for the GPU; the latents are on the GPU. The meta device
    enforces CUDA's rule (only 0-dim CPU tensors combine with it), so this runs each sampler as on a GPU, shapes
    only."""
    import inspect

    from modules.k_diffusion import sampling

    x = torch.zeros(1, 4, 8, 8, device="meta")
    sigmas = torch.tensor([14.6, 5.0, 1.0, 0.03, 0.0])
    names = [
        n
        for n in dir(sampling)
        if n.startswith("sample_") and "sigmas" in inspect.signature(getattr(sampling, n)).parameters
    ]
    assert len(names) >= 11
    for name in names:
        fn = getattr(sampling, name)
        kwargs = {}
        if "noise_sampler" in inspect.signature(fn).parameters:
            kwargs["noise_sampler"] = lambda sigma, sigma_next: torch.zeros_like(x)
        out = fn(lambda x, sigma, **kw: x * 0.5, x, sigmas, disable=True, **kwargs)
        assert out.device.type == "meta" and out.shape == x.shape, name


# -- CUDA only: no host synchronisation while sampling ---------------------------------------------------------------


@cuda_only
@pytest.mark.cuda
@pytest.mark.parametrize("source", ["GPU", "CPU", "NV"])
def test_noise_reaches_the_gpu_without_a_sync(source):
    settings = rng.RngSettings(source=source, device="cuda")
    g = rng.ImageRNG((4, 8, 8), [1, 2], settings=settings)
    g.next()
    torch.cuda.set_sync_debug_mode("error")
    try:
        noise = g.next()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert noise.device.type == "cuda" and noise.shape == (2, 4, 8, 8)


@cuda_only
@pytest.mark.cuda
def test_sampling_loop_has_no_host_sync(tiny_checkpoints):
    """From the first denoiser call to the end of sampling nothing may wait for the GPU (`.item()`, pageable
    copies, ...): such waits starve the GPU of queued work at every step."""
    from modules import script_callbacks
    from modules.benchmark import ours
    from modules.benchmark.cases import Case

    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    case = Case("tiny SD1", "sd1", "tiny", 64, 64, 4)
    p = ours.make_processing(case)

    class Clock:
        def mark_start(self) -> None:
            torch.cuda.set_sync_debug_mode("error")

        def mark_end(self) -> None:
            torch.cuda.set_sync_debug_mode("default")

    def on_denoiser(params: script_callbacks.CFGDenoiserParams) -> None:
        p.clock.mark_start()

    p.clock = Clock()
    script_callbacks.on_cfg_denoiser(on_denoiser)
    try:
        processing.process_images(p)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        script_callbacks.remove_callbacks_for_function(on_denoiser)
