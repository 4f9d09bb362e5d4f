"""Schedule types ("Schedule type" in the UI and infotext) and the sigma list a k-diffusion sampler runs on.

`schedulers` is A1111's table (API `/sdapi/v1/schedulers`); `build_sigmas` is the one place that turns
(steps, sampler, schedule type, options, model) into the exact float32 sigma list A1111 builds, together with the
infotext fields that step adds. Options are passed in explicitly (a mapping or an object with attributes), so this
module reads no global state.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import stats

from modules.k_diffusion import sampling

log = logging.getLogger(__name__)

# Align Your Steps (NVIDIA, 2024) 10-step sigma tables, highest first.
AYS_SD15_SIGMAS = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL_SIGMAS = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]

# The last ᾱ A1111 uses for the "Zero Terminal SNR" schedule (a true 0 would make sigma infinite).
ZERO_TERMINAL_SNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def _float_tensor(values: list[Any], device: Any) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)


def uniform(n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any) -> torch.Tensor:
    """The model's own discrete schedule: n timesteps evenly spaced from the last to 0 (log-sigma interpolation)."""
    return inner_model.get_sigmas(n).to(device)


def sgm_uniform(n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any) -> torch.Tensor:
    """Timesteps evenly spaced from t(sigma_max) towards t(sigma_min), endpoint excluded (SGM's "trailing")."""
    return normal_scheduler(n, sigma_min, sigma_max, inner_model, device, sgm=True)


def kl_optimal(n: int, sigma_min: float, sigma_max: float, device: Any) -> torch.Tensor:
    """KL-optimal schedule (Sabour et al. 2024): uniform in arctan(sigma). n + 1 values, no appended 0."""
    alpha_min = torch.arctan(torch.tensor(sigma_min, device=device))
    alpha_max = torch.arctan(torch.tensor(sigma_max, device=device))
    step_indices = torch.arange(n + 1, device=device)
    return torch.tan(step_indices / n * alpha_min + (1.0 - step_indices / n) * alpha_max)


def loglinear_interp(t_steps: list[float], num_steps: int) -> np.ndarray:
    """Resample a decreasing sigma list to `num_steps` values, interpolating linearly in log sigma."""
    xs = np.linspace(0, 1, len(t_steps))
    ys = np.log(t_steps[::-1])
    new_xs = np.linspace(0, 1, num_steps)
    new_ys = np.interp(new_xs, xs, ys)
    return np.exp(new_ys)[::-1].copy()


def get_align_your_steps_sigmas(
    n: int, sigma_min: float, sigma_max: float, device: Any, is_sdxl: bool = False
) -> torch.Tensor:
    """Align Your Steps: NVIDIA's optimised 10-step table for the model family, log-linearly resampled to n."""
    table = list(AYS_SDXL_SIGMAS if is_sdxl else AYS_SD15_SIGMAS)
    sigmas = list(loglinear_interp(table, n)) if n != len(table) else table
    return _float_tensor([*sigmas, 0.0], device)


def simple_scheduler(n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any) -> torch.Tensor:
    """Every (len/n)-th model sigma, counting down from the highest."""
    ss = len(inner_model.sigmas) / n
    sigs = [inner_model.sigmas[-(1 + int(x * ss))] for x in range(n)]
    return _float_tensor([*sigs, 0.0], device)


def normal_scheduler(
    n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any, sgm: bool = False
) -> torch.Tensor:
    """Timesteps evenly spaced between t(sigma_max) and t(sigma_min) (endpoint excluded with `sgm`)."""
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    timesteps = torch.linspace(start, end, n + 1)[:-1] if sgm else torch.linspace(start, end, n)
    sigs = [inner_model.t_to_sigma(ts) for ts in timesteps]
    return _float_tensor([*sigs, 0.0], device)


