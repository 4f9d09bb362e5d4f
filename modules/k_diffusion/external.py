"""Denoiser wrappers for discrete-time (DDPM-trained) models, with k-diffusion's names (`k_diffusion.external`).

A model trained on 1000 discrete timesteps with cumulative alphas ᾱ_t is seen as a denoiser over continuous
noise levels σ = sqrt((1 - ᾱ) / ᾱ): σ maps to a fractional timestep by interpolating log σ between neighbouring
entries, and back. All schedule arithmetic happens in the dtype of `alphas_cumprod` (float32 for real models,
float16 with A1111's "Downcast alphas_cumprod"), which is what makes sigma lists match A1111 bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

from . import sampling, utils


class DiscreteSchedule(torch.nn.Module):
    """A mapping between continuous noise levels (sigmas) and a list of discrete ones (ascending)."""

    def __init__(self, sigmas: torch.Tensor, quantize: bool | None):
        super().__init__()
        self.register_buffer("sigmas", sigmas)
        self.register_buffer("log_sigmas", sigmas.log())
        self.quantize = quantize

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        """`n` sigmas evenly spaced in timestep from the last to 0, plus a final 0 (all of them if n is None)."""
        if n is None:
            return sampling.append_zero(self.sigmas.flip(0))
        t_max = len(self.sigmas) - 1
        t = torch.linspace(t_max, 0, n, device=self.sigmas.device)
        return sampling.append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: torch.Tensor, quantize: bool | None = None) -> torch.Tensor:
        """Fractional timestep of `sigma` (nearest integer timestep when quantizing)."""
        quantize = self.quantize if quantize is None else quantize
        log_sigma = sigma.log()
        dists = log_sigma - self.log_sigmas[:, None]
        if quantize:
            return dists.abs().argmin(dim=0).view(sigma.shape)
        # Last entry with log_sigmas[k] <= log_sigma (0 if none), kept one below the end so k + 1 exists.
        low_idx = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=self.log_sigmas.shape[0] - 2)
        high_idx = low_idx + 1
        low, high = self.log_sigmas[low_idx], self.log_sigmas[high_idx]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        t = (1 - w) * low_idx + w * high_idx
        return t.view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Sigma at fractional timestep `t`, interpolating log sigma linearly."""
        t = t.float()
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low_idx] + w * self.log_sigmas[high_idx]
        return log_sigma.exp()


class DiscreteEpsDDPMDenoiser(DiscreteSchedule):
    """Denoiser view of a discrete-time model that predicts the noise eps: D(x, σ) = x - σ·eps(x·c_in, t(σ))."""

    def __init__(self, model: Any, alphas_cumprod: torch.Tensor, quantize: bool | None):
        super().__init__(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, quantize)
        self.inner_model = model
        self.sigma_data = 1.0

    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_out = -sigma
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_out, c_in

    def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model(*args, **kwargs)

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_out, c_in = [utils.append_dims(x, input.ndim) for x in self.get_scalings(sigma)]
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return input + eps * c_out


class CompVisDenoiser(DiscreteEpsDDPMDenoiser):
    """Eps-prediction model with `alphas_cumprod` and `apply_model(x, t, cond)` (LDM / A1111 model interface)."""

    def __init__(self, model: Any, quantize: bool = False, device: Any = "cpu"):
        super().__init__(model, model.alphas_cumprod, quantize=quantize)

    def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model.apply_model(*args, **kwargs)


class DiscreteVDDPMDenoiser(DiscreteSchedule):
    """Denoiser view of a v-prediction model: D(x, σ) = c_skip·x + c_out·v(x·c_in, t(σ))."""

    def __init__(self, model: Any, alphas_cumprod: torch.Tensor, quantize: bool | None):
        super().__init__(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5, quantize)
        self.inner_model = model
        self.sigma_data = 1.0

    def get_scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c_skip = self.sigma_data**2 / (sigma**2 + self.sigma_data**2)
        c_out = -sigma * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5
        c_in = 1 / (sigma**2 + self.sigma_data**2) ** 0.5
        return c_skip, c_out, c_in

    def get_v(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model(*args, **kwargs)

    def forward(self, input: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        c_skip, c_out, c_in = [utils.append_dims(x, input.ndim) for x in self.get_scalings(sigma)]
        return self.get_v(input * c_in, self.sigma_to_t(sigma), **kwargs) * c_out + input * c_skip


class CompVisVDenoiser(DiscreteVDDPMDenoiser):
    """V-prediction model with `alphas_cumprod` and `apply_model(x, t, cond)` (SD 2.x 768-v and similar)."""

    def __init__(self, model: Any, quantize: bool = False, device: Any = "cpu"):
        super().__init__(model, model.alphas_cumprod, quantize=quantize)

    def get_v(self, x: torch.Tensor, t: torch.Tensor, cond: Any, **kwargs: Any) -> torch.Tensor:
        return self.inner_model.apply_model(x, t, cond, **kwargs)
