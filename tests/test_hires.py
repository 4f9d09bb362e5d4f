"""Hires fix in txt2img: target size rules, latent and image upscalers, the second pass's sampler, schedule,
prompts and checkpoint, and their infotext keys (a1111-spec §1.2, §5.5, §6.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules import processing, prompt_parser, sd_models, sd_vae, shared
from modules.errors import NotFoundError, UserError

FIXTURES = Path(__file__).parent / "fixtures"


COMMON = dict(prompt="a cat", steps=2, width=64, height=64, seed=21, sampler_name="Euler", do_not_save_samples=True,
              do_not_save_grid=True)


def txt2img(**kwargs) -> tuple[processing.StableDiffusionProcessingTxt2Img, processing.Processed]:
    p = processing.StableDiffusionProcessingTxt2Img(**{**COMMON, **kwargs})
    return p, processing.process_images(p)


@pytest.fixture
def decoded_latents(monkeypatch):
    """Every latent batch process_images decodes, in order."""
    seen: list[torch.Tensor] = []
    decode = processing.decode_latent_batch

    def record(model, z):
        seen.append(z.detach().clone())
        return decode(model, z)

    monkeypatch.setattr(processing, "decode_latent_batch", record)
    return seen


def target(width=64, height=64, **kwargs) -> processing.StableDiffusionProcessingTxt2Img:
    p = processing.StableDiffusionProcessingTxt2Img(enable_hr=True, width=width, height=height, **kwargs)
    p.calculate_target_resolution()
    return p


@pytest.mark.parametrize("size,kwargs,upscale_to,truncate,key", [
    ((512, 512), {"hr_scale": 2}, (1024, 1024), (0, 0), ("Hires upscale", 2)),
    ((64, 96), {"hr_scale": 1.5}, (96, 144), (0, 0), ("Hires upscale", 1.5)),
    ((512, 768), {"hr_resize_x": 1024}, (1024, 1536), (0, 0), ("Hires resize", "1024x0")),
    ((512, 768), {"hr_resize_y": 1024}, (682, 1024), (0, 0), ("Hires resize", "0x1024")),
    # both sides: cover the box keeping the aspect ratio, then crop the overflow (in latent cells)
    ((512, 512), {"hr_resize_x": 1024, "hr_resize_y": 512}, (1024, 1024), (0, 64), ("Hires resize", "1024x512")),
    ((512, 512), {"hr_resize_x": 512, "hr_resize_y": 1024}, (1024, 1024), (64, 0), ("Hires resize", "512x1024")),
    ((512, 768), {"hr_resize_x": 1000, "hr_resize_y": 1000}, (1000, 1500), (0, 62), ("Hires resize", "1000x1000")),
])
def test_target_size_rules(size, kwargs, upscale_to, truncate, key):
    p = target(*size, **kwargs)
    assert (p.hr_upscale_to_x, p.hr_upscale_to_y) == upscale_to
    assert (p.truncate_x, p.truncate_y) == truncate
    assert p.extra_generation_params[key[0]] == key[1]


def test_old_hires_behaviour_derives_the_first_pass_size(monkeypatch):
    monkeypatch.setitem(shared.opts.data, "use_old_hires_fix_width_height", True)
    p = target(1024, 768)
    # the same numbers the infotext parser derives from "Size: 1024x768, First pass size: 0x0" (parity data)
    case = next(c for c in json.loads((FIXTURES / "infotext.json").read_text())["cases"]
                if "First pass size: 0x0" in c["infotext"])
    assert (p.width, p.height) == (case["expected"]["Size-1"], case["expected"]["Size-2"]) == (640, 448)
    # then the final size is covered and cropped: 640x448 → 1097x768, 9 latent columns cut
    assert (p.hr_upscale_to_x, p.hr_upscale_to_y, p.truncate_x, p.truncate_y) == (1097, 768, 9, 0)
    assert (p.hr_resize_x, p.hr_resize_y) == (1024, 768)


def test_latent_upscale_modes_are_a1111s():
    assert shared.latent_upscale_default_mode == "Latent"
    assert shared.latent_upscale_modes == {
        "Latent": {"mode": "bilinear", "antialias": False},
        "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
        "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
        "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
        "Latent (nearest)": {"mode": "nearest", "antialias": False},
        "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
    }


def test_latent_upscale_and_crop(sd1, decoded_latents):
    """Denoising 0 runs no hires step, so the decoded latent is exactly the upscaled (and cropped) first pass."""
    _, first = txt2img()
    z1 = decoded_latents[-1]
    assert first.images[0].size == (64, 64)
    _, res = txt2img(enable_hr=True, hr_upscaler="Latent (bicubic antialiased)", hr_scale=1.5, denoising_strength=0.0)
    expected = torch.nn.functional.interpolate(z1, size=(12, 12), mode="bicubic", antialias=True)
    assert torch.allclose(decoded_latents[-1], expected, atol=1e-6)
    assert res.images[0].size == (96, 96)
    # default upscaler "Latent", cover 96x64 from 64x64: upscale to 96x96, drop 4 latent rows (2 top, 2 bottom)
    _, res = txt2img(enable_hr=True, hr_resize_x=96, hr_resize_y=64, denoising_strength=0.0)
    expected = torch.nn.functional.interpolate(z1, size=(12, 12), mode="bilinear")[:, :, 2:10, :]
    assert torch.allclose(decoded_latents[-1], expected, atol=1e-6)
    assert res.images[0].size == (96, 64)
    params = res.info.splitlines()[-1]
    assert "Hires resize: 96x64" in params and "Hires upscaler" not in params


def test_image_upscaler_pass(sd1, decoded_latents):
    _, res = txt2img(enable_hr=True, hr_upscaler="Lanczos", hr_scale=1.5, denoising_strength=0.0)
    first, final = decoded_latents
    first_image = processing.tensor_to_pil(processing.decode_latent_batch(sd1, first)[0])
    upscaled = first_image.resize((96, 96), resample=Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.moveaxis(np.asarray(upscaled, dtype=np.float32) / 255, 2, 0))[None]
    assert torch.allclose(final, sd_vae.encode_images(sd1, pixels), atol=1e-5)
    assert res.images[0].size == (96, 96) and "Hires upscaler: Lanczos" in res.info


def test_second_pass_infotext_prompts_schedule_and_saved_first_pass(sd1, monkeypatch, tmp_path):
    monkeypatch.setitem(shared.opts.data, "save_images_before_highres_fix", True)
    calls = []
    multicond = prompt_parser.get_multicond_learned_conditioning

    def record(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
        calls.append((list(prompts), steps, hires_steps))
        return multicond(model, prompts, steps, hires_steps, use_old_scheduling)

    monkeypatch.setattr(prompt_parser, "get_multicond_learned_conditioning", record)
    p, res = txt2img(prompt="a cat on a mat", enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3,
                     denoising_strength=0.5, sampler_name="Euler a", hr_sampler_name="DPM++ 2M",
                     hr_scheduler="Exponential", hr_prompt="a dog", hr_negative_prompt="blurry",
                     do_not_save_samples=False, outpath_samples=str(tmp_path))
    params = res.info.splitlines()[-1]
    expected_order = ["Schedule type: Automatic", "Denoising strength: 0.5", "Hires sampler: DPM++ 2M",
                      "Hires prompt: a dog", "Hires negative prompt: blurry", "Hires schedule type: Exponential",
                      "Hires upscale: 1.5", "Hires steps: 3", "Version"]
    positions = [params.index(key) for key in expected_order]
    assert positions == sorted(positions), params
    # A1111's own order of the keys both have (the parity create case with hires fix)
    case = next(c for c in json.loads((FIXTURES / "infotext.json").read_text())["create_cases"]
                if c["p"].get("enable_hr"))
    shared_keys = [k for k in case["p"]["extra_generation_params"] if f"{k}: " in params]
    assert shared_keys == ["Denoising strength", "Hires upscale", "Hires steps"]
    assert [params.index(k) for k in shared_keys] == sorted(params.index(k) for k in shared_keys)
    # the hires prompt was encoded on the hires time base (first pass 2 steps, hires 3)
    assert (["a dog"], 2, 3) in calls and (["a cat on a mat"], 2, None) in calls
    saved = sorted(x.name for x in tmp_path.rglob("*.png"))
    assert len(saved) == 2 and any(name.endswith("-before-highres-fix.png") for name in saved)
    assert res.images[0].size == (96, 96)


def test_hires_checkpoint_is_used_and_switched_back(sd1, tiny_checkpoints):
    other = sd_models.find_checkpoint(tiny_checkpoints["sd1_ckpt"].name)
    setting = shared.opts.sd_model_checkpoint
    used = []
    original = processing.StableDiffusionProcessingTxt2Img.sample_hr_pass

    def spy(self, *args):
        used.append(shared.sd_model.sd_checkpoint_info.filename)
        return original(self, *args)

    processing.StableDiffusionProcessingTxt2Img.sample_hr_pass = spy
    try:
        _, res = txt2img(enable_hr=True, hr_scale=1.25, denoising_strength=0.5, hr_checkpoint_name=other.name)
    finally:
        processing.StableDiffusionProcessingTxt2Img.sample_hr_pass = original
    assert used == [other.filename]
    assert shared.sd_model.sd_checkpoint_info.filename == sd1.sd_checkpoint_info.filename
    assert shared.opts.sd_model_checkpoint == setting
    assert f"Hires checkpoint: {other.short_title}" in res.info


def test_firstpass_image(sd1, decoded_latents):
    given = Image.fromarray(np.kron(np.random.RandomState(0).randint(0, 256, (8, 8, 3)),
                                    np.ones((8, 8, 1))).astype(np.uint8))
    _, res = txt2img(enable_hr=True, hr_upscaler="Lanczos", hr_scale=1.5, denoising_strength=0.0, firstpass_image=given)
    upscaled = given.resize((96, 96), resample=Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.moveaxis(np.asarray(upscaled, dtype=np.float32) / 255, 2, 0))[None]
    assert len(decoded_latents) == 1  # no first pass was generated
    assert torch.allclose(decoded_latents[0], sd_vae.encode_images(sd1, pixels), atol=1e-5)
    assert res.images[0].size == (96, 96)


def test_bad_hires_parameters(sd1):
    for kwargs, error, message in (
        ({"hr_upscaler": "Nope"}, NotFoundError, "could not find upscaler named 'Nope'"),
        ({"hr_checkpoint_name": "no-such-model"}, NotFoundError, "no-such-model"),
        ({"hr_sampler_name": "Nope"}, NotFoundError, "Sampler 'Nope' not found"),
        ({"denoising_strength": 2}, UserError, "between 0 and 1"),
        ({"hr_scale": 0}, UserError, "greater than 0"),
        ({"hr_resize_x": -8}, UserError, "hr_resize_x"),
    ):
        with pytest.raises(error, match=message):
            processing.process_images(processing.StableDiffusionProcessingTxt2Img(**{**COMMON, "enable_hr": True,
                                                                                      **kwargs}))
    # "Use same ..." from the UI means the first pass's
    p = processing.StableDiffusionProcessingTxt2Img(enable_hr=True, hr_sampler_name="Use same sampler",
                                                    hr_scheduler="Use same scheduler",
                                                    hr_checkpoint_name="Use same checkpoint")
    assert p.hr_sampler_name is None and p.hr_scheduler is None and p.hr_checkpoint_name is None
    p = processing.StableDiffusionProcessingTxt2Img(**{**COMMON, "enable_hr": True, "hr_resize_x": 96.0})
    p.validate()  # UI sliders send floats
    assert p.hr_resize_x == 96 and isinstance(p.hr_resize_x, int)
