"""A parsed infotext -> processing arguments and override settings (a1111-spec §6.4).

The end-to-end round trip (generate -> infotext -> these arguments -> the same image and infotext) for every
sampler field is in tests/test_sampling_e2e.py; this file checks the mapping itself.
"""

from __future__ import annotations

import logging

import pytest

from modules import infotext_paste, infotext_utils, shared
from modules.infotext_paste import processing_args_from_infotext


def args_of(text: str) -> tuple[dict, dict]:
    params = infotext_utils.parse_generation_parameters(text, opts=shared.opts)
    return processing_args_from_infotext(params, shared.opts)


HIRES = (
    "a cat, (fluffy:1.2)\nNegative prompt: ugly\n"
    "Steps: 25, Sampler: DPM++ SDE, Schedule type: Exponential, CFG scale: 6.5, Seed: 1613920577, Size: 512x768, "
    "Model hash: 6ce0161689, Variation seed: 99, Variation seed strength: 0.25, Seed resize from: 640x384, "
    "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent, "
    'Hires sampler: Euler a, Hires prompt: "a dog, detailed", Refiner: sdxl_refiner [7440042bbd], '
    "Refiner switch at: 0.8, Version: v1.10.1"
)


def test_txt2img_fields_with_their_types():
    args, overrides = args_of(HIRES)
    assert args["prompt"] == "a cat, (fluffy:1.2)" and args["negative_prompt"] == "ugly"
    assert (args["steps"], args["cfg_scale"], args["seed"]) == (25, 6.5, 1613920577)
    assert (args["sampler_name"], args["scheduler"]) == ("DPM++ SDE", "Exponential")
    assert (args["width"], args["height"]) == (512, 768)
    assert (args["subseed"], args["subseed_strength"]) == (99, 0.25)
    assert (args["seed_resize_from_w"], args["seed_resize_from_h"]) == (640, 384)
    assert args["denoising_strength"] == 0.45 and args["enable_hr"] is True
    assert (args["hr_scale"], args["hr_second_pass_steps"], args["hr_upscaler"]) == (1.5, 12, "Latent")
    assert args["hr_sampler_name"] == "Euler a" and "hr_scheduler" not in args
    assert args["hr_prompt"] == "a dog, detailed" and args["hr_negative_prompt"] == ""
    assert "hr_checkpoint_name" not in args
    assert (args["refiner_checkpoint"], args["refiner_switch_at"]) == ("sdxl_refiner [7440042bbd]", 0.8)
    assert overrides == {}  # Model hash is ignored while disable_weights_auto_swap is on (the default)
    for name, value in args.items():
        assert not isinstance(value, str) or name in {
            "prompt", "negative_prompt", "sampler_name", "scheduler", "hr_upscaler", "hr_sampler_name", "hr_prompt",
            "hr_negative_prompt", "refiner_checkpoint",
        }, name  # fmt: skip


@pytest.mark.parametrize(
    "sampler,schedule,expected",
    [
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "Automatic")),  # legacy combined name, Karras is its default
        ("Euler a", "Karras", ("Euler a", "Karras")),
        ("DPM++ 2M", "Karras", ("DPM++ 2M", "Automatic")),
        ("k_euler", "Uniform", ("Euler", "Uniform")),
        ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "Automatic")),
    ],
)
def test_sampler_and_schedule_type(sampler, schedule, expected):
    extra = f", Schedule type: {schedule}" if schedule else ""
    args, _ = args_of(f"x\nSteps: 20, Sampler: {sampler}{extra}, Seed: 1, Size: 64x64")
    assert (args["sampler_name"], args["scheduler"]) == expected


def test_only_fields_the_infotext_has():
    args, overrides = args_of("a cat\nSteps: 20, Seed: 5, Size: 64x64")
    assert "sampler_name" not in args and args["scheduler"] == "Automatic"
    for absent in ("subseed", "subseed_strength", "seed_resize_from_w", "denoising_strength", "enable_hr", "cfg_scale"):
        assert absent not in args
    assert overrides == {}


def test_img2img_fields():
    text = (
        "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Image CFG scale: 1.5, Seed: 5, Size: 64x64, "
        "Denoising strength: 0.6, Mask blur: 8, Mask mode: Inpaint not masked, Masked content: latent noise, "
        "Inpaint area: Only masked, Masked area padding: 16"
    )
    args, _ = args_of(text)
    assert args["image_cfg_scale"] == 1.5 and args["denoising_strength"] == 0.6
    assert args["enable_hr"] is False  # a denoising strength without hires keys is img2img
    assert (args["mask_blur"], args["inpainting_mask_invert"], args["inpainting_fill"]) == (8, 1, 2)
    assert args["inpaint_full_res"] is True and args["inpaint_full_res_padding"] == 16
    defaults, _ = args_of("a cat\nSteps: 20, Seed: 5, Size: 64x64")  # the parser's img2img defaults
    assert defaults["inpainting_mask_invert"] == 0 and defaults["inpaint_full_res"] is False
    assert infotext_paste.MASKED_CONTENT[defaults["inpainting_fill"]] == "original"


def test_sampler_settings_become_typed_override_settings():
    text = (
        "a cat\nSteps: 20, Sampler: Euler a, Seed: 5, Size: 64x64, Clip skip: 2, ENSD: 31337, RNG: NV, Eta: 0.5, "
        "Sigma churn: 0.3, Sigma tmax: 10, Schedule rho: 5, Discard penultimate sigma: True, "
        "UniPC order: 2, UniPC lower order final: False, NGMS: 1.5, Skip Early CFG: 0.2, "
        "Noise Schedule: Zero Terminal SNR, Enable quantization: True, Model hash: 0123456789"
    )
    _, overrides = args_of(text)
    assert overrides == {
        "CLIP_stop_at_last_layers": 2,
        "eta_noise_seed_delta": 31337,
        "randn_source": "NV",
        "eta_ancestral": 0.5,
        "s_churn": 0.3,
        "s_tmax": 10.0,
        "rho": 5.0,
        "always_discard_next_to_last_sigma": True,
        "uni_pc_order": 2,
        "uni_pc_lower_order_final": False,
        "s_min_uncond": 1.5,
        "skip_early_cond": 0.2,
        "sd_noise_schedule": "Zero Terminal SNR",
        "enable_quantization": True,
    }
    assert type(overrides["eta_noise_seed_delta"]) is int and type(overrides["rho"]) is float


def test_pasting_restores_defaults_of_settings_that_differ():
    """An infotext without RNG means the default source: pasting it while another source is set restores it."""
    before = shared.opts.randn_source
    shared.opts.data["randn_source"] = "CPU"
    try:
        _, overrides = args_of("a cat\nSteps: 20, Seed: 5, Size: 64x64")
    finally:
        shared.opts.data["randn_source"] = before
    assert overrides == {"randn_source": "GPU"}


def test_invalid_values_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        args, overrides = args_of("a cat\nSteps: many, Seed: 5, Size: 64x64, CFG scale: high, ENSD: x")
    assert "steps" not in args and "cfg_scale" not in args and args["seed"] == 5
    assert "eta_noise_seed_delta" not in overrides
    assert "'many' for steps" in caplog.text and "'high' for cfg_scale" in caplog.text
