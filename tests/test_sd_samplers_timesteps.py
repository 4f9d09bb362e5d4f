"""Timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC) against independent computations.

No parity data exists for these, so the model is the exact eps predictor for Gaussian data N(c, s2·I) (the
analytic denoiser of samplers.json seen through the DDPM schedule). Its probability-flow ODE has a closed-form
solution, x̄(σ) = c + (x̄_T - c)·sqrt((s2 + σ²) / (s2 + σ_T²)) with x̄ = x / sqrt(ᾱ), σ = sqrt((1 - ᾱ) / ᾱ), so
deterministic samplers can be checked for convergence, and single steps against their formulas by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import sd_samplers_timesteps_impl as impl
from modules.errors import UserError
from modules.k_diffusion import external, sampling

FIXTURES = Path(__file__).parent / "fixtures"
SIGMAS_DATA = json.loads((FIXTURES / "sigmas.json").read_text())
SAMPLERS_DATA = json.loads((FIXTURES / "samplers.json").read_text())
ALPHAS_CUMPROD = torch.tensor(SIGMAS_DATA["schedule"]["alphas_cumprod_float32"], dtype=torch.float32)
AC = ALPHAS_CUMPROD.double().numpy()
S2 = SAMPLERS_DATA["denoiser"]["s2"]
C = torch.tensor(SAMPLERS_DATA["denoiser"]["c"], dtype=torch.float64)
X_T = torch.tensor(SAMPLERS_DATA["initial_noise"], dtype=torch.float64)

# DPM-Solver's continuous time for the discrete schedule: timestep n sits at t = (n + 1) / 1000, log alpha linear.
T_ARRAY = np.linspace(0, 1, 1001)[1:]
LOG_ALPHA = 0.5 * np.log(AC)


def alpha_bar(timestep: float) -> float:
    return math.exp(2 * np.interp(timestep / 1000 + 1 / 1000, T_ARRAY, LOG_ALPHA))


class Inner:
    alphas_cumprod = ALPHAS_CUMPROD


class ExactEps:
    """eps(x_t, t) for data ~ N(c, s2·I); `model.inner_model.alphas_cumprod` as the samplers expect."""

    def __init__(self):
        self.inner_model = Inner()
        self.timesteps: list[float] = []

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = torch.tensor([alpha_bar(float(v)) for v in t], dtype=torch.float64).view(-1, 1, 1, 1)
        sigma = ((1 - a) / a).sqrt()
        x_bar = x / a.sqrt()
        denoised = x_bar * S2 / (S2 + sigma**2) + C * sigma**2 / (S2 + sigma**2)
        return (x_bar - denoised) / sigma

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],)
        self.timesteps.append(float(t[0]))
        return self.eps(x, t)


def exact_solution(x_t: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    s_from, s_to = math.sqrt((1 - a_from) / a_from), math.sqrt((1 - a_to) / a_to)
    x_bar = x_t / math.sqrt(a_from)
    return (C + (x_bar - C) * math.sqrt((S2 + s_to**2) / (S2 + s_from**2))) * math.sqrt(a_to)


def ddim_by_hand(x, e, a_t, a_prev, dir_eps=None, sigma=0.0, z=None):
    pred_x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
    dir_eps = e if dir_eps is None else dir_eps
    out = math.sqrt(a_prev) * pred_x0 + math.sqrt(1 - a_prev - sigma**2) * dir_eps
    return out if z is None else out + sigma * z


def t(value: float) -> torch.Tensor:
    return torch.full((X_T.shape[0],), float(value), dtype=torch.float64)


def test_get_timesteps():
    assert impl.get_timesteps(20).tolist() == list(range(1, 1000, 50))
    assert impl.get_timesteps(30).tolist() == [x + 1 for x in range(0, 1000, 33)]
    assert impl.get_timesteps(1).tolist() == [1]
    assert impl.get_timesteps(9, discard_next_to_last_sigma=True).tolist() == list(range(1, 1000, 100))
    assert impl.get_timesteps(1000)[-2:].tolist() == [999, 999]
    for bad in (0, 1001):
        with pytest.raises(UserError, match="between 1 and 1000"):
            impl.get_timesteps(bad)


def test_ddim_one_step_is_the_closed_form():
    model = ExactEps()
    timesteps = torch.tensor([1, 501])
    out = impl.ddim(model, X_T, timesteps, disable=True)
    expected = ddim_by_hand(X_T, model.eps(X_T, t(501)), AC[501], AC[1])
    assert model.timesteps == [501.0]
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def test_ddim_runs_len_minus_one_steps_and_one_step_returns_input():
    model = ExactEps()
    seen = []
    impl.ddim(model, X_T, impl.get_timesteps(10), callback=seen.append, disable=True)
    assert model.timesteps == [float(x) for x in range(901, 100, -100)]
    assert [s["i"] for s in seen] == list(range(9))
    assert all(s["sigma"] == 0 and s["sigma_hat"] == 0 for s in seen)
    # A1111 walks the list down to its first entry: with one timestep nothing happens.
    assert torch.equal(impl.ddim(ExactEps(), X_T, impl.get_timesteps(1), disable=True), X_T)


def test_ddim_eta_zero_is_euler_in_sigma_space():
    """DDIM (eta 0) is Euler's method on x̄ = x / sqrt(ᾱ) over σ (Karras et al. 2022)."""
    timesteps = impl.get_timesteps(15)
    ddim_out = impl.ddim(ExactEps(), X_T, timesteps, disable=True)

    class Model:
        alphas_cumprod = ALPHAS_CUMPROD

        def apply_model(self, x, t):
            return ExactEps().eps(x, t)

    wrap = external.CompVisDenoiser(Model())
    sigmas = wrap.sigmas[timesteps.flip(0)].double()
    euler_out = sampling.sample_euler(
        wrap, X_T / math.sqrt(AC[timesteps[-1]]), sigmas, disable=True, noise_sampler=lambda s, n: X_T
    )
    assert torch.allclose(ddim_out / math.sqrt(AC[timesteps[0]]), euler_out, rtol=0, atol=2e-5)


