"""Timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC) over the model in ε-prediction, t-parameterised."""

from __future__ import annotations

from typing import Any

import torch

from modules import sd_samplers_common
from modules.sd_samplers_cfg_denoiser import CFGDenoiser
from modules.sd_samplers_kdiffusion import apply_extra_noise
from modules.sd_samplers_timesteps_impl import get_timesteps
from modules.shared import opts

UNIPC_OPTIONS = {"variant": "uni_pc_variant", "skip_type": "uni_pc_skip_type", "order": "uni_pc_order",
                 "lower_order_final": "uni_pc_lower_order_final"}
UNIPC_INFOTEXT = {"uni_pc_variant": ("UniPC variant", "bh1"), "uni_pc_skip_type": ("UniPC skip type", "time_uniform"),
                  "uni_pc_order": ("UniPC order", 3), "uni_pc_lower_order_final": ("UniPC lower order final", True)}


class CompVisTimestepsDenoiser(torch.nn.Module):
    """The model as eps(x, t); v-prediction models are converted (eps = √ᾱ·v + √(1−ᾱ)·x)."""

    def __init__(self, model: Any):
        super().__init__()
        self.inner_model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        out = self.inner_model.apply_model(x, t, **kwargs)
        if self.inner_model.parameterization != "v":
            return out
        ac = self.inner_model.alphas_cumprod[t.long()].to(x)[:, None, None, None]
        return ac.sqrt() * out + (1 - ac).sqrt() * x


class CFGDenoiserTimesteps(CFGDenoiser):
    mask_before_denoising = True

    def initial_latent_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """The init latent noised to timestep `sigma` (√ᾱ·x0 + √(1−ᾱ)·ε) with the noise img2img started from, so
        the kept area follows the same noise level as the area being sampled."""
        if self.init_noise is None:
            return self.init_latent
        ac = self.inner_model.inner_model.alphas_cumprod[sigma.long()].to(self.init_latent)[:, None, None, None]
        return ac.sqrt() * self.init_latent + (1 - ac).sqrt() * self.init_noise.to(self.init_latent)

    def get_pred_x0(self, x_in: torch.Tensor, x_out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        ac = self.inner_model.inner_model.alphas_cumprod[sigma.long()].to(x_in)[:, None, None, None]
        return (x_in - (1 - ac).sqrt() * x_out) / ac.sqrt()


class CompVisSampler(sd_samplers_common.Sampler):
    eta_option_field = "eta_ddim"
    eta_infotext_field = "Eta DDIM"
    eta_default = 0.0

    def __init__(self, funcname: Any, sd_model: Any):
        super().__init__(funcname)
        self.model_wrap = CompVisTimestepsDenoiser(sd_model)
        self.model_wrap_cfg = CFGDenoiserTimesteps(self, self.model_wrap)

    def timesteps(self, steps: int) -> torch.Tensor:
        return get_timesteps(steps, discard_next_to_last_sigma=opts.always_discard_next_to_last_sigma)

    def sampler_kwargs(self, p: Any, x: torch.Tensor, timesteps: torch.Tensor, is_img2img: bool) -> dict[str, Any]:
        kwargs = self.initialize(p)
        params = self.function_parameters()
        kwargs["timesteps"] = timesteps
        if opts.always_discard_next_to_last_sigma:
            p.extra_generation_params["Discard penultimate sigma"] = True
        if "is_img2img" in params:
            kwargs["is_img2img"] = is_img2img
        if "noise_sampler" in params:
            kwargs["noise_sampler"] = self.image_noise_sampler(p)
        if self.funcname == "unipc":
            for arg, key in UNIPC_OPTIONS.items():
                kwargs[arg] = getattr(opts, key)
                label, default = UNIPC_INFOTEXT[key]
                if kwargs[arg] != default:
                    p.extra_generation_params[label] = kwargs[arg]
        return kwargs

    def run(self, p: Any, x: torch.Tensor, timesteps: torch.Tensor, steps: int, conditioning: Any,
            unconditional_conditioning: Any, image_conditioning: Any, is_img2img: bool = False,
            kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        kwargs = self.sampler_kwargs(p, x, timesteps, is_img2img) if kwargs is None else kwargs
        return self.run_function(p, x, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs)

    def sample(self, p: Any, x: torch.Tensor, conditioning: Any, unconditional_conditioning: Any,
               steps: int | None = None, image_conditioning: Any = None) -> torch.Tensor:
        steps = steps or p.steps
        return self.run(p, x, self.timesteps(steps), steps, conditioning, unconditional_conditioning,
                        image_conditioning)

    def sample_img2img(self, p: Any, x: torch.Tensor, noise: torch.Tensor, conditioning: Any,
                       unconditional_conditioning: Any, steps: int | None = None,
                       image_conditioning: Any = None) -> torch.Tensor:
        """img2img / hires: noise `x` to timestep timesteps[t_enc] and run the first t_enc timesteps downwards."""
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        if steps == 0:  # denoising strength 0 with an explicit step count: nothing to do
            return x
        timesteps = self.timesteps(steps)
        alphas_cumprod = self.model_wrap.inner_model.alphas_cumprod
        ac = alphas_cumprod[timesteps[t_enc]].to(x)
        xi = x * ac.sqrt() + noise * (1 - ac).sqrt()
        xi = apply_extra_noise(p, x, xi, noise, ac.sqrt())
        if t_enc == 0:  # no timestep left to run (A1111's samplers return the noised latent, or fail)
            return xi

        kwargs = self.sampler_kwargs(p, x, timesteps[:t_enc], is_img2img=True)
        self.model_wrap_cfg.init_latent = x
        self.model_wrap_cfg.init_noise = noise
        return self.run(p, xi, timesteps[:t_enc], t_enc + 1, conditioning, unconditional_conditioning,
                        image_conditioning, is_img2img=True, kwargs=kwargs)
