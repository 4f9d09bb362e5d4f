"""k-diffusion-compatible samplers replayed against the parity data (tests/fixtures/samplers.json, README §5).

Each run starts from the recorded input, takes the recorded noises in order of request and is compared in float64
with every callback state, the model-call sigmas and the result. Expected tensors are rounded to 7 significant
digits, hence the tolerance `2e-6 * max(1, |expected|)` (README conventions).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy import integrate

from modules import sd_samplers_extra, sd_samplers_lcm
from modules.k_diffusion import external, sampling, utils

DATA = json.loads((Path(__file__).parent / "fixtures" / "samplers.json").read_text())
S2 = DATA["denoiser"]["s2"]
C = torch.tensor(DATA["denoiser"]["c"], dtype=torch.float64)
FUNCTIONS = {
    **{name: getattr(sampling, name) for name in dir(sampling) if name.startswith("sample_")},
    "restart_sampler": sd_samplers_extra.restart_sampler,
    "sample_lcm": sd_samplers_lcm.sample_lcm,
}
TAKES_NO_NOISE = {"sample_lms", "sample_dpmpp_2m"}


def tensor(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest |a - b| / max(1, |b|)."""
    return ((actual - expected).abs() / expected.abs().clamp(min=1)).max().item()


class AnalyticDenoiser:
    """D(x, σ) = x·s2/(s2+σ²) + c·σ²/(s2+σ²): the exact denoiser for data ~ N(c, s2·I). Records call sigmas."""

    def __init__(self):
        self.sigmas: list[float] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],) and torch.all(sigma == sigma[0])
        self.sigmas.append(sigma[0].item())
        s = utils.append_dims(sigma, x.ndim)
        return x * S2 / (S2 + s**2) + C[: x.shape[0]] * s**2 / (S2 + s**2)


class RecordedNoise:
    """Hands out the recorded noises in order and remembers the (sigma, sigma_next) of each request."""

    def __init__(self, records: list[dict]):
        self.records = list(records)
        self.requests: list[tuple[float, float]] = []

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        assert self.records, "the sampler asked for more noise than the reference did"
        self.requests.append((float(sigma), float(sigma_next)))
        return tensor(self.records.pop(0)["noise"])


def replay(run: dict) -> dict:
    model = AnalyticDenoiser()
    noise = RecordedNoise(run["noises"])
    callbacks: list[dict] = []
    kwargs = {k: float("inf") if v == "inf" else v for k, v in run["kwargs"].items()}
    x = tensor(run["x_init"])
    function = FUNCTIONS[run["function"]]
    common = {"callback": callbacks.append, "disable": True}
    if run["function"] not in TAKES_NO_NOISE:
        common["noise_sampler"] = noise
    if run["function"] in ("sample_dpm_fast", "sample_dpm_adaptive"):
        out = function(model, x, **common, **kwargs)
    else:
        out = function(model, x, tensor(run["sigmas"]), **common, **kwargs)
    return {"x": out, "model": model, "noise": noise, "callbacks": callbacks}


def run_id(run: dict) -> str:
    return f"{run['sampler']}-{run['scheduler']}-{run['steps']}"


@pytest.mark.parametrize("run", DATA["runs"], ids=run_id)
def test_replay(run):
    result = replay(run)

    assert max_error(result["x"], tensor(run["x_final"])) <= 2e-6

    assert len(result["callbacks"]) == len(run["callbacks"])
    for got, expected in zip(result["callbacks"], run["callbacks"], strict=True):
        assert got["i"] == expected["i"]
        assert float(got["sigma"]) == pytest.approx(expected["sigma"], rel=1e-9)
        assert float(got["sigma_hat"]) == pytest.approx(expected["sigma_hat"], rel=1e-9)
        assert max_error(got["x"], tensor(expected["x"])) <= 2e-6
        assert set(got) >= {"x", "i", "sigma", "sigma_hat", "denoised"}

    assert len(result["model"].sigmas) == run["nfe"]
    assert result["model"].sigmas == pytest.approx(run["model_sigmas"], rel=1e-9)

    # Exactly as many noise draws as the reference, requested for the same sigma pairs (Brownian records).
    assert result["noise"].records == []
    for (sigma, sigma_next), record in zip(result["noise"].requests, run["noises"], strict=True):
        if record["source"] == "brownian":
            assert sigma == pytest.approx(record["sigma"], rel=1e-12)
            assert sigma_next == pytest.approx(record["sigma_next"], rel=1e-12)