def ddim_scheduler(n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any) -> torch.Tensor:
    """Model sigmas at indices 1, 1 + k, 1 + 2k, ... (k = len // n), highest first; may give more than n."""
    ss = max(len(inner_model.sigmas) // n, 1)
    sigs = [inner_model.sigmas[x] for x in range(1, len(inner_model.sigmas), ss)]
    return _float_tensor([*sigs[::-1], 0.0], device)


def beta_scheduler(
    n: int, sigma_min: float, sigma_max: float, inner_model: Any, device: Any, alpha: float = 0.6, beta: float = 0.6
) -> torch.Tensor:
    """Beta sampling (Lee et al. 2024): Beta(alpha, beta) quantiles mapped linearly onto [sigma_min, sigma_max]."""
    quantiles = [stats.beta.ppf(u, alpha, beta) for u in 1 - np.linspace(0, 1, n)]
    return _float_tensor([*(sigma_min + q * (sigma_max - sigma_min) for q in quantiles), 0.0], device)


@dataclasses.dataclass
class Scheduler:
    """One schedule type. `function(n=..., sigma_min=..., sigma_max=..., device=...)` returns the sigmas."""

    name: str
    label: str
    function: Callable[..., torch.Tensor] | None
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list[str] | None = None


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform, need_inner_model=True),
    Scheduler("karras", "Karras", sampling.get_sigmas_karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", sampling.get_sigmas_exponential),
    Scheduler("polyexponential", "Polyexponential", sampling.get_sigmas_polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", sgm_uniform, need_inner_model=True, aliases=["SGMUniform"]),
    Scheduler("kl_optimal", "KL Optimal", kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", get_align_your_steps_sigmas),
    Scheduler("simple", "Simple", simple_scheduler, need_inner_model=True),
    Scheduler("normal", "Normal", normal_scheduler, need_inner_model=True),
    Scheduler("ddim", "DDIM", ddim_scheduler, need_inner_model=True),
    Scheduler("beta", "Beta", beta_scheduler, need_inner_model=True),
]

schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}


def _option(opts: Any, key: str, default: Any) -> Any:
    """Read an option from a mapping or an object with attributes (None means all defaults)."""
    if opts is None:
        return default
    if isinstance(opts, Mapping):
        return opts.get(key, default)
    return getattr(opts, key, default)


class SigmaSchedule(NamedTuple):
    sigmas: torch.Tensor
    extra_generation_params: dict[str, Any]


def build_sigmas(
    steps: int,
    model_wrap: Any,
    *,
    scheduler: str | None = "Automatic",
    sampler_options: Mapping[str, Any] | None = None,
    opts: Any = None,
    is_sdxl: bool = False,
    is_hr_pass: bool = False,
    first_pass_schedule_type: str | None = None,
    noise_scheduler_override: Callable[[int], torch.Tensor] | None = None,
) -> SigmaSchedule:
    """The sigma list a k-diffusion sampler gets for `steps` steps, as A1111 builds it, and its infotext fields.

    `model_wrap` is the denoiser wrapper (external.CompVisDenoiser or the LCM one): its `sigmas` give the model's
    range and it provides `get_sigmas`/`sigma_to_t`/`t_to_sigma` for the timestep-based schedules.
    `sampler_options` is the sampler's table entry (`scheduler`, `discard_next_to_last_sigma`). Options read:
    always_discard_next_to_last_sigma, use_old_karras_scheduler_sigmas, sigma_min, sigma_max, rho,
    beta_dist_alpha, beta_dist_beta. For a hires pass, pass `is_hr_pass` and the first pass's "Schedule type".
    """
    sampler_options = sampler_options or {}
    extra: dict[str, Any] = {}

    discard = bool(sampler_options.get("discard_next_to_last_sigma", False))
    if _option(opts, "always_discard_next_to_last_sigma", False) and not discard:
        discard = True
        extra["Discard penultimate sigma"] = True
    n = steps + 1 if discard else steps

    scheduler_name = scheduler or "Automatic"
    if scheduler_name == "Automatic":
        scheduler_name = sampler_options.get("scheduler")
    found = schedulers_map.get(scheduler_name) if scheduler_name is not None else None
    if scheduler_name is not None and found is None:
        log.warning("Unknown schedule type %r; using the model's uniform schedule", scheduler_name)

    m_sigma_min, m_sigma_max = model_wrap.sigmas[0].item(), model_wrap.sigmas[-1].item()
    if _option(opts, "use_old_karras_scheduler_sigmas", False):
        sigma_min, sigma_max = 0.1, 10.0
    else:
        sigma_min, sigma_max = m_sigma_min, m_sigma_max

    if noise_scheduler_override is not None:
        sigmas = noise_scheduler_override(n)
    elif found is None or found.function is None:
        sigmas = model_wrap.get_sigmas(n)
    else:
        kwargs: dict[str, Any] = {"sigma_min": sigma_min, "sigma_max": sigma_max}

        if found.label != "Automatic" and not is_hr_pass:
            extra["Schedule type"] = found.label
        elif is_hr_pass and found.label != first_pass_schedule_type:
            extra["Hires schedule type"] = found.label

        opt_sigma_min = _option(opts, "sigma_min", 0.0)
        if opt_sigma_min != 0 and opt_sigma_min != m_sigma_min:
            kwargs["sigma_min"] = opt_sigma_min
            extra["Schedule min sigma"] = opt_sigma_min

        opt_sigma_max = _option(opts, "sigma_max", 0.0)
        if opt_sigma_max != 0 and opt_sigma_max != m_sigma_max:
            kwargs["sigma_max"] = opt_sigma_max
            extra["Schedule max sigma"] = opt_sigma_max

        opt_rho = _option(opts, "rho", 0.0)
        if found.default_rho != -1 and opt_rho != 0 and opt_rho != found.default_rho:
            kwargs["rho"] = opt_rho
            extra["Schedule rho"] = opt_rho

        if found.need_inner_model:
            kwargs["inner_model"] = model_wrap

        alpha, beta = _option(opts, "beta_dist_alpha", 0.6), _option(opts, "beta_dist_beta", 0.6)
        if found.label == "Beta":
            extra["Beta schedule alpha"] = alpha
            extra["Beta schedule beta"] = beta

        # Model- and option-dependent inputs go only to functions that declare them (extensions' own don't).
        accepted = inspect.signature(found.function).parameters
        for key, value in {"is_sdxl": is_sdxl, "alpha": alpha, "beta": beta}.items():
            if key in accepted:
                kwargs[key] = value

        sigmas = found.function(n=n, **kwargs, device="cpu")

    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])

    return SigmaSchedule(sigmas.cpu(), extra)


