"""The img2img starting point in the sampling layer (a1111-spec §5.3): t_enc, the start index into the schedule,
img2img_fix_steps, explicit (hires) step counts, the noised start latent, extra noise, and inpaint blending.

The sampling functions are replaced by recorders, so these tests check exactly what a sampler is started with.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

import modules
from modules import processing, rng, script_callbacks, sd_samplers, shared
from modules.k_diffusion import sampling as k_sampling
from modules.sd_samplers_common import setup_img2img_steps
from modules.sd_samplers_timesteps_impl import get_timesteps


def make_p(steps=10, denoise=0.3, sampler="Euler", **kwargs):
    p = processing.StableDiffusionProcessingImg2Img(init_images=[Image.new("RGB", (64, 64))], steps=steps,
                                                    denoising_strength=denoise, sampler_name=sampler, width=64,
                                                    height=64, seed=5, **kwargs)
    p.validate()
    p.seeds = [5]
    p.rng = rng.ImageRNG((4, 8, 8), [5])
    return p


def recording(sampler, signature: str):
    """Replace the sampler's function by one with `signature` that records its arguments and returns x."""
    record: dict = {}
    namespace: dict = {"record": record}
    exec(f"def fake({signature}):\n    record.update(locals())\n    return x\n", namespace)
    sampler.func = namespace["fake"]
    return record


def latents(seed: int) -> torch.Tensor:
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps,denoise,fix,explicit,expected", [
    (20, 0.5, False, None, (20, 10)),
    (20, 0.75, False, None, (20, 15)),
    (20, 1.0, False, None, (20, 19)),  # min(denoise, 0.999)
    (20, 0.0, False, None, (20, 0)),
    (10, 0.3, True, None, (33, 9)),  # fix steps: int(10 / 0.3) steps, the last 10 run
    (10, 0.3, False, 5, (16, 4)),  # an explicit step count (hires) always works like fix steps
    (10, 0.0, False, 5, (0, 4)),
])
def test_setup_img2img_steps(monkeypatch, steps, denoise, fix, explicit, expected):
    monkeypatch.setitem(shared.opts.data, "img2img_fix_steps", fix)
    p = types.SimpleNamespace(steps=steps, denoising_strength=denoise)
    assert setup_img2img_steps(p, explicit) == expected


def test_kdiffusion_start_sigma_and_schedule(sd1):
    p = make_p(steps=10, denoise=0.3)
    sampler = sd_samplers.create_sampler("Euler", sd1)
    record = recording(sampler, "model, x, sigmas, extra_args=None, callback=None, disable=None")
    x, noise = latents(1), latents(2)
    out = sampler.sample_img2img(p, x, noise, None, None)
    full = sampler.model_wrap.get_sigmas(10)  # Euler: the model's own (uniform) schedule
    t_enc = 3
    assert torch.equal(record["sigmas"], full[10 - t_enc - 1:])  # the last t_enc + 1 steps run
    assert torch.allclose(record["x"], x + noise * full[6])
    assert torch.equal(out, record["x"])
    assert sampler.model_wrap_cfg.init_latent is x
    assert shared.state.sampling_steps == t_enc + 1


def test_kdiffusion_fix_steps_and_karras(sd1, monkeypatch):
    monkeypatch.setitem(shared.opts.data, "img2img_fix_steps", True)
    p = make_p(steps=10, denoise=0.3, sampler="DPM++ 2M")
    sampler = sd_samplers.create_sampler("DPM++ 2M", sd1)
    record = recording(sampler, "model, x, sigmas, extra_args=None, callback=None, disable=None")
    x, noise = latents(1), latents(2)
    sampler.sample_img2img(p, x, noise, None, None)
    smin, smax = sampler.model_wrap.sigmas[0].item(), sampler.model_wrap.sigmas[-1].item()
    karras = k_sampling.get_sigmas_karras(33, smin, smax)
    assert len(record["sigmas"]) == 11  # exactly the 10 requested steps run
    assert torch.allclose(record["sigmas"], karras[23:].to(record["sigmas"]))
    assert torch.allclose(record["x"], x + noise * karras[23])


def test_explicit_steps_and_denoise_zero(sd1):
    p = make_p(steps=10, denoise=0.5)
    sampler = sd_samplers.create_sampler("Euler", sd1)
    record = recording(sampler, "model, x, sigmas, extra_args=None, callback=None, disable=None")
    x, noise = latents(1), latents(2)
    sampler.sample_img2img(p, x, noise, None, None, steps=5)  # hires: 5 steps of a 10-step schedule
    assert torch.equal(record["sigmas"], sampler.model_wrap.get_sigmas(10)[5:])
    record.clear()
    p.denoising_strength = 0.0
    assert sampler.sample_img2img(p, x, noise, None, None, steps=5) is x and not record