@pytest.mark.parametrize("run", [r for r in DATA["runs"] if r["brownian"]], ids=run_id)
def test_brownian_noise_regenerated_from_seeds(run):
    """The web UI's Brownian trees (torchsde 0.2.6, CPU float32 normals) give the recorded noises."""
    tree = run["brownian"]
    x = tensor(run["x_init"])
    noise_sampler = sampling.BrownianTreeNoiseSampler(
        x,
        torch.tensor(tree["sigma_min"], dtype=torch.float32),
        torch.tensor(tree["sigma_max"], dtype=torch.float32),
        seed=tree["seeds"],
        randn=sampling.cpu_randn,
    )
    for record in run["noises"]:
        got = noise_sampler(tensor(record["sigma"]), tensor(record["sigma_next"]))
        assert got.dtype == torch.float64
        assert max_error(got, tensor(record["noise"])) <= 2e-6


def test_brownian_noise_is_per_item_and_order_independent():
    x = torch.zeros(2, 3, 4, 4)
    both = sampling.BrownianTreeNoiseSampler(x, 0.03, 14.6, seed=[11, 22], randn=sampling.cpu_randn)
    alone = sampling.BrownianTreeNoiseSampler(x[:1], 0.03, 14.6, seed=[11], randn=sampling.cpu_randn)
    unbatched = sampling.BrownianTreeNoiseSampler(x[0], 0.03, 14.6, seed=11, randn=sampling.cpu_randn)
    a = both(torch.tensor(5.0), torch.tensor(2.0))
    b = alone(torch.tensor(5.0), torch.tensor(2.0))
    c = unbatched(torch.tensor(5.0), torch.tensor(2.0))
    assert a.shape == x.shape and b.shape == (1, 3, 4, 4) and c.shape == (3, 4, 4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], c)
    assert not torch.equal(a[0], a[1])
    # Same interval queried again, and in reverse orientation: same increment, sign flipped.
    assert torch.equal(both(torch.tensor(5.0), torch.tensor(2.0)), a)
    assert torch.allclose(both(torch.tensor(2.0), torch.tensor(5.0)), -a)


def test_brownian_tree_randn_hook_is_scoped():
    """Without `randn`, torchsde draws in the tree's dtype; float32 on CPU that equals the web UI's draws."""
    from torchsde._brownian import brownian_interval

    original = brownian_interval._randn
    a, b = torch.tensor(10.0), torch.tensor(1.0)
    x64 = torch.zeros(1, 4, 4, 4, dtype=torch.float64)
    webui = sampling.BrownianTreeNoiseSampler(x64, 0.1, 10.0, seed=[5], randn=sampling.cpu_randn)
    plain = sampling.BrownianTreeNoiseSampler(x64, 0.1, 10.0, seed=[5])
    assert brownian_interval._randn is original
    assert not torch.allclose(webui(a, b), plain(a, b))

    x32 = x64.float()
    webui32 = sampling.BrownianTreeNoiseSampler(x32, 0.1, 10.0, seed=[5], randn=sampling.cpu_randn)
    plain32 = sampling.BrownianTreeNoiseSampler(x32, 0.1, 10.0, seed=[5])
    assert torch.equal(webui32(a, b), plain32(a, b))
    with pytest.raises(ValueError, match="seeds for a batch of 1"):
        sampling.BatchedBrownianTree(x32, 0.1, 10.0, seed=[1, 2])


def test_cpu_randn_is_a_fresh_seeded_cpu_generator():
    expected = torch.randn((2, 3), generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(sampling.cpu_randn(42, (2, 3)), expected)


def churn_by_hand(x, sigmas, eps, s_churn):
    gamma = min(s_churn / (len(sigmas) - 1), 2**0.5 - 1)
    sigma_hat = sigmas[0] * (gamma + 1)
    return x + eps * (sigma_hat**2 - sigmas[0] ** 2) ** 0.5, sigma_hat


@pytest.mark.parametrize("function", [sampling.sample_euler, sampling.sample_heun, sampling.sample_dpm_2])
def test_churn_raises_sigma_before_the_step(function):
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = torch.tensor([3.0, 0.0], dtype=torch.float64)
    eps = torch.randn_like(x)
    seen = []
    function(
        AnalyticDenoiser(), x, sigmas, callback=seen.append, disable=True, s_churn=1.0, noise_sampler=lambda s, n: eps
    )
    x_hat, sigma_hat = churn_by_hand(x, sigmas, eps, 1.0)
    assert seen[0]["sigma_hat"].item() == pytest.approx(sigma_hat.item())
    assert torch.allclose(seen[0]["x"], x_hat)


def test_churn_respects_tmin_tmax_but_still_draws():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)
    draws = []

    def noise(sigma, sigma_next):
        draws.append((float(sigma), float(sigma_next)))
        return torch.ones_like(x)

    seen = []
    sampling.sample_euler(
        AnalyticDenoiser(), x, sigmas, callback=seen.append, disable=True, s_churn=1.0, s_tmax=2.0, noise_sampler=noise
    )
    assert draws == [(3.0, 1.0), (1.0, 0.0)]
    assert seen[0]["sigma_hat"].item() == 3.0
    assert seen[1]["sigma_hat"].item() > 1.0