def ddim_error(steps: int) -> float:
    timesteps = impl.get_timesteps(steps)
    out = impl.ddim(ExactEps(), X_T, timesteps, disable=True)
    return (out - exact_solution(X_T, AC[timesteps[-1]], AC[timesteps[0]])).abs().max().item()


def test_ddim_converges_to_the_ode_solution_at_first_order():
    e10, e20, e40 = ddim_error(10), ddim_error(20), ddim_error(40)
    assert e40 < e20 < e10
    assert 0.35 < e40 / e20 < 0.65


def test_ddim_eta_adds_scaled_noise_every_step():
    model = ExactEps()
    z = torch.randn_like(X_T)
    draws = []

    def noise(sigma, sigma_next):
        draws.append((sigma, sigma_next))
        return z

    timesteps = torch.tensor([1, 301, 601])
    out = impl.ddim(model, X_T, timesteps, disable=True, eta=0.7, noise_sampler=noise)

    x = X_T
    for hi, lo in ((601, 301), (301, 1)):
        a_t, a_prev = AC[hi], AC[lo]
        sigma = 0.7 * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        x = ddim_by_hand(x, model.eps(x, t(hi)), a_t, a_prev, sigma=sigma, z=z)
    assert torch.allclose(out, x, rtol=0, atol=1e-6)
    sigma_of = [math.sqrt((1 - AC[n]) / AC[n]) for n in (601, 301, 1)]
    assert [s for pair in draws for s in pair] == pytest.approx([*sigma_of[:2], *sigma_of[1:]], rel=1e-6)

    # eta = 0 still draws once per step (A1111 keeps its noise streams aligned) but adds nothing.
    draws.clear()
    deterministic = impl.ddim(ExactEps(), X_T, timesteps, disable=True, noise_sampler=noise)
    assert len(draws) == 2
    assert torch.equal(deterministic, impl.ddim(ExactEps(), X_T, timesteps, disable=True))


class CfgppModel(ExactEps):
    """Pretends to be a CFG denoiser: keeps an 'unconditional' eps (here 0.8·eps) after each call."""

    def __call__(self, x, t):
        e = super().__call__(x, t)
        self.last_noise_uncond = 0.8 * e
        return e


