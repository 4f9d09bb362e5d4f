"""Timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC) over a model that predicts eps from (x, t).

These work in the variance-preserving space of the DDPM model (x_t = sqrt(ᾱ_t)·x0 + sqrt(1-ᾱ_t)·eps) on A1111's
timestep spacing: `get_timesteps(steps)` = 1, 1 + k, 1 + 2k, ... (k = 1000 // steps), clipped to 999. As in
A1111, the samplers walk that list from the top and stop at its first entry, so `len(timesteps) - 1` steps run.

`model(x, t_batch, **extra_args) -> eps`; `model.inner_model.alphas_cumprod` holds ᾱ (A1111's own nesting,
`model.inner_model.inner_model.alphas_cumprod`, is accepted too). Noise (DDIM eta) is drawn through
`noise_sampler(sigma, sigma_next)`, called with the step's equivalent k-diffusion sigmas sqrt((1-ᾱ)/ᾱ).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import trange

from modules.errors import UserError
from modules.k_diffusion import sampling

NUM_TIMESTEPS = 1000
CFGPP_SCALE_MULTIPLIER = 1 / 12.5  # CFG++ maps the usual CFG range [0, 12.5] onto its guidance range [0, 1]

UNIPC_VARIANTS = ("bh1", "bh2", "vary_coeff")
UNIPC_SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


def get_timesteps(steps: int, discard_next_to_last_sigma: bool = False) -> torch.Tensor:
    """A1111's timestep list for `steps` steps (ascending); one more step when discarding the penultimate sigma."""
    if discard_next_to_last_sigma:
        steps += 1
    if not 1 <= steps <= NUM_TIMESTEPS:
        raise UserError(f"DDIM, PLMS and UniPC need between 1 and {NUM_TIMESTEPS} sampling steps, got {steps}")
    return torch.clip(torch.asarray(list(range(0, NUM_TIMESTEPS, NUM_TIMESTEPS // steps))) + 1, 0, NUM_TIMESTEPS - 1)


def _alphas_cumprod(model: Any) -> torch.Tensor:
    inner = model.inner_model
    return inner.alphas_cumprod if hasattr(inner, "alphas_cumprod") else inner.inner_model.alphas_cumprod


def _sigma_of(alpha_bar: float) -> float:
    return math.sqrt((1 - alpha_bar) / alpha_bar)


class _DDIMCoefficients:
    """ᾱ at each timestep and at the one below it (ᾱ of timestep 0 below the first), plus DDIM's eta sigmas."""

    def __init__(self, model: Any, timesteps: torch.Tensor, eta: float = 0.0):
        # Kept on the CPU: the loop reads them with .item() every step, which on a GPU tensor waits for the GPU.
        alphas_cumprod = _alphas_cumprod(model).detach().cpu()
        timesteps = torch.as_tensor(timesteps).cpu()
        self.timesteps = timesteps
        self.alphas = alphas_cumprod[timesteps]
        below = torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))
        self.alphas_prev = alphas_cumprod[below].to(torch.float64)
        # Computed in ᾱ's own precision (float32), as the reference does.
        self.sqrt_one_minus_alphas = torch.sqrt(1 - self.alphas)
        # 1 - ᾱ_t is taken in ᾱ's precision before widening, as the reference does.
        one_minus_alphas = (1 - self.alphas).to(torch.float64)
        ratio = self.alphas.to(torch.float64) / self.alphas_prev
        self.sigmas = eta * torch.sqrt((1 - self.alphas_prev) / one_minus_alphas * (1 - ratio))

    def step(
        self, x: torch.Tensor, e_t: torch.Tensor, index: int, dir_eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic part of the DDIM update from timestep `index` to the one below: (x_prev, pred_x0, sigma_t)."""
        s_x = x.new_ones((x.shape[0], 1, 1, 1))
        a_t = self.alphas[index].item() * s_x
        a_prev = self.alphas_prev[index].item() * s_x
        sigma_t = self.sigmas[index].item() * s_x
        sqrt_one_minus_at = self.sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * (e_t if dir_eps is None else dir_eps)
        return a_prev.sqrt() * pred_x0 + dir_xt, pred_x0, sigma_t

    def noise_sigmas(self, index: int) -> tuple[float, float]:
        return _sigma_of(self.alphas[index].item()), _sigma_of(self.alphas_prev[index].item())


def _ddim_loop(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    extra_args: dict | None,
    callback: Callable[[dict], Any] | None,
    disable: bool | None,
    eta: float,
    noise_sampler: sampling.NoiseSampler | None,
    cfgpp: bool,
) -> torch.Tensor:
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = sampling.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    coeffs = _DDIMCoefficients(model, timesteps, eta)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        e_t = model(x, coeffs.timesteps[index].item() * s_in, **extra_args)
        dir_eps = model.last_noise_uncond if cfgpp else None
        x_prev, pred_x0, sigma_t = coeffs.step(x, e_t, index, dir_eps)
        # The noise is drawn even when eta = 0, keeping the per-image noise streams aligned with A1111.
        x = x_prev + sigma_t * noise_sampler(*coeffs.noise_sigmas(index))
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


@torch.no_grad()
def ddim(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 0.0,
    noise_sampler: sampling.NoiseSampler | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021); eta = 0 is the deterministic sampler, eta = 1 DDPM-like ancestral sampling."""
    return _ddim_loop(model, x, timesteps, extra_args, callback, disable, eta, noise_sampler, cfgpp=False)


@torch.no_grad()
def ddim_cfgpp(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    eta: float = 0.0,
    noise_sampler: sampling.NoiseSampler | None = None,
) -> torch.Tensor:
    """DDIM with CFG++ (Chung et al. 2024): re-noise along the unconditional eps instead of the guided one.

    Asks the CFG denoiser (A1111's attribute names) to scale the CFG scale by 1/12.5 and to keep the last
    unconditional prediction in `model.last_noise_uncond`.
    """
    model.cond_scale_miltiplier = CFGPP_SCALE_MULTIPLIER
    model.need_last_noise_uncond = True
    return _ddim_loop(model, x, timesteps, extra_args, callback, disable, eta, noise_sampler, cfgpp=True)


# Adams-Bashforth weights on (eps_t, eps_{t+1}, eps_{t+2}, eps_{t+3}) by how many earlier predictions exist.
_PLMS_WEIGHTS = {
    1: ((3, -1), 2),
    2: ((23, -16, 5), 12),
    3: ((55, -59, 37, -9), 24),
}


@torch.no_grad()
def plms(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """PLMS (Liu et al. 2022): DDIM steps on an Adams-Bashforth combination of eps predictions.

    The first step is a pseudo improved-Euler step (two model calls); later steps use 2nd, 3rd, then 4th order.
    """
    extra_args = {} if extra_args is None else extra_args
    coeffs = _DDIMCoefficients(model, timesteps)
    s_in = x.new_ones([x.shape[0]])
    old_eps: list[torch.Tensor] = []
    for i in trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        ts = coeffs.timesteps[index].item() * s_in
        t_next = coeffs.timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, ts, **extra_args)
        if not old_eps:
            x_prev, _, _ = coeffs.step(x, e_t, index)
            e_t_next = model(x_prev, t_next, **extra_args)
            e_t_prime = (e_t + e_t_next) / 2
        else:
            weights, divisor = _PLMS_WEIGHTS[len(old_eps)]
            history = [e_t, *reversed(old_eps)]
            e_t_prime = sum(w * e for w, e in zip(weights, history, strict=True)) / divisor
        x, pred_x0, _ = coeffs.step(x, e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": 0, "sigma_hat": 0, "denoised": pred_x0})
    return x


# ---------------------------------------------------------------------------------------------------------------------
# UniPC
# ---------------------------------------------------------------------------------------------------------------------


def _interpolate(x: torch.Tensor, xp: torch.Tensor, yp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(x) through (xp, yp) (xp increasing), extended linearly beyond both ends."""
    start = (torch.searchsorted(xp, x.contiguous(), right=True) - 1).clamp(0, len(xp) - 2)
    start_x, end_x = xp[start], xp[start + 1]
    start_y, end_y = yp[start], yp[start + 1]
    return start_y + (x - start_x) * (end_y - start_y) / (end_x - start_x)


class DiscreteVPSchedule:
    """The discrete DDPM schedule as a continuous-time VP SDE: t in (0, 1], timestep n at t = (n + 1) / N.

    log α_t is interpolated linearly between the discrete values 0.5·log ᾱ_n (DPM-Solver's convention).
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.total_n = len(log_alphas)
        self.T = 1.0
        self.t_array = torch.linspace(0.0, 1.0, self.total_n + 1, device=log_alphas.device)[1:]
        self.log_alpha_array = log_alphas

    def marginal_log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return _interpolate(t, self.t_array, self.log_alpha_array)

    def marginal_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t: torch.Tensor) -> torch.Tensor:
        """Half log-SNR: log α_t - log σ_t."""
        log_mean_coeff = self.marginal_log_mean_coeff(t)
        log_std = 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean_coeff))
        return log_mean_coeff - log_std

    def inverse_lambda(self, lamb: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lamb), -2.0 * lamb)
        return _interpolate(log_alpha, self.log_alpha_array.flip(0), self.t_array.flip(0))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The (fractional) DDPM timestep the model is called with at continuous time t."""
        return (t - 1.0 / self.total_n) * float(self.total_n)


class UniPC:
    """UniPC multistep solver (Zhao et al. 2023) in data-prediction form, with UniC correction.

    `variant` is 'bh1', 'bh2' (the B(h) choices of the paper) or 'vary_coeff'. `after_update(x, denoised)` is
    called after every step.
    """

    def __init__(
        self,
        eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        schedule: DiscreteVPSchedule,
        variant: str = "bh1",
        after_update: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
    ):
        if variant not in UNIPC_VARIANTS:
            raise UserError(f"Unknown UniPC variant {variant!r}; use one of {', '.join(UNIPC_VARIANTS)}")
        self.eps_model = eps_model
        self.schedule = schedule
        self.variant = variant
        self.after_update = after_update

    def data_prediction(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        noise = self.eps_model(x, self.schedule.model_time(t))
        alpha_t, sigma_t = self.schedule.marginal_alpha(t), self.schedule.marginal_std(t)
        return (x - _expand(sigma_t, x) * noise) / _expand(alpha_t, x)

    def get_time_steps(self, skip_type: str, t_T: float, t_0: float, n: int, device: Any) -> torch.Tensor:
        if skip_type == "logSNR":
            lambda_T = self.schedule.marginal_lambda(torch.tensor(t_T).to(device))
            lambda_0 = self.schedule.marginal_lambda(torch.tensor(t_0).to(device))
            steps = torch.linspace(lambda_T.cpu().item(), lambda_0.cpu().item(), n + 1).to(device)
            return self.schedule.inverse_lambda(steps)
        if skip_type == "time_uniform":
            return torch.linspace(t_T, t_0, n + 1).to(device)
        if skip_type == "time_quadratic":
            return torch.linspace(t_T**0.5, t_0**0.5, n + 1).pow(2).to(device)
        raise UserError(f"Unknown UniPC skip type {skip_type!r}; use one of {', '.join(UNIPC_SKIP_TYPES)}")

    def _step_quantities(self, model_prev_list: list, t_prev_list: list, t: torch.Tensor, order: int) -> tuple:
        """h, the ratios r_k of earlier steps' log-SNR gaps to h, and the scaled differences D1_k."""
        ns = self.schedule
        lambda_prev_0 = ns.marginal_lambda(t_prev_list[-1])
        h = ns.marginal_lambda(t) - lambda_prev_0
        model_prev_0 = model_prev_list[-1]
        rks, d1s = [], []
        for i in range(1, order):
            rk = ((ns.marginal_lambda(t_prev_list[-(i + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        return h, torch.tensor(rks, device=model_prev_0.device), d1s

    def update(
        self,
        x: torch.Tensor,
        model_prev_list: list,
        t_prev_list: list,
        t: torch.Tensor,
        order: int,
        use_corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One UniP step to time t of the given order, corrected with UniC when `use_corrector`."""
        ns = self.schedule
        t_prev_0 = t_prev_list[-1]
        model_prev_0 = model_prev_list[-1]
        sigma_prev_0, sigma_t = ns.marginal_std(t_prev_0), ns.marginal_std(t)
        alpha_t = torch.exp(ns.marginal_log_mean_coeff(t))
        h, rks, d1s = self._step_quantities(model_prev_list, t_prev_list, t, order)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        x_t_ = _expand(sigma_t / sigma_prev_0, x) * x - _expand(alpha_t * h_phi_1, x) * model_prev_0
        if self.variant == "vary_coeff":
            return self._vary_coeff(x_t_, t, hh, h_phi_1, rks, d1s, alpha_t, model_prev_0, use_corrector)
        return self._bh(x_t_, t, hh, h_phi_1, rks, d1s, alpha_t, model_prev_0, order, use_corrector)

    def _bh(
        self,
        x_t_: torch.Tensor,
        t: torch.Tensor,
        hh: torch.Tensor,
        h_phi_1: torch.Tensor,
        rks: torch.Tensor,
        d1s: list[torch.Tensor],
        alpha_t: torch.Tensor,
        model_prev_0: torch.Tensor,
        order: int,
        use_corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """UniPC with B(h) = h (bh1) or e^h - 1 (bh2): weights solved from the order conditions."""
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        rows, b = [], []
        for i in range(1, order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        r_matrix = torch.stack(rows)
        b = torch.tensor(b, device=rks.device)

        stacked = torch.stack(d1s, dim=1) if d1s else None
        pred_res: Any = 0
        if stacked is not None:
            # Order 2 uses the paper's simplified predictor weight.
            rhos_p = (
                torch.tensor([0.5], device=b.device) if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b[:-1])
            )
            pred_res = torch.einsum("k,bk...->b...", rhos_p.to(stacked.dtype), stacked)
        x_t = x_t_ - _expand(alpha_t * b_h, x_t_) * pred_res

        model_t = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=b.device) if order == 1 else torch.linalg.solve(r_matrix, b)
            model_t = self.data_prediction(x_t, t)
            corr_res: Any = 0
            if stacked is not None:
                corr_res = torch.einsum("k,bk...->b...", rhos_c[:-1].to(stacked.dtype), stacked)
            d1_t = model_t - model_prev_0
            x_t = x_t_ - _expand(alpha_t * b_h, x_t_) * (corr_res + rhos_c[-1] * d1_t)
        return x_t, model_t

    def _vary_coeff(
        self,
        x_t_: torch.Tensor,
        t: torch.Tensor,
        hh: torch.Tensor,
        h_phi_1: torch.Tensor,
        rks: torch.Tensor,
        d1s: list[torch.Tensor],
        alpha_t: torch.Tensor,
        model_prev_0: torch.Tensor,
        use_corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """UniPC with step-dependent coefficients from the inverse of the Taylor matrix C."""
        k_total = len(rks)
        columns, col = [], torch.ones_like(rks)
        for k in range(1, k_total + 1):
            columns.append(col)
            col = col * rks / (k + 1)
        c_matrix = torch.stack(columns, dim=1)

        h_phi_ks, h_phi_k, factorial_k = [], h_phi_1, 1
        for k in range(1, k_total + 2):
            h_phi_ks.append(h_phi_k)
            h_phi_k = h_phi_k / hh - 1 / factorial_k
            factorial_k *= k + 1

        alpha = _expand(alpha_t, x_t_)
        stacked = torch.stack(d1s, dim=1) if d1s else None
        x_t = x_t_
        if stacked is not None:
            a_p = torch.linalg.inv(c_matrix[:-1, :-1]).to(stacked.dtype)
            for k in range(k_total - 1):
                x_t = x_t - alpha * h_phi_ks[k + 1] * torch.einsum("bk...,k->b...", stacked, a_p[k])

        model_t = None
        if use_corrector:
            a_c = torch.linalg.inv(c_matrix)
            model_t = self.data_prediction(x_t, t)
            d1_t = model_t - model_prev_0
            x_t = x_t_
            for k in range(k_total - 1):
                x_t = x_t - alpha * h_phi_ks[k + 1] * torch.einsum(
                    "bk...,k->b...", stacked, a_c[k][:-1].to(stacked.dtype)
                )
            # The reference weights D1_t with the last row it used (row 0 when there are no earlier steps).
            last_row = max(k_total - 2, 0)
            x_t = x_t - alpha * h_phi_ks[k_total] * (d1_t * a_c[last_row][-1])
        return x_t, model_t

    def sample(
        self,
        x: torch.Tensor,
        steps: int,
        t_start: float | None = None,
        t_end: float | None = None,
        order: int = 3,
        skip_type: str = "time_uniform",
        lower_order_final: bool = True,
    ) -> torch.Tensor:
        """Multistep UniPC from t_start (default T = 1) to t_end (default 1 / N) in `steps` steps."""
        if not 1 <= order <= steps:
            raise UserError(f"UniPC order ({order}) must be between 1 and the number of sampling steps ({steps})")
        t_0 = 1.0 / self.schedule.total_n if t_end is None else t_end
        t_T = self.schedule.T if t_start is None else t_start
        timesteps = self.get_time_steps(skip_type, t_T, t_0, steps, x.device)

        vec_t = timesteps[0].expand(x.shape[0])
        model_prev_list = [self.data_prediction(x, vec_t)]
        t_prev_list = [vec_t]
        # Warm up with lower orders until `order` earlier predictions exist.
        for init_order in range(1, order):
            vec_t = timesteps[init_order].expand(x.shape[0])
            x, model_x = self.update(x, model_prev_list, t_prev_list, vec_t, init_order, use_corrector=True)
            self._after_update(x, model_x)
            model_prev_list.append(model_x)
            t_prev_list.append(vec_t)
        for step in range(order, steps + 1):
            vec_t = timesteps[step].expand(x.shape[0])
            step_order = min(order, steps + 1 - step) if lower_order_final else order
            # No corrector on the last step: its model call would only serve a next step.
            x, model_x = self.update(x, model_prev_list, t_prev_list, vec_t, step_order, use_corrector=step < steps)
            self._after_update(x, model_x)
            model_prev_list = [*model_prev_list[1:], model_x]
            t_prev_list = [*t_prev_list[1:], vec_t]
        return x

    def _after_update(self, x: torch.Tensor, model_x: torch.Tensor | None) -> None:
        if self.after_update is not None:
            self.after_update(x, x if model_x is None else model_x)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-batch values shaped to broadcast against `like` ([B] -> [B, 1, 1, ...])."""
    return v[(...,) + (None,) * (like.dim() - 1)]


@torch.no_grad()
def unipc(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    is_img2img: bool = False,
    variant: str = "bh1",
    skip_type: str = "time_uniform",
    order: int = 3,
    lower_order_final: bool = True,
) -> torch.Tensor:
    """UniPC over `len(timesteps)` steps (A1111's `uni_pc_*` settings as keywords).

    txt2img runs from t = 1 (timestep 999); img2img (`is_img2img`) starts at the last given timestep.
    """
    extra_args = {} if extra_args is None else extra_args
    schedule = DiscreteVPSchedule(_alphas_cumprod(model))
    index = 0

    def after_update(x_t: torch.Tensor, denoised: torch.Tensor) -> None:
        nonlocal index
        if callback is not None:
            callback({"x": x_t, "i": index, "sigma": 0, "sigma_hat": 0, "denoised": denoised})
        index += 1

    solver = UniPC(lambda x_in, t_in: model(x_in, t_in, **extra_args), schedule, variant, after_update)
    t_start = float(timesteps[-1]) / NUM_TIMESTEPS + 1 / NUM_TIMESTEPS if is_img2img else None
    return solver.sample(
        x, steps=len(timesteps), t_start=t_start, order=order, skip_type=skip_type, lower_order_final=lower_order_final
    )
