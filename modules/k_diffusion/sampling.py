"""Noise schedules and samplers with k-diffusion's public names and signatures (`k_diffusion.sampling`).

Written from the papers (Karras et al. 2022; Lu et al. DPM-Solver / DPM-Solver++; Liu et al. PLMS) and the
behaviour A1111 relies on, recorded in the parity data. Every sampler is a pure function of a denoiser
`model(x, sigma_batch, **extra_args) -> denoised`, the latent `x`, the sigma list and a noise source.

Noise: every sampler that draws noise takes `noise_sampler(sigma, sigma_next) -> Tensor` and draws through it in
k-diffusion's order (Euler, Heun and DPM2 draw a churn tensor at the start of every step even when churn is off),
so the app can feed per-image seeded noise. Without one, plain samplers use `torch.randn_like`, SDE samplers a
Brownian tree, as k-diffusion does.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchsde
from tqdm.auto import tqdm, trange

from .utils import append_dims

NoiseSampler = Callable[[Any, Any], torch.Tensor]
Randn = Callable[[int, Sequence[int]], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------------------------------


def append_zero(x: torch.Tensor) -> torch.Tensor:
    """Append a final 0 to a 1-D sigma tensor."""
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: Any = "cpu"
) -> torch.Tensor:
    """Karras et al. (2022) schedule: uniform steps in sigma^(1/rho), plus a final 0."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas).to(device)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device: Any = "cpu") -> torch.Tensor:
    """Uniform steps in log sigma, plus a final 0."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, device=device).exp()
    return append_zero(sigmas)


def get_sigmas_polyexponential(
    n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, device: Any = "cpu"
) -> torch.Tensor:
    """Polynomial in log sigma (rho = 1 is the exponential schedule), plus a final 0."""
    ramp = torch.linspace(1, 0, n, device=device) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return append_zero(sigmas)


def get_sigmas_vp(
    n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3, device: Any = "cpu"
) -> torch.Tensor:
    """Continuous VP (variance preserving) schedule of Song et al. (2021), plus a final 0."""
    t = torch.linspace(1, eps_s, n, device=device)
    sigmas = torch.sqrt(torch.exp(beta_d * t**2 / 2 + beta_min * t) - 1)
    return append_zero(sigmas)


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative dx/dsigma = (x - D(x, sigma)) / sigma."""
    # A 0-dim sigma (the samplers' per-step sigma, kept on the CPU) divides as a scalar: appending dims would make
    # it a CPU tensor that a CUDA `x` cannot be combined with.
    return (x - denoised) / (sigma if sigma.ndim == 0 else append_dims(sigma, x.ndim))


def get_ancestral_step(sigma_from: Any, sigma_to: Any, eta: float = 1.0) -> tuple[Any, Any]:
    """Split a step from sigma_from to sigma_to into a deterministic step to sigma_down and fresh noise sigma_up."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def default_noise_sampler(x: torch.Tensor) -> NoiseSampler:
    """Standard-normal noise shaped like `x` from torch's global generator."""
    return lambda sigma, sigma_next: torch.randn_like(x)