def test_default_noise_comes_from_torch_global_generator():
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    sigmas = torch.tensor([5.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    torch.manual_seed(7)
    default = sampling.sample_euler_ancestral(AnalyticDenoiser(), x, sigmas, disable=True)
    torch.manual_seed(7)
    explicit = sampling.sample_euler_ancestral(
        AnalyticDenoiser(), x, sigmas, disable=True, noise_sampler=lambda s, n: torch.randn_like(x)
    )
    assert torch.equal(default, explicit)


def test_sde_samplers_default_to_a_brownian_tree():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = sampling.get_sigmas_karras(4, 0.1, 10.0).double()
    out = sampling.sample_dpmpp_2m_sde(AnalyticDenoiser(), x * 10, sigmas, disable=True)
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="solver_type"):
        sampling.sample_dpmpp_2m_sde(AnalyticDenoiser(), x, sigmas, disable=True, solver_type="euler")


def test_eta_zero_makes_ancestral_samplers_deterministic():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = torch.tensor([5.0, 2.0, 0.5, 0.0], dtype=torch.float64)

    def no_noise(sigma, sigma_next):
        raise AssertionError("no noise expected")

    ancestral = sampling.sample_euler_ancestral(AnalyticDenoiser(), x, sigmas, disable=True, eta=0.0)
    euler = sampling.sample_euler(AnalyticDenoiser(), x, sigmas, disable=True, noise_sampler=lambda s, n: x)
    assert torch.allclose(ancestral, euler, rtol=0, atol=1e-12)
    assert torch.isfinite(
        sampling.sample_dpmpp_2m_sde(AnalyticDenoiser(), x, sigmas, eta=0.0, noise_sampler=no_noise)
    ).all()


def test_get_ancestral_step():
    down, up = sampling.get_ancestral_step(2.0, 1.0)
    assert up == pytest.approx(math.sqrt(1 * (4 - 1) / 4))
    assert down**2 + up**2 == pytest.approx(1.0)
    assert sampling.get_ancestral_step(2.0, 1.0, eta=0) == (1.0, 0.0)
    # eta large: all of sigma_to comes from noise.
    assert sampling.get_ancestral_step(2.0, 1.0, eta=10)[1] == 1.0


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_linear_multistep_coeff_is_the_integral_of_the_lagrange_basis(order):
    t = [14.6, 9.1, 5.5, 3.2, 1.7, 0.0]
    i = 4
    for j in range(order):

        def basis(tau, j=j):
            prod = 1.0
            for k in range(order):
                if k != j:
                    prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
            return prod

        expected = integrate.quad(basis, t[i], t[i + 1], epsabs=1e-13)[0]
        assert sampling.linear_multistep_coeff(order, t, i, j) == pytest.approx(expected, rel=1e-12, abs=1e-14)
    with pytest.raises(ValueError, match="too high"):
        sampling.linear_multistep_coeff(3, t, 1, 0)


def test_dpm_adaptive_returns_info():
    run = next(r for r in DATA["runs"] if r["function"] == "sample_dpm_adaptive")
    kwargs = dict(run["kwargs"])
    x, info = sampling.sample_dpm_adaptive(
        AnalyticDenoiser(),
        tensor(run["x_init"]),
        disable=True,
        noise_sampler=RecordedNoise(run["noises"]),
        return_info=True,
        **kwargs,
    )
    assert max_error(x, tensor(run["x_final"])) <= 2e-6
    assert info["nfe"] == run["nfe"] and info["steps"] == len(run["callbacks"])
    assert info["n_accept"] == len(run["noises"]) and info["n_accept"] + info["n_reject"] == info["steps"]


def test_dpm_solvers_reject_zero_sigmas():
    x = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match="must not be 0"):
        sampling.sample_dpm_fast(AnalyticDenoiser(), x, 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="must not be 0"):
        sampling.sample_dpm_adaptive(AnalyticDenoiser(), x, 0.1, 0.0)


