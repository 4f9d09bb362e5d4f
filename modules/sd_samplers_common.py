"""What every sampler shares: progress and interrupt handling, noise sources, and the per-job setup.

A sampler object (KDiffusionSampler, CompVisSampler) runs one pure sampling function over the CFG denoiser;
this base class feeds it the job's per-image noise, counts progress the way A1111 does, and stops it cleanly
on interrupt or skip (the latents reached so far are returned).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from modules import rng, shared
from modules.k_diffusion import sampling as k_sampling
from modules.shared import opts, state

log = logging.getLogger(__name__)


class InterruptedException(BaseException):
    """Raised inside the sampling loop to stop it (interrupt, skip); caught by `launch_sampling`."""


# Infotext keys and neutral values of the sampler parameters A1111 writes when they differ.
SAMPLER_PARAM_INFOTEXT = {
    "s_churn": ("Sigma churn", 0.0),
    "s_tmin": ("Sigma tmin", 0.0),
    "s_tmax": ("Sigma tmax", float("inf")),
    "s_noise": ("Sigma noise", 1.0),
}


def setup_img2img_steps(p: Any, steps: int | None = None) -> tuple[int, int]:
    """(schedule length, t_enc) of an img2img pass: the schedule has `steps` steps of which the last `t_enc + 1`
    run, t_enc = int(min(denoising_strength, 0.999) · steps). With `img2img_fix_steps`, or when a pass asks for
    an explicit step count (hires fix), the schedule is lengthened to int(steps / denoise) so that exactly
    `steps` steps run (t_enc = steps − 1); denoising strength 0 then gives an empty schedule."""
    if opts.img2img_fix_steps or steps is not None:
        requested_steps = steps or p.steps
        denoise = p.denoising_strength
        steps = int(requested_steps / min(denoise, 0.999)) if denoise > 0 else 0
        t_enc = requested_steps - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


def store_latent(decoded: torch.Tensor) -> None:
    """Keep the latest predicted x0 for live previews (decoded on request, off the sampling path)."""
    state.current_latent = decoded


def setting_or_field(p: Any, name: str) -> float:
    """The churn/noise parameter `name` (s_churn, s_tmin, s_tmax, s_noise) a sampler runs with, as A1111 picks it
    while sampling: the setting of that name when it is not neutral (so a per-job override applies), else the
    processing field. Unlike A1111, a field value is then written to the infotext like a setting's."""
    label, neutral = SAMPLER_PARAM_INFOTEXT[name]
    value = getattr(opts, name, neutral)
    if name == "s_tmax":
        value = value or neutral  # the setting's 0 means infinity
    return value if value != neutral else getattr(p, name)


# Processing fields read from the setting of the same name when the processing object is built, which A1111 then
# uses as they are: a per-job override of the setting (override_settings, a pasted "NGMS") must reach the field.
SETTING_BACKED_FIELDS = ("s_min_uncond",)


def apply_setting_overrides(p: Any) -> None:
    """After `p.override_settings` were applied: fields backed by an overridden setting take its value."""
    for name in SETTING_BACKED_FIELDS:
        if name in p.override_settings:
            setattr(p, name, getattr(opts, name))