def cpu_randn(seed: int, size: Sequence[int]) -> torch.Tensor:
    """The web UI's Brownian-tree normals: float32 from a fresh CPU generator seeded with `seed`."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(size), generator=generator)


_torchsde_randn_lock = threading.RLock()


@contextlib.contextmanager
def _torchsde_randn(randn: Randn | None) -> Iterator[None]:
    """Make torchsde draw its normals with `randn(seed, size)` for the duration of the block.

    torchsde 0.2.6 draws every normal of a tree through one module-level function; A1111 replaces it globally so
    that trees use the web UI's noise source. Scoping the replacement (under a lock) keeps other torchsde users
    untouched while reproducing the same values.
    """
    if randn is None:
        yield
        return
    from torchsde._brownian import brownian_interval

    def draw(size: Sequence[int], dtype: torch.dtype, device: Any, seed: int) -> torch.Tensor:
        return randn(int(seed), size).to(device=device, dtype=dtype)

    with _torchsde_randn_lock:
        original = brownian_interval._randn
        brownian_interval._randn = draw
        try:
            yield
        finally:
            brownian_interval._randn = original


class BatchedBrownianTree:
    """One torchsde Brownian tree per batch item (seed may be a list with one entry per item), queried together.

    `randn(seed, size)`, if given, replaces torchsde's own normal draws (see `cpu_randn` for the web UI's).
    """

    def __init__(self, x: torch.Tensor, t0: Any, t1: Any, seed: Any = None, randn: Randn | None = None, **kwargs: Any):
        t0, t1, self.sign = self.sort(t0, t1)
        w0 = kwargs.pop("w0", torch.zeros_like(x))
        if seed is None:
            seed = torch.randint(0, 2**63 - 1, []).item()
        try:
            if len(seed) != x.shape[0]:
                raise ValueError(f"got {len(seed)} Brownian tree seeds for a batch of {x.shape[0]}")
            w0 = w0[0]
            self.batched = True
        except TypeError:
            seed = [seed]
            self.batched = False
        self.randn = randn
        with _torchsde_randn(randn):
            self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s, **kwargs) for s in seed]

    @staticmethod
    def sort(a: Any, b: Any) -> tuple[Any, Any, int]:
        return (a, b, 1) if a < b else (b, a, -1)

    def __call__(self, t0: Any, t1: Any) -> torch.Tensor:
        t0, t1, sign = self.sort(t0, t1)
        with _torchsde_randn(self.randn), warnings.catch_warnings():
            # torchsde rounds the tree's ends to its tolerance (1e-6) and warns when a query at the exact
            # schedule end falls just outside; it clamps the query, which is the intended behaviour here.
            warnings.filterwarnings("ignore", message="Should have t[ab]", category=UserWarning)
            w = torch.stack([tree(t0, t1) for tree in self.trees]) * (self.sign * sign)
        return w if self.batched else w[0]


class BrownianTreeNoiseSampler:
    """Noise from a Brownian tree: normalised increments W(t1) - W(t0) / sqrt(|t1 - t0|) between two sigmas.

    The same seed gives the same noise for a sigma interval regardless of the step sizes used around it, which
    is what makes SDE samplers reproducible across batch sizes.
    """

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: Any,
        sigma_max: Any,
        seed: Any = None,
        transform: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        randn: Randn | None = None,
    ):
        self.transform = transform
        t0 = self.transform(torch.as_tensor(sigma_min))
        t1 = self.transform(torch.as_tensor(sigma_max))
        self.tree = BatchedBrownianTree(x, t0, t1, seed, randn=randn)

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        t0 = self.transform(torch.as_tensor(sigma))
        t1 = self.transform(torch.as_tensor(sigma_next))
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt()


def _brownian_default(x: torch.Tensor, sigmas: torch.Tensor, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    if noise_sampler is not None:
        return noise_sampler
    return BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max())


def _churn(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    i: int,
    noise_sampler: NoiseSampler,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Karras' stochastic churn: raise sigma to sigma_hat by adding noise. The noise is always drawn."""
    sigma = sigmas[i]
    gamma = min(s_churn / (len(sigmas) - 1), 2**0.5 - 1) if s_tmin <= sigma <= s_tmax else 0.0
    eps = noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise
    sigma_hat = sigma * (gamma + 1)
    if gamma > 0:
        x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def _t(sigma: torch.Tensor) -> torch.Tensor:
    """Half-log-SNR time of DPM-Solver: t = -log(sigma)."""
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