def test_dpm_fast_gets_the_schedule_ends(sd1):
    p = make_p(steps=10, denoise=0.5, sampler="DPM fast")
    sampler = sd_samplers.create_sampler("DPM fast", sd1)
    record = recording(sampler, "model, x, sigma_min, sigma_max, n, extra_args=None, callback=None, disable=None")
    sampler.sample_img2img(p, latents(1), latents(2), None, None)
    sched = sampler.model_wrap.get_sigmas(10)[4:]
    assert record["n"] == 6  # t_enc + 1 steps
    assert record["sigma_max"] == pytest.approx(sched[0].item()) and record["sigma_min"] == pytest.approx(sched[-2].item())


def test_extra_noise_and_its_callback(sd1, monkeypatch):
    monkeypatch.setitem(shared.opts.data, "img2img_extra_noise", 0.5)
    seen = []

    def double_noise(params):
        seen.append(params)
        params.noise = params.noise * 2

    script_callbacks.on_extra_noise(double_noise)
    try:
        p = make_p(steps=10, denoise=0.3)
        sampler = sd_samplers.create_sampler("Euler", sd1)
        record = recording(sampler, "model, x, sigmas, extra_args=None, callback=None, disable=None")
        x, noise = latents(1), latents(2)
        sampler.sample_img2img(p, x, noise, None, None)
    finally:
        script_callbacks.remove_callbacks_for_function(double_noise)
    sigma = sampler.model_wrap.get_sigmas(10)[6]
    assert torch.allclose(record["x"], x + noise * sigma + 2 * noise * 0.5)
    assert len(seen) == 1 and seen[0].x is x
    assert p.extra_generation_params["Extra noise"] == 0.5


@pytest.mark.parametrize("name", ["DDIM", "PLMS", "UniPC"])
def test_timestep_samplers_noise_to_timesteps_t_enc(sd1, name):
    p = make_p(steps=10, denoise=0.5, sampler=name)
    sampler = sd_samplers.create_sampler(name, sd1)
    record = recording(sampler, "model, x, timesteps, extra_args=None, callback=None, disable=None, **options")
    x, noise = latents(1), latents(2)
    sampler.sample_img2img(p, x, noise, None, None)
    ts = get_timesteps(10)
    t_enc = 5
    ac = sd1.alphas_cumprod[ts[t_enc]]
    assert torch.equal(record["timesteps"], ts[:t_enc])
    assert torch.allclose(record["x"], x * ac.sqrt() + noise * (1 - ac).sqrt())
    assert sampler.model_wrap_cfg.init_noise is noise


def test_timestep_sampler_with_nothing_to_run_returns_the_noised_latent(sd1):
    p = make_p(steps=10, denoise=0.05, sampler="UniPC")
    sampler = sd_samplers.create_sampler("UniPC", sd1)
    record = recording(sampler, "model, x, timesteps, extra_args=None, callback=None, disable=None")
    x, noise = latents(1), latents(2)
    out = sampler.sample_img2img(p, x, noise, None, None)
    ac = sd1.alphas_cumprod[get_timesteps(10)[0]]
    assert not record and torch.allclose(out, x * ac.sqrt() + noise * (1 - ac).sqrt())


@dataclass
class MaskBlendArgs:  # the shape of A1111's scripts.MaskBlendArgs
    current_latent: torch.Tensor
    nmask: torch.Tensor
    init_latent: torch.Tensor
    mask: torch.Tensor
    blended_latent: torch.Tensor
    denoiser: object = None
    sigma: object = None


def test_inpaint_blending_in_the_denoisers(sd1, monkeypatch):
    mask = torch.zeros(4, 8, 8)
    mask[:, :, :4] = 1  # keep the left half
    init, current, noise = latents(1), latents(2), latents(3)

    k = sd_samplers.create_sampler("Euler", sd1).model_wrap_cfg
    k.mask, k.nmask, k.init_latent = mask, 1 - mask, init
    blended = k.apply_blend(current, torch.tensor([1.0]))
    assert torch.equal(blended[..., :4], init[..., :4]) and torch.equal(blended[..., 4:], current[..., 4:])

    t = sd_samplers.create_sampler("DDIM", sd1).model_wrap_cfg
    t.mask, t.nmask, t.init_latent, t.init_noise = mask, 1 - mask, init, noise
    blended = t.apply_blend(current, torch.tensor([500.0]))
    ac = sd1.alphas_cumprod[500]
    assert torch.allclose(blended[..., :4], (ac.sqrt() * init + (1 - ac).sqrt() * noise)[..., :4])
    assert torch.equal(blended[..., 4:], current[..., 4:])

    # scripts' on_mask_blend sees A1111's MaskBlendArgs and may replace the result
    calls = []

    class Runner:
        def on_mask_blend(self, p, args):
            calls.append(args)
            args.blended_latent = args.blended_latent * 0

    stub = types.ModuleType("modules.scripts")
    stub.MaskBlendArgs = MaskBlendArgs
    monkeypatch.setitem(sys.modules, "modules.scripts", stub)
    monkeypatch.setattr(modules, "scripts", stub, raising=False)
    k.p = types.SimpleNamespace(scripts=Runner())
    out = k.apply_blend(current, torch.tensor([1.0]))
    assert torch.equal(out, torch.zeros_like(out)) and calls[0].denoiser is k and calls[0].init_latent is init