def test_ddim_cfgpp_renoises_along_the_unconditional_eps():
    model = CfgppModel()
    out = impl.ddim_cfgpp(model, X_T, torch.tensor([1, 501]), disable=True)
    assert model.cond_scale_miltiplier == pytest.approx(1 / 12.5)
    assert model.need_last_noise_uncond is True
    e = model.eps(X_T, t(501))
    expected = ddim_by_hand(X_T, e, AC[501], AC[1], dir_eps=0.8 * e)
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def test_plms_warmup_and_multistep_by_hand():
    model = ExactEps()
    seen = []
    timesteps = torch.tensor([1, 201, 401, 601, 801])
    out = impl.plms(model, X_T, timesteps, callback=seen.append, disable=True)
    eps = model.eps

    # Step 1: pseudo improved Euler - DDIM with eps, then with the average of eps at both ends.
    e1 = eps(X_T, t(801))
    x_pred = ddim_by_hand(X_T, e1, AC[801], AC[601])
    x1 = ddim_by_hand(X_T, (e1 + eps(x_pred, t(601))) / 2, AC[801], AC[601])
    # Steps 2-4: Adams-Bashforth of order 2, 3, 4 on the eps history.
    e2 = eps(x1, t(601))
    x2 = ddim_by_hand(x1, (3 * e2 - e1) / 2, AC[601], AC[401])
    e3 = eps(x2, t(401))
    x3 = ddim_by_hand(x2, (23 * e3 - 16 * e2 + 5 * e1) / 12, AC[401], AC[201])
    e4 = eps(x3, t(201))
    x4 = ddim_by_hand(x3, (55 * e4 - 59 * e3 + 37 * e2 - 9 * e1) / 24, AC[201], AC[1])

    assert model.timesteps == [801.0, 601.0, 601.0, 401.0, 201.0]
    for got, expected in zip(seen, [x1, x2, x3, x4], strict=True):
        assert torch.allclose(got["x"], expected, rtol=0, atol=1e-6)
    assert torch.equal(out, seen[-1]["x"])


def test_plms_beats_ddim():
    timesteps = impl.get_timesteps(20)
    exact = exact_solution(X_T, AC[timesteps[-1]], AC[timesteps[0]])
    plms_error = (impl.plms(ExactEps(), X_T, timesteps, disable=True) - exact).abs().max().item()
    assert plms_error < ddim_error(20) / 3


@pytest.mark.parametrize("variant", impl.UNIPC_VARIANTS)
def test_unipc_single_first_order_step_is_ddim(variant):
    model = ExactEps()
    out = impl.unipc(model, X_T, impl.get_timesteps(1), disable=True, variant=variant, order=1)
    # From continuous t = 1 (timestep 999) to t = 1/1000 (timestep 0) with the eps predicted at the start.
    expected = ddim_by_hand(X_T, model.eps(X_T, t(999)), AC[999], AC[0])
    assert model.timesteps == [pytest.approx(999.0)]
    assert torch.allclose(out, expected, rtol=0, atol=1e-5)


def test_unipc_bh1_first_order_corrector_by_hand():
    """Two steps of order 1: UniP (= DDIM) predictor, UniC correction with weight 1/2, final step uncorrected.

    The corrector's model value, taken at the predicted point, is reused by the next step (no extra call).
    """
    model = ExactEps()
    out = impl.unipc(model, X_T, impl.get_timesteps(2), disable=True, variant="bh1", order=1)
    ts = [999.0, 499.5, 0.0]  # continuous time linspace(1, 0.001, 3) as model timesteps
    a = [alpha_bar(v) for v in ts]
    lam = [0.5 * math.log(x / (1 - x)) for x in a]

    def x0(x, i):
        return (x - math.sqrt(1 - a[i]) * model.eps(x, t(ts[i]))) / math.sqrt(a[i])

    def ddim_data(x, m, i, j):
        return math.sqrt((1 - a[j]) / (1 - a[i])) * x - math.sqrt(a[j]) * math.expm1(-(lam[j] - lam[i])) * m

    m0 = x0(X_T, 0)
    x_pred = ddim_data(X_T, m0, 0, 1)
    m1 = x0(x_pred, 1)
    h = lam[1] - lam[0]
    x1 = ddim_data(X_T, m0, 0, 1) - math.sqrt(a[1]) * (-h) * 0.5 * (m1 - m0)
    x2 = ddim_data(x1, m1, 1, 2)
    assert model.timesteps == pytest.approx([999.0, 499.5], rel=1e-5)
    assert torch.allclose(out, x2, rtol=0, atol=1e-5)