# ---------------------------------------------------------------------------------------------------------------------
# Euler / Heun / DPM2 family
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_euler(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 with optional churn)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Euler step to sigma_down, then fresh noise of size sigma_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = to_d(x, sigmas[i], denoised)
        x = x + d * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 2); Euler for the step to sigma = 0."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver-2 style midpoint method, the midpoint taken in log sigma."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM2 midpoint step to sigma_down, then fresh noise of size sigma_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
            d_2 = to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


# ---------------------------------------------------------------------------------------------------------------------
# Linear multistep
# ---------------------------------------------------------------------------------------------------------------------


def linear_multistep_coeff(order: int, t: Sequence[float], i: int, j: int) -> float:
    """Weight of derivative d_{i-j} in an LMS step from t[i] to t[i+1]: the integral of its Lagrange basis."""
    if order - 1 > i:
        raise ValueError(f"Order {order} too high for step {i}")
    basis = np.polynomial.Polynomial([1.0])
    for k in range(order):
        if k == j:
            continue
        basis = basis * np.polynomial.Polynomial([-float(t[i - k]), 1.0]) / (float(t[i - j]) - float(t[i - k]))
    antiderivative = basis.integ()
    return float(antiderivative(float(t[i + 1])) - antiderivative(float(t[i])))


@torch.no_grad()
def sample_lms(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    order: int = 4,
) -> torch.Tensor:
    """Linear multistep method in sigma over the last `order` derivatives."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds: list[torch.Tensor] = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        cur_order = min(i + 1, order)
        coeffs = [linear_multistep_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds), strict=True))
    return x


# ---------------------------------------------------------------------------------------------------------------------
# DPM-Solver (fast and adaptive)
# ---------------------------------------------------------------------------------------------------------------------


class PIDStepSizeController:
    """PID controller for adaptive step sizes (Söderlind); with the defaults a plain integral controller."""

    def __init__(
        self,
        h: float,
        pcoeff: float,
        icoeff: float,
        dcoeff: float,
        order: float = 1,
        accept_safety: float = 0.81,
        eps: float = 1e-8,
    ):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def limiter(self, x: float) -> float:
        return 1 + math.atan(x - 1)

    def propose_step(self, error: Any) -> bool:
        """Scale `h` by the controller's factor; return whether the step that produced `error` is accepted."""
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = self.limiter(factor)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