def rescale_zero_terminal_snr_abar(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Rescale ᾱ so the last timestep has (almost) zero SNR, keeping the first (Lin et al. 2023, Algorithm 1)."""
    alphas_bar_sqrt = alphas_cumprod.sqrt()
    first = alphas_bar_sqrt[0].clone()
    last = alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas_bar[-1] = ZERO_TERMINAL_SNR_LAST_ALPHA_BAR
    return alphas_bar


def apply_alpha_schedule_override(alphas_cumprod: torch.Tensor, opts: Any = None) -> tuple[torch.Tensor, dict]:
    """The ᾱ a generation uses, from the model's original ᾱ and the compatibility options, and its infotext fields.

    `use_downcasted_alpha_bar` casts ᾱ to float16 (old A1111 behaviour: sigmas are then computed in float16);
    `sd_noise_schedule == "Zero Terminal SNR"` rescales it with `rescale_zero_terminal_snr_abar`.
    """
    extra: dict[str, Any] = {}
    if _option(opts, "use_downcasted_alpha_bar", False):
        extra["Downcast alphas_cumprod"] = True
        alphas_cumprod = alphas_cumprod.half()
    noise_schedule = _option(opts, "sd_noise_schedule", "Default")
    if noise_schedule == "Zero Terminal SNR":
        extra["Noise Schedule"] = noise_schedule
        alphas_cumprod = rescale_zero_terminal_snr_abar(alphas_cumprod)
    return alphas_cumprod, extra
