"""k-diffusion samplers (and Restart, LCM) over the σ-parameterised model wrapper."""

from __future__ import annotations

from typing import Any

import torch

from modules import prompt_parser, script_callbacks, sd_samplers_common, sd_schedulers
from modules.k_diffusion.external import CompVisDenoiser, CompVisVDenoiser
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.shared import opts

# The churn/noise parameters A1111 passes to each k-diffusion function (others get the function's defaults, e.g.
# Euler a always runs with s_noise 1). Extensions add entries for their own functions.
sampler_extra_params: dict[str, list[str]] = {
    "sample_euler": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_heun": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_2": ["s_churn", "s_tmin", "s_tmax", "s_noise"],
    "sample_dpm_fast": ["s_noise"],
    "sample_dpm_2_ancestral": ["s_noise"],
    "sample_dpmpp_2s_ancestral": ["s_noise"],
    "sample_dpmpp_sde": ["s_noise"],
    "sample_dpmpp_2m_sde": ["s_noise"],
    "sample_dpmpp_3m_sde": ["s_noise"],
}

# Functions whose step-size control measures the error over the whole batch: a batch would take other steps than
# each image alone. They run image by image, so that every image of a batch is the image its seed gives alone
# (A1111 runs the batch together, and its batch images cannot be reproduced from their infotexts).
PER_IMAGE_FUNCTIONS = {"sample_dpm_adaptive"}


def image_conditioning_slice(extra_args: dict[str, Any], i: int) -> dict[str, Any]:
    """The CFG denoiser's arguments for image `i` of the batch alone."""
    cond = extra_args["cond"]
    return {
        **extra_args,
        "cond": prompt_parser.MulticondLearnedConditioning(shape=(1,), batch=cond.batch[i:i + 1]),
        "uncond": extra_args["uncond"][i:i + 1],
        "image_cond": extra_args["image_cond"][i:i + 1],
    }


