"""Latent Consistency Model sampling: the LCM denoiser wrapper and its one-step-per-sigma sampler.

An LCM is distilled on a 50-step sub-schedule of the 1000 DDPM timesteps (19, 39, ..., 999), so its denoiser
wrapper sees only those 50 noise levels: sigma <-> t maps onto that sub-schedule, and the consistency-model
boundary scalings (c_skip, c_out with sigma_data 0.5, timestep scaled by 10) turn the eps prediction into x0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import trange

from modules.k_diffusion import sampling, utils
from modules.k_diffusion.external import DiscreteEpsDDPMDenoiser

LCM_ORIGINAL_TIMESTEPS = 50
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


class LCMCompVisDenoiser(DiscreteEpsDDPMDenoiser):
    """Denoiser over the LCM sub-schedule of a model with `alphas_cumprod` and `apply_model(x, t, cond)`."""

    def __init__(self, model: Any):
        timesteps = len(model.alphas_cumprod)
        self.skip_steps = timesteps // LCM_ORIGINAL_TIMESTEPS
        # Sub-schedule entry k is DDPM timestep skip_steps * (k + 1) - 1, i.e. 19, 39, ..., 999.
        picked = torch.arange(LCM_ORIGINAL_TIMESTEPS, device=model.alphas_cumprod.device) * self.skip_steps
        alphas_cumprod_valid = model.alphas_cumprod[picked + self.skip_steps - 1].to(torch.float32)
        super().__init__(model, alphas_cumprod_valid, quantize=None)

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        """`n` sigmas evenly spaced in (DDPM) timestep between the sub-schedule's ends, plus a final 0."""
        if n is None:
            return sampling.append_zero(self.sigmas.flip(0))
        start = self.sigma_to_t(self.sigma_max)
        end = self.sigma_to_t(self.sigma_min)
        t = torch.linspace(start, end, n, device=self.sigmas.device)
        return sampling.append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        """DDPM timestep of `sigma` (sub-schedule position scaled back to 0..999)."""
        t = super().sigma_to_t(sigma, quantize=quantize)
        return t * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = (t - (self.skip_steps - 1)) / self.skip_steps
        return super().t_to_sigma(t)

    def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model.apply_model(*args, **kwargs)

    def get_scaled_out(self, sigma: torch.Tensor, output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
        """Consistency-model boundary condition: blend the x0 estimate with the input by the scaled timestep."""
        scaled_timestep = utils.append_dims(self.sigma_to_t(sigma), output.ndim) * LCM_TIMESTEP_SCALING
        c_skip = LCM_SIGMA_DATA**2 / (scaled_timestep**2 + LCM_SIGMA_DATA**2)
        c_out = scaled_timestep / (scaled_timestep**2 + LCM_SIGMA_DATA**2) ** 0.5
        return c_out * output + c_skip * input

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_out, c_in = [utils.append_dims(x, input.ndim) for x in self.get_scalings(sigma)]
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return self.get_scaled_out(sigma, input + eps * c_out, input)


@torch.no_grad()
def sample_lcm(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    noise_sampler: sampling.NoiseSampler | None = None,
) -> torch.Tensor:
    """Consistency sampling: jump to the denoised estimate, then re-noise to the next sigma with fresh noise."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = sampling.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