class DPMSolver(torch.nn.Module):
    """DPM-Solver (Lu et al. 2022) in the time variable t = -log(sigma), on an eps view of the denoiser."""

    def __init__(
        self,
        model: Callable[..., torch.Tensor],
        extra_args: dict | None = None,
        eps_callback: Callable[[], Any] | None = None,
        info_callback: Callable[[dict], Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.eps_callback = eps_callback
        self.info_callback = info_callback

    def t(self, sigma: torch.Tensor) -> torch.Tensor:
        return -sigma.log()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t.neg().exp()

    def eps(
        self, eps_cache: dict, key: str, x: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, dict]:
        """Noise prediction at (x, t), cached under `key` so solver stages share model calls."""
        if key in eps_cache:
            return eps_cache[key], eps_cache
        sigma = self.sigma(t) * x.new_ones([x.shape[0]])
        eps = (x - self.model(x, sigma, *args, **self.extra_args, **kwargs)) / self.sigma(t)
        if self.eps_callback is not None:
            self.eps_callback()
        return eps, {key: eps, **eps_cache}

    def dpm_solver_1_step(
        self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps_cache: dict | None = None
    ) -> tuple[torch.Tensor, dict]:
        eps_cache = {} if eps_cache is None else eps_cache
        h = t_next - t
        eps, eps_cache = self.eps(eps_cache, "eps", x, t)
        x_1 = x - self.sigma(t_next) * h.expm1() * eps
        return x_1, eps_cache

    def dpm_solver_2_step(
        self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, r1: float = 1 / 2, eps_cache: dict | None = None
    ) -> tuple[torch.Tensor, dict]:
        eps_cache = {} if eps_cache is None else eps_cache
        h = t_next - t
        eps, eps_cache = self.eps(eps_cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, eps_cache = self.eps(eps_cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, eps_cache

    def dpm_solver_3_step(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        t_next: torch.Tensor,
        r1: float = 1 / 3,
        r2: float = 2 / 3,
        eps_cache: dict | None = None,
    ) -> tuple[torch.Tensor, dict]:
        eps_cache = {} if eps_cache is None else eps_cache
        h = t_next - t
        eps, eps_cache = self.eps(eps_cache, "eps", x, t)
        s1 = t + r1 * h
        s2 = t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, eps_cache = self.eps(eps_cache, "eps_r1", u1, s1)
        phi_r2 = (r2 * h).expm1() / (r2 * h) - 1
        u2 = x - self.sigma(s2) * (r2 * h).expm1() * eps - self.sigma(s2) * (r2 / r1) * phi_r2 * (eps_r1 - eps)
        eps_r2, eps_cache = self.eps(eps_cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, eps_cache

    def _ancestral_target(self, t: torch.Tensor, t_next: torch.Tensor, t_end: torch.Tensor, eta: float) -> tuple:
        """Deterministic target time and the noise needed to land on sigma(t_next) from there."""
        if not eta:
            return t_next, 0.0
        sd, _ = get_ancestral_step(self.sigma(t), self.sigma(t_next), eta)
        t_next_ = torch.minimum(t_end, self.t(sd))
        su = (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5
        return t_next_, su

    def dpm_solver_fast(
        self,
        x: torch.Tensor,
        t_start: torch.Tensor,
        t_end: torch.Tensor,
        nfe: int,
        eta: float = 0.0,
        s_noise: float = 1.0,
        noise_sampler: NoiseSampler | None = None,
    ) -> torch.Tensor:
        """DPM-Solver-fast: third-order steps on a uniform t grid, using exactly `nfe` model calls."""
        noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
        if not t_end > t_start and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        steppers = {1: self.dpm_solver_1_step, 2: self.dpm_solver_2_step, 3: self.dpm_solver_3_step}
        for i, order in enumerate(orders):
            eps_cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            t_next_, su = self._ancestral_target(t, t_next, t_end, eta)
            eps, eps_cache = self.eps(eps_cache, "eps", x, t)
            denoised = x - self.sigma(t) * eps
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t, "denoised": denoised})
            x, eps_cache = steppers[order](x, t, t_next_, eps_cache=eps_cache)
            x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def dpm_solver_adaptive(
        self,
        x: torch.Tensor,
        t_start: torch.Tensor,
        t_end: torch.Tensor,
        order: int = 3,
        rtol: float = 0.05,
        atol: float = 0.0078,
        h_init: float = 0.05,
        pcoeff: float = 0.0,
        icoeff: float = 1.0,
        dcoeff: float = 0.0,
        accept_safety: float = 0.81,
        eta: float = 0.0,
        s_noise: float = 1.0,
        noise_sampler: NoiseSampler | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Adaptive DPM-Solver: embedded (order-1, order) pairs with a PID step-size controller."""
        noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
        if order not in {2, 3}:
            raise ValueError("order should be 2 or 3")
        forward = t_end > t_start
        if not forward and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        h_init = abs(h_init) * (1 if forward else -1)
        atol_t = torch.tensor(atol)
        rtol_t = torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}

        while s < t_end - 1e-5 if forward else s > t_end + 1e-5:
            eps_cache: dict = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            t_, su = self._ancestral_target(s, t, t_end, eta)
            eps, eps_cache = self.eps(eps_cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps

            if order == 2:
                x_low, eps_cache = self.dpm_solver_1_step(x, s, t_, eps_cache=eps_cache)
                x_high, eps_cache = self.dpm_solver_2_step(x, s, t_, eps_cache=eps_cache)
            else:
                x_low, eps_cache = self.dpm_solver_2_step(x, s, t_, r1=1 / 3, eps_cache=eps_cache)
                x_high, eps_cache = self.dpm_solver_3_step(x, s, t_, eps_cache=eps_cache)
            delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            accept = pid.propose_step(error)
            if accept:
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t))
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] += order
            info["steps"] += 1

            if self.info_callback is not None:
                self.info_callback(
                    {
                        "x": x,
                        "i": info["steps"] - 1,
                        "t": s,
                        "t_up": s,
                        "denoised": denoised,
                        "error": error,
                        "h": pid.h,
                        **info,
                    }
                )

        return x, info


def _dpm_info_callback(dpm_solver: DPMSolver, callback: Callable[[dict], Any]) -> Callable[[dict], Any]:
    return lambda info: callback(
        {"sigma": dpm_solver.sigma(info["t"]), "sigma_hat": dpm_solver.sigma(info["t_up"]), **info}
    )


@torch.no_grad()
def sample_dpm_fast(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    n: int,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver-fast between sigma_max and sigma_min with `n` model calls (ignores any sigma list)."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    with tqdm(total=n, disable=disable) as pbar:
        dpm_solver = DPMSolver(model, extra_args, eps_callback=pbar.update)
        if callback is not None:
            dpm_solver.info_callback = _dpm_info_callback(dpm_solver, callback)
        t_start = dpm_solver.t(torch.tensor(sigma_max))
        t_end = dpm_solver.t(torch.tensor(sigma_min))
        return dpm_solver.dpm_solver_fast(x, t_start, t_end, n, eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_dpm_adaptive(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigma_min: float,
    sigma_max: float,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    eta: float = 0.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict]:
    """Adaptive-step DPM-Solver between sigma_max and sigma_min (ignores any sigma list and step count)."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    with tqdm(disable=disable) as pbar:
        dpm_solver = DPMSolver(model, extra_args, eps_callback=pbar.update)
        if callback is not None:
            dpm_solver.info_callback = _dpm_info_callback(dpm_solver, callback)
        t_start = dpm_solver.t(torch.tensor(sigma_max))
        t_end = dpm_solver.t(torch.tensor(sigma_min))
        x, info = dpm_solver.dpm_solver_adaptive(
            x,
            t_start,
            t_end,
            order,
            rtol,
            atol,
            h_init,
            pcoeff,
            icoeff,
            dcoeff,
            accept_safety,
            eta,
            s_noise,
            noise_sampler,
        )
    if return_info:
        return x, info
    return x


# ---------------------------------------------------------------------------------------------------------------------
# DPM-Solver++ family
# ---------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_dpmpp_2s_ancestral(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2S) single-step second order to sigma_down, then fresh noise of size sigma_up."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s) * s_in, **extra_args)
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    r: float = 1 / 2,
) -> torch.Tensor:
    """DPM-Solver++ (stochastic, single-step, two stages per step); Euler for the step to sigma = 0."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_default(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)

        sd, su = get_ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise_sampler(_sigma(t), _sigma(s)) * s_noise * su
        denoised_2 = model(x_2, _sigma(s) * s_in, **extra_args)

        sd, su = get_ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise_sampler(_sigma(t), _sigma(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): deterministic second-order multistep in t = -log(sigma)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            h_last = t - _t(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
    solver_type: str = "midpoint",
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE; `solver_type` 'midpoint' or 'heun' picks the second-order correction."""
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_default(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h_last = None
    h = None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    factor = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                else:
                    factor = 0.5 * (-h - eta_h).expm1().neg()
                x = x + factor * (1 / r) * (denoised - old_denoised)
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with exponential-integrator phi functions."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian_default(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    denoised_1, denoised_2 = None, None
    h, h_1, h_2 = None, None, None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            t, s = -sigmas[i].log(), -sigmas[i + 1].log()
            h = s - t
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0 = h_1 / h
                r1 = h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * d
            if eta:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x