def unipc_error(steps: int, variant: str, order: int) -> float:
    out = impl.unipc(
        ExactEps(), X_T, impl.get_timesteps(steps), disable=True, variant=variant, order=order, skip_type="logSNR"
    )
    return (out - exact_solution(X_T, alpha_bar(999), alpha_bar(0))).abs().max().item()


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_third_order_converges_fast(variant):
    assert unipc_error(20, variant, 3) < 1e-3
    assert unipc_error(20, variant, 3) < ddim_error(20) / 50
    assert unipc_error(20, variant, 3) < unipc_error(10, variant, 3) / 20


@pytest.mark.parametrize("skip_type", impl.UNIPC_SKIP_TYPES)
@pytest.mark.parametrize("variant", impl.UNIPC_VARIANTS)
def test_unipc_calls_model_once_per_step(variant, skip_type):
    model = ExactEps()
    seen = []
    steps = 8
    out = impl.unipc(
        model, X_T, impl.get_timesteps(steps), callback=seen.append, disable=True, variant=variant, skip_type=skip_type
    )
    assert len(model.timesteps) == steps
    assert model.timesteps[0] == pytest.approx(999.0)
    assert model.timesteps == sorted(model.timesteps, reverse=True)
    assert [s["i"] for s in seen] == list(range(steps))
    assert torch.equal(seen[-1]["x"], out)
    assert all(s["denoised"] is not None for s in seen)
    # Every variant and spacing lands near the ODE solution.
    assert (out - exact_solution(X_T, alpha_bar(999), alpha_bar(0))).abs().max().item() < 0.5


def test_unipc_img2img_starts_at_the_last_given_timestep():
    model = ExactEps()
    impl.unipc(model, X_T, impl.get_timesteps(20)[:10], disable=True, is_img2img=True)
    assert model.timesteps[0] == pytest.approx(451.0, abs=1e-3)
    assert len(model.timesteps) == 10


def test_unipc_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="order"):
        impl.unipc(ExactEps(), X_T, impl.get_timesteps(2), disable=True, order=3)
    with pytest.raises(UserError, match="variant"):
        impl.unipc(ExactEps(), X_T, impl.get_timesteps(4), disable=True, variant="bh3")
    with pytest.raises(UserError, match="skip type"):
        impl.unipc(ExactEps(), X_T, impl.get_timesteps(4), disable=True, skip_type="cosine")


def test_accepts_a1111_model_nesting():
    class Outer(ExactEps):
        def __init__(self):
            super().__init__()
            self.inner_model = type("Wrapper", (), {"inner_model": Inner()})()

    plain = impl.ddim(ExactEps(), X_T, impl.get_timesteps(4), disable=True)
    nested = impl.ddim(Outer(), X_T, impl.get_timesteps(4), disable=True)
    assert torch.equal(plain, nested)


def test_vp_schedule_interpolation():
    schedule = impl.DiscreteVPSchedule(ALPHAS_CUMPROD)
    knots = torch.tensor([0.001, 0.5, 1.0])
    assert schedule.marginal_alpha(knots).tolist() == pytest.approx(np.sqrt(AC[[0, 499, 999]]).tolist(), rel=1e-6)
    assert schedule.model_time(knots).tolist() == pytest.approx([0.0, 499.0, 999.0], abs=1e-3)
    lam = schedule.marginal_lambda(torch.tensor([0.25, 0.7]))
    assert schedule.inverse_lambda(lam).tolist() == pytest.approx([0.25, 0.7], abs=1e-5)
    # Beyond the last knot the end segment is extended.
    assert schedule.marginal_log_mean_coeff(torch.tensor([0.0005])).item() == pytest.approx(
        LOG_ALPHA[0] - 0.5 * (LOG_ALPHA[1] - LOG_ALPHA[0]), rel=1e-5
    )