def test_pid_controller_integral_only():
    pid = sampling.PIDStepSizeController(0.05, 0.0, 1.0, 0.0, order=3)
    assert pid.propose_step(1.0)  # error 1 -> factor ~1 -> accepted
    assert pid.h == pytest.approx(0.05 * (1 + math.atan((1 / (1 + 1e-8)) ** (1 / 3) - 1)))
    assert not pid.propose_step(100.0)


def test_restart_with_explicit_restart_list_draws_noise_to_jump_back_up():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = sampling.get_sigmas_karras(8, 0.03, 14.6).double()
    draws = []

    def noise(sigma, sigma_next):
        draws.append((float(sigma), float(sigma_next)))
        return torch.zeros_like(x)

    model = AnalyticDenoiser()
    seen = []
    sd_samplers_extra.restart_sampler(
        model, x, sigmas, callback=seen.append, disable=True, restart_list={0.5: [3, 2, 3.0]}, noise_sampler=noise
    )
    # Two restarts of 2 steps each are inserted; each begins with one jump back up.
    assert len(seen) == 8 + 2 * 2
    assert len(draws) == 2
    k = int(torch.argmin((sigmas - 0.5).abs()))
    m = int(torch.argmin((sigmas - 3.0).abs()))
    assert draws[0][0] == pytest.approx(sigmas[k].item()) and draws[0][1] == pytest.approx(sigmas[m].item())


class EpsModel:
    """apply_model(x, t, cond) returning a fixed function of its inputs, to check the wrappers' scalings."""

    def __init__(self, alphas_cumprod):
        self.alphas_cumprod = alphas_cumprod
        self.calls = []

    def apply_model(self, x, t, cond=None):
        self.calls.append((x.clone(), t.clone(), cond))
        return 0.5 * x + 0.01 * t.view(-1, 1, 1, 1)


def test_compvis_denoisers_scalings():
    alphas_cumprod = torch.linspace(0.999, 0.005, 1000)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    sigma = torch.tensor([2.0, 2.0], dtype=torch.float64)

    eps_model = EpsModel(alphas_cumprod)
    eps_wrap = external.CompVisDenoiser(eps_model)
    out = eps_wrap(x, sigma, cond="c")
    x_in, t, cond = eps_model.calls[0]
    assert cond == "c"
    assert torch.allclose(x_in, x / math.sqrt(5))
    assert torch.allclose(t, eps_wrap.sigma_to_t(sigma))
    assert torch.allclose(out, x - 2.0 * (0.5 * x_in + 0.01 * t.view(-1, 1, 1, 1)))

    v_model = EpsModel(alphas_cumprod)
    v_wrap = external.CompVisVDenoiser(v_model)
    out = v_wrap(x, sigma, cond="c")
    x_in, t, _ = v_model.calls[0]
    v = 0.5 * x_in + 0.01 * t.view(-1, 1, 1, 1)
    assert torch.allclose(out, x / 5 + v * (-2.0 / math.sqrt(5)))


def test_lcm_denoiser_boundary_scalings():
    alphas_cumprod = torch.linspace(0.999, 0.005, 1000)
    model = EpsModel(alphas_cumprod)
    wrap = sd_samplers_lcm.LCMCompVisDenoiser(model)
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    sigma = wrap.sigmas[10:11].double()
    out = wrap(x, sigma)
    x_in, t, _ = model.calls[0]
    assert t.item() == pytest.approx(10 * 20 + 19)
    eps = 0.5 * x_in + 0.01 * t.view(-1, 1, 1, 1)
    x0 = x - sigma.item() * eps
    scaled = t.item() * 10
    c_skip = 0.25 / (scaled**2 + 0.25)
    c_out = scaled / math.sqrt(scaled**2 + 0.25)
    assert torch.allclose(out, c_out * x0 + c_skip * x)


def test_append_dims():
    assert utils.append_dims(torch.ones(3), 4).shape == (3, 1, 1, 1)
    with pytest.raises(ValueError):
        utils.append_dims(torch.ones(3, 3), 1)
