"""VAE decoding: all-NaN output in half precision is retried in fp32 (auto_vae_precision) or explained."""

from __future__ import annotations

import pytest
import torch

from modules import devices, sd_models, sd_vae, shared


@pytest.fixture()
def half_vae_model(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    model = sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    vae = model.first_stage_model
    saved = {k: v.clone() for k, v in vae.state_dict().items()}
    with torch.no_grad():
        # With latents ×300 below, activations reach ~1e5: beyond float16 (max 65504), harmless in float32.
        vae.post_quant_conv.weight.mul_(300)
    old_dtype = devices.dtype_vae
    devices.dtype_vae = torch.float16
    vae.to(torch.float16)
    yield model
    devices.dtype_vae = old_dtype
    vae.to(torch.float32)
    vae.load_state_dict(saved)


def test_nan_in_half_precision_retries_in_fp32(half_vae_model):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 300
    shared.opts.auto_vae_precision = True
    images = sd_vae.decode_latents(half_vae_model, latents)
    assert images.shape == (1, 3, 64, 64)
    assert not torch.isnan(images).any()
    assert devices.dtype_vae == torch.float32 and half_vae_model.first_stage_model.dtype == torch.float32


def test_without_auto_precision_the_error_names_no_half_vae(half_vae_model):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 300
    shared.opts.auto_vae_precision = False
    try:
        with pytest.raises(devices.NansException, match="--no-half-vae"):
            sd_vae.decode_latents(half_vae_model, latents)
    finally:
        shared.opts.auto_vae_precision = True