def make_model_wrap(sd_model: Any, denoiser: str = "compvis") -> Any:
    """σ-space view of the model: eps- or v-prediction from its parameterization; the LCM sub-schedule for LCM."""
    if denoiser == "lcm":
        from modules.sd_samplers_lcm import LCMCompVisDenoiser

        return LCMCompVisDenoiser(sd_model)
    cls = CompVisVDenoiser if sd_model.parameterization == "v" else CompVisDenoiser
    return cls(sd_model, quantize=opts.enable_quantization)


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname: Any, sd_model: Any, denoiser: str = "compvis"):
        super().__init__(funcname)
        self.extra_params = sampler_extra_params.get(self.funcname, [])
        self.model_wrap = make_model_wrap(sd_model, denoiser)
        self.model_wrap_cfg = CFGDenoiser(self, self.model_wrap)

    def get_sigmas(self, p: Any, steps: int) -> torch.Tensor:
        first_pass_type = p.extra_generation_params.get("Schedule type") if p.is_hr_pass else None
        scheduler = (getattr(p, "hr_scheduler", None) or p.scheduler) if p.is_hr_pass else p.scheduler
        schedule = sd_schedulers.build_sigmas(
            steps, self.model_wrap, scheduler=scheduler, sampler_options=self.options, opts=opts,
            is_sdxl=getattr(p.sd_model, "is_sdxl", False), is_hr_pass=p.is_hr_pass,
            first_pass_schedule_type=first_pass_type, noise_scheduler_override=p.sampler_noise_scheduler_override,
        )
        p.extra_generation_params.update(schedule.extra_generation_params)
        return schedule.sigmas

    def sampler_kwargs(self, p: Any, x: torch.Tensor, sigmas: torch.Tensor, steps: int) -> dict[str, Any]:
        kwargs = self.initialize(p)
        params = self.function_parameters()
        if getattr(self.model_wrap, "quantize", False):
            p.extra_generation_params["Enable quantization"] = True
        if "n" in params:
            kwargs["n"] = steps
        if "sigma_min" in params:
            kwargs["sigma_min"] = self.model_wrap.sigmas[0].item()
            kwargs["sigma_max"] = self.model_wrap.sigmas[-1].item()
        if "sigmas" in params:
            kwargs["sigmas"] = sigmas
        if "noise_sampler" in params:
            if self.options.get("brownian_noise", False):
                kwargs["noise_sampler"] = self.brownian_noise_sampler(x, sigmas, p)
            else:
                kwargs["noise_sampler"] = self.image_noise_sampler(p)
        if self.options.get("solver_type") == "heun":
            kwargs["solver_type"] = "heun"
        return kwargs

    def run(self, p: Any, x: torch.Tensor, sigmas: torch.Tensor, steps: int, conditioning: Any,
            unconditional_conditioning: Any, image_conditioning: Any,
            kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        kwargs = self.sampler_kwargs(p, x, sigmas, steps) if kwargs is None else kwargs
        return self.run_function(p, x, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs)

    def call_function(self, p: Any, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        # DPM adaptive's step-size control measures the error over the whole batch: run it image by image so
        # every image is the one its seed gives alone.
        if self.funcname in PER_IMAGE_FUNCTIONS and x.shape[0] > 1:
            return self.sample_each_image(p, x, kwargs)
        return super().call_function(p, x, kwargs)

    def sample_each_image(self, p: Any, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
        """Run the function once per image, each with its own conditioning and noise generator. An interrupt
        ends the batch with the images so far: the finished ones and the current one's latest prediction."""
        samples = []
        for i in range(x.shape[0]):
            image_kwargs = dict(kwargs)
            if "noise_sampler" in kwargs:
                image_kwargs["noise_sampler"] = lambda sigma, sigma_next, i=i: p.rng.next_for_image(i)
            self.model_wrap_cfg.step = 0
            self.last_latent = x[i:i + 1]
            try:
                samples.append(self.func(
                    self.model_wrap_cfg, x[i:i + 1], extra_args=image_conditioning_slice(self.sampler_extra_args, i),
                    disable=False, callback=self.callback_state, **image_kwargs))
            except sd_samplers_common.InterruptedException:
                samples.append(self.last_latent)
                break
        return torch.cat(samples)

    def sample(self, p: Any, x: torch.Tensor, conditioning: Any, unconditional_conditioning: Any,
               steps: int | None = None, image_conditioning: Any = None) -> torch.Tensor:
        """txt2img: start from noise scaled to the first sigma."""
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        if opts.sgm_noise_multiplier:
            p.extra_generation_params["SGM noise multiplier"] = True
            x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        else:
            x = x * sigmas[0]
        return self.run(p, x, sigmas, steps, conditioning, unconditional_conditioning, image_conditioning)

    def sample_img2img(self, p: Any, x: torch.Tensor, noise: torch.Tensor, conditioning: Any,
                       unconditional_conditioning: Any, steps: int | None = None,
                       image_conditioning: Any = None) -> torch.Tensor:
        """img2img / hires: noise the latent `x` to the sigma where the last t_enc + 1 steps of the schedule begin,
        then sample from there (a1111-spec §5.3)."""
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        if steps == 0:  # denoising strength 0 with an explicit step count: nothing to do
            return x
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]
        xi = x + noise * sigma_sched[0]
        xi = apply_extra_noise(p, x, xi, noise, 1.0)

        # The Brownian tree spans the whole schedule (as A1111), the rest only the part that runs.
        kwargs = self.sampler_kwargs(p, x, sigmas, steps)
        params = self.function_parameters()
        if "sigma_min" in params:
            kwargs["sigma_min"] = sigma_sched[-2].item()  # the last sigma is 0, which DPM fast/adaptive refuse
            kwargs["sigma_max"] = sigma_sched[0].item()
        if "n" in params:
            kwargs["n"] = len(sigma_sched) - 1
        if "sigmas" in params:
            kwargs["sigmas"] = sigma_sched
        self.model_wrap_cfg.init_latent = x
        return self.run(p, xi, sigma_sched, t_enc + 1, conditioning, unconditional_conditioning, image_conditioning,
                        kwargs=kwargs)


def apply_extra_noise(p: Any, x: torch.Tensor, xi: torch.Tensor, noise: torch.Tensor, scale: Any) -> torch.Tensor:
    """Setting `img2img_extra_noise`: add that much more of the noise (times `scale`) to the noised latent `xi`;
    `on_extra_noise` callbacks may replace the noise first."""
    amount = opts.img2img_extra_noise
    if amount <= 0:
        return xi
    p.extra_generation_params["Extra noise"] = amount
    params = script_callbacks.ExtraNoiseParams(noise, x, xi)
    script_callbacks.extra_noise_callback(params)
    return xi + params.noise * amount * scale
