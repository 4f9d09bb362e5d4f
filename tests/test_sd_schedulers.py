"""Noise schedules against the parity data (tests/fixtures/sigmas.json, parity README §4).

Sigma values are float32 in the reference and written as exact decimals, so they are compared for equality.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from modules import sd_samplers, sd_schedulers
from modules.k_diffusion import external, sampling
from modules.sd_samplers_lcm import LCMCompVisDenoiser

DATA = json.loads((Path(__file__).parent / "fixtures" / "sigmas.json").read_text())
SCHEDULE = DATA["schedule"]
ALPHAS_CUMPROD = torch.tensor(SCHEDULE["alphas_cumprod_float32"], dtype=torch.float32)


class FakeModel:
    def __init__(self, alphas_cumprod: torch.Tensor):
        self.alphas_cumprod = alphas_cumprod


def exact_list(t: torch.Tensor) -> list[float]:
    return t.double().tolist()


def case_id(case: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in case["opts"].items())
    who = case.get("sampler") or case["scheduler"]
    return f"{case['group']}-{who}-{case['steps']}{'-discard' if case['discard_next_to_last_sigma'] else ''}-{opts}"


def test_alphas_cumprod_and_sigmas_from_betas():
    betas = np.linspace(math.sqrt(SCHEDULE["linear_start"]), math.sqrt(SCHEDULE["linear_end"]), 1000) ** 2
    alphas_cumprod = torch.tensor(np.cumprod(1 - betas), dtype=torch.float64).float()
    assert exact_list(alphas_cumprod) == SCHEDULE["alphas_cumprod_float32"]

    wrap = external.CompVisDenoiser(FakeModel(alphas_cumprod))
    assert wrap.sigmas.dtype == torch.float32
    assert exact_list(wrap.sigmas) == SCHEDULE["sigmas_float32"]
    assert wrap.sigma_min.item() == SCHEDULE["sigma_min"]
    assert wrap.sigma_max.item() == SCHEDULE["sigma_max"]
    assert torch.equal(wrap.log_sigmas, wrap.sigmas.log())


@pytest.mark.parametrize("case", DATA["sigma_to_t"], ids=lambda c: str(c["sigma_float32"]))
def test_sigma_to_t(case):
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    sigma = torch.tensor(case["sigma_float32"], dtype=torch.float32)
    assert wrap.sigma_to_t(sigma).item() == case["t"]
    assert wrap.sigma_to_t(sigma, quantize=True).item() == case["t_quantized"]
    quantizing = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD), quantize=True)
    assert quantizing.sigma_to_t(sigma).item() == case["t_quantized"]
    assert quantizing.sigma_to_t(sigma, quantize=False).item() == case["t"]


def test_sigma_to_t_keeps_batch_shape():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    sigmas = torch.tensor([[c["sigma_float32"] for c in DATA["sigma_to_t"]]], dtype=torch.float32)
    t = wrap.sigma_to_t(sigmas)
    assert t.shape == sigmas.shape
    assert t[0].tolist() == [c["t"] for c in DATA["sigma_to_t"]]


@pytest.mark.parametrize("case", DATA["t_to_sigma"], ids=lambda c: str(c["t"]))
def test_t_to_sigma(case):
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    assert wrap.t_to_sigma(torch.tensor(case["t"])).item() == case["sigma"]


def test_get_sigmas_none_is_all_model_sigmas_descending():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    sigmas = wrap.get_sigmas()
    assert exact_list(sigmas) == [*SCHEDULE["sigmas_float32"][::-1], 0.0]


def model_wrap_for(case: dict, opts: dict):
    alphas_cumprod, _ = sd_schedulers.apply_alpha_schedule_override(ALPHAS_CUMPROD, opts)
    model = FakeModel(alphas_cumprod)
    if case["group"] == "lcm_model" or case.get("sampler") == "LCM":
        return LCMCompVisDenoiser(model)
    return external.CompVisDenoiser(model, quantize=opts.get("enable_quantization", False))


@pytest.mark.parametrize("case", DATA["cases"], ids=case_id)
def test_sigma_cases(case):
    """Every recorded case: exact float32 sigmas and the infotext fields (with their order)."""
    opts = dict(case["opts"])
    if case["group"] == "downcast_alphas_cumprod_fp16":
        opts["use_downcasted_alpha_bar"] = True
    if case["group"] == "zero_terminal_snr":
        opts["sd_noise_schedule"] = "Zero Terminal SNR"

    if "sampler" in case:
        sampler_options = sd_samplers.find_sampler_config(case["sampler"]).options
        assert bool(sampler_options.get("discard_next_to_last_sigma")) == case["discard_next_to_last_sigma"]
    else:
        sampler_options = {"discard_next_to_last_sigma": case["discard_next_to_last_sigma"]}

    result = sd_schedulers.build_sigmas(
        case["steps"],
        model_wrap_for(case, opts),
        scheduler=case["scheduler"],
        sampler_options=sampler_options,
        opts=opts,
        is_sdxl=case["group"] == "align_your_steps_sdxl",
    )
    assert result.sigmas.dtype == torch.float32
    assert exact_list(result.sigmas) == case["sigmas"]
    assert list(result.extra_generation_params.items()) == list(case["extra_generation_params"].items())


class AttributeOptions:
    rho = 5.0


def test_options_may_be_an_object_with_attributes():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    case = next(c for c in DATA["cases"] if c["group"] == "custom_rho" and c["opts"] == {"rho": 5.0})
    result = sd_schedulers.build_sigmas(case["steps"], wrap, scheduler="karras", opts=AttributeOptions())
    assert exact_list(result.sigmas) == case["sigmas"]
    assert result.extra_generation_params == {"Schedule type": "Karras", "Schedule rho": 5.0}


def test_beta_schedule_uses_its_options():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    result = sd_schedulers.build_sigmas(6, wrap, scheduler="Beta", opts={"beta_dist_alpha": 0.5, "beta_dist_beta": 0.7})
    smin, smax = SCHEDULE["sigma_min"], SCHEDULE["sigma_max"]
    expected = [smin + stats.beta.ppf(u, 0.5, 0.7) * (smax - smin) for u in 1 - np.linspace(0, 1, 6)]
    assert result.sigmas[:-1].tolist() == pytest.approx(expected, rel=1e-6)
    assert result.extra_generation_params == {
        "Schedule type": "Beta",
        "Beta schedule alpha": 0.5,
        "Beta schedule beta": 0.7,
    }


def test_hires_pass_writes_hires_schedule_type_only_when_it_differs():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    same = sd_schedulers.build_sigmas(5, wrap, scheduler="karras", is_hr_pass=True, first_pass_schedule_type="Karras")
    assert same.extra_generation_params == {}
    other = sd_schedulers.build_sigmas(
        5, wrap, scheduler="exponential", is_hr_pass=True, first_pass_schedule_type="Karras"
    )
    assert other.extra_generation_params == {"Hires schedule type": "Exponential"}


def test_noise_scheduler_override_and_discard():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    requested = []

    def override(n: int) -> torch.Tensor:
        requested.append(n)
        return torch.arange(n, 0, -1, dtype=torch.float32)

    result = sd_schedulers.build_sigmas(
        4,
        wrap,
        scheduler="karras",
        sampler_options={"discard_next_to_last_sigma": True},
        noise_scheduler_override=override,
    )
    assert requested == [5]
    assert result.sigmas.tolist() == [5.0, 4.0, 3.0, 1.0]
    assert result.extra_generation_params == {}


def test_unknown_schedule_type_falls_back_to_uniform():
    wrap = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    result = sd_schedulers.build_sigmas(7, wrap, scheduler="no such schedule")
    assert torch.equal(result.sigmas, wrap.get_sigmas(7))
    assert result.extra_generation_params == {}


def test_alpha_overrides():
    overrides = DATA["alpha_overrides"]

    downcast, extra = sd_schedulers.apply_alpha_schedule_override(ALPHAS_CUMPROD, {"use_downcasted_alpha_bar": True})
    assert extra == {"Downcast alphas_cumprod": True}
    wrap = external.CompVisDenoiser(FakeModel(downcast))
    assert str(wrap.sigmas.dtype) == "torch." + overrides["downcast_fp16"]["sigmas_dtype"]
    assert wrap.sigma_min.item() == overrides["downcast_fp16"]["sigma_min"]
    assert wrap.sigma_max.item() == overrides["downcast_fp16"]["sigma_max"]

    ztsnr = overrides["zero_terminal_snr"]
    rescaled, extra = sd_schedulers.apply_alpha_schedule_override(
        ALPHAS_CUMPROD, {"sd_noise_schedule": "Zero Terminal SNR"}
    )
    assert extra == {"Noise Schedule": "Zero Terminal SNR"}
    assert rescaled.dtype == torch.float32
    assert rescaled[-1].item() == ztsnr["alphas_cumprod_last"]
    assert exact_list(rescaled[SCHEDULE["sample_indices"]]) == ztsnr["alphas_cumprod_at_sample_indices"]
    wrap = external.CompVisDenoiser(FakeModel(rescaled))
    assert wrap.sigma_min.item() == ztsnr["sigma_min"]
    assert wrap.sigma_max.item() == ztsnr["sigma_max"]

    untouched, extra = sd_schedulers.apply_alpha_schedule_override(ALPHAS_CUMPROD, {})
    assert untouched is ALPHAS_CUMPROD and extra == {}


def test_zero_terminal_snr_keeps_first_and_zeroes_last_snr():
    rescaled = sd_schedulers.rescale_zero_terminal_snr_abar(ALPHAS_CUMPROD.double())
    assert rescaled[0].item() == pytest.approx(ALPHAS_CUMPROD[0].item(), rel=1e-12)
    assert rescaled[-1].item() == sd_schedulers.ZERO_TERMINAL_SNR_LAST_ALPHA_BAR
    # Without the floor the last sqrt(ᾱ) would be exactly 0; the one before stays positive and decreasing.
    assert torch.all(rescaled[1:-1] < rescaled[:-2])


def test_lcm_sub_schedule():
    lcm = DATA["lcm_model"]
    wrap = LCMCompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    assert len(wrap.sigmas) == lcm["num_sigmas"]
    assert wrap.sigma_min.item() == lcm["sigma_min"]
    assert wrap.sigma_max.item() == lcm["sigma_max"]
    # Entry k is DDPM timestep 20k + 19.
    full = external.CompVisDenoiser(FakeModel(ALPHAS_CUMPROD))
    assert torch.equal(wrap.sigmas, full.sigmas[19::20])
    assert wrap.sigma_to_t(wrap.sigma_max).item() == 999
    assert wrap.sigma_to_t(wrap.sigma_min).item() == 19
    assert wrap.t_to_sigma(torch.tensor(39.0)).item() == wrap.sigmas[1].item()


def test_scheduler_table():
    assert [s.name for s in sd_schedulers.schedulers] == [
        "automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "kl_optimal",
        "align_your_steps", "simple", "normal", "ddim", "beta",
    ]  # fmt: skip
    assert [s.label for s in sd_schedulers.schedulers] == [
        "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
        "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
    ]  # fmt: skip
    by_name = {s.name: s for s in sd_schedulers.schedulers}
    assert by_name["karras"].default_rho == 7.0
    assert by_name["polyexponential"].default_rho == 1.0
    assert by_name["sgm_uniform"].aliases == ["SGMUniform"]
    assert {s.name for s in sd_schedulers.schedulers if s.need_inner_model} == {
        "uniform", "sgm_uniform", "simple", "normal", "ddim", "beta"
    }  # fmt: skip
    for s in sd_schedulers.schedulers:
        assert sd_schedulers.schedulers_map[s.name] is s
        assert sd_schedulers.schedulers_map[s.label] is s


def test_karras_matches_formula_in_float64():
    sigmas = sampling.get_sigmas_karras(12, 0.03, 14.6, rho=7.0)
    ramp = np.linspace(0, 1, 12)
    expected = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    assert sigmas[-1].item() == 0.0
    assert sigmas[:-1].tolist() == pytest.approx(expected.tolist(), rel=2e-6)


def test_vp_schedule_formula():
    sigmas = sampling.get_sigmas_vp(5)
    t = np.linspace(1, 1e-3, 5)
    expected = np.sqrt(np.exp(19.9 * t**2 / 2 + 0.1 * t) - 1)
    assert sigmas[-1].item() == 0.0
    # float32 exp(x) - 1 loses digits for the smallest sigma; an absolute bound covers it.
    assert sigmas[:-1].tolist() == pytest.approx(expected.tolist(), rel=2e-6, abs=1e-5)


def test_align_your_steps_interpolates_in_log_space():
    sigmas = sd_schedulers.get_align_your_steps_sigmas(21, 0.0, 0.0, "cpu")
    table = sd_schedulers.AYS_SD15_SIGMAS
    # 21 points on a 11-point table: every other one is a table entry, the others geometric means.
    assert sigmas[:-1:2].tolist() == pytest.approx(table, rel=1e-6)
    assert sigmas[1].item() == pytest.approx(math.sqrt(table[0] * table[1]), rel=1e-6)