class Sampler:
    """Base of the sampler classes: set-up from a processing object, progress, interrupts, noise."""

    eta_option_field = "eta_ancestral"
    eta_infotext_field = "Eta"
    eta_default = 1.0
    # The churn/noise parameters this sampler's function is given (A1111 passes them only to some functions).
    extra_params: list[str] = []

    def __init__(self, funcname: Any):
        self.funcname = funcname if isinstance(funcname, str) else funcname.__name__
        self.func = getattr(k_sampling, funcname) if isinstance(funcname, str) else funcname
        self.config: Any = None
        self.model_wrap: Any = None
        self.model_wrap_cfg: Any = None
        self.sampler_extra_args: dict[str, Any] = {}
        self.last_latent: torch.Tensor | None = None
        self.stop_at: int | None = None
        self.eta: float | None = None
        self.s_min_uncond = 0.0
        self.p: Any = None

    @property
    def options(self) -> dict[str, Any]:
        return self.config.options if self.config is not None else {}

    def callback_state(self, d: dict[str, Any]) -> None:
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        state.sampling_step = step
        if shared.total_tqdm is not None:
            shared.total_tqdm.update()

    def launch_sampling(self, steps: int, func) -> torch.Tensor:
        """Run `func` for `steps` steps; progress counts steps, the denoiser's `total_steps` model calls
        (twice the steps for second-order samplers, which prompt schedules and Skip Early CFG are measured in)."""
        cfg = self.model_wrap_cfg
        cfg.steps = steps
        cfg.total_steps = self.config.total_steps(steps) if self.config is not None else steps
        state.sampling_steps = steps
        state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def run_function(self, p: Any, x: torch.Tensor, steps: int, conditioning: Any, unconditional_conditioning: Any,
                     image_conditioning: Any, kwargs: dict[str, Any]) -> torch.Tensor:
        """Run the sampling function over the CFG denoiser from `x` (progress counted over `steps`)."""
        self.last_latent = x
        self.sampler_extra_args = {
            "cond": conditioning,
            "image_cond": image_conditioning,
            "uncond": unconditional_conditioning,
            "cond_scale": p.cfg_scale,
            "s_min_uncond": self.s_min_uncond,
        }
        return self.launch_sampling(steps, lambda: self.call_function(p, x, kwargs))

    def call_function(self, p: Any, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        return self.func(self.model_wrap_cfg, x, extra_args=self.sampler_extra_args, disable=False,
                         callback=self.callback_state, **kwargs)

    def function_parameters(self) -> set[str]:
        return set(inspect.signature(self.func).parameters)

    def initialize(self, p: Any) -> dict[str, Any]:
        """Per-job state, and the keyword arguments (eta, churn...) the sampling function accepts; non-default
        values are written to the infotext with A1111's keys."""
        self.p = p
        cfg = self.model_wrap_cfg
        cfg.p = p
        cfg.mask = getattr(p, "mask", None)
        cfg.nmask = getattr(p, "nmask", None)
        cfg.init_latent = getattr(p, "init_latent", None)
        cfg.init_noise = None
        cfg.step = 0
        cfg.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.eta = p.eta if p.eta is not None else getattr(opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)

        params = self.function_parameters()
        kwargs: dict[str, Any] = {}
        for name in self.extra_params:
            if name in params and hasattr(p, name):
                kwargs[name] = setting_or_field(p, name)
                setattr(p, name, kwargs[name])
                label, neutral = SAMPLER_PARAM_INFOTEXT[name]
                if kwargs[name] != neutral:
                    p.extra_generation_params[label] = kwargs[name]
        if "eta" in params:
            if self.eta != self.eta_default:
                p.extra_generation_params[self.eta_infotext_field] = self.eta
            kwargs["eta"] = self.eta
        return kwargs

    def image_noise_sampler(self, p: Any):
        """Per-step noise from the job's per-image generators (each image as if generated alone)."""
        return lambda sigma, sigma_next: p.rng.next()

    def brownian_noise_sampler(self, x: torch.Tensor, sigmas: torch.Tensor, p: Any):
        """Brownian-tree noise seeded with this batch's seeds, drawn from the configured RNG source."""
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        if opts.no_dpmpp_sde_batch_determinism:
            return k_sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max)
        seeds = p.all_seeds[p.iteration * p.batch_size:(p.iteration + 1) * p.batch_size]
        settings = p.rng.settings if p.rng is not None else None
        return k_sampling.BrownianTreeNoiseSampler(
            x, sigma_min, sigma_max, seed=seeds, randn=lambda seed, size: rng.randn_local(seed, size, settings=settings)
        )
