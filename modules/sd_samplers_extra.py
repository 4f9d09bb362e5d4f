"""The web UI's own k-diffusion-style samplers: Restart sampling (Xu et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from modules.k_diffusion import sampling

# Automatic restart configuration, as A1111 chooses it from the step count.
RESTART_MIN_STEPS = 20
RESTART_TWICE_MIN_STEPS = 36
RESTART_AT_SIGMA = 0.1
RESTART_TO_SIGMA = 2


def _nearest_index(sigmas: torch.Tensor, value: float) -> int:
    return int(torch.argmin(abs(sigmas - value), dim=0))


@torch.no_grad()
def restart_sampler(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callable[[dict], Any] | None = None,
    disable: bool | None = None,
    s_noise: float = 1.0,
    restart_list: dict[float, list] | None = None,
    noise_sampler: sampling.NoiseSampler | None = None,
) -> torch.Tensor:
    """Heun steps down the sigma list with restarts: jump back up to a higher sigma by adding noise, then redo.

    `restart_list` maps a sigma (where to restart; the nearest list entry is used) to
    `[restart_steps, restart_times, max_sigma]`. Without one it is chosen from the step count: fewer than 20 steps
    never restart; 20-35 steps restart once from 0.1 to 2 with 9 steps (on a Karras schedule shortened to keep
    the model-call budget); 36 or more restart twice with steps // 4 steps.
    """
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = sampling.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    step_id = 0

    def heun_step(x: torch.Tensor, old_sigma: torch.Tensor, new_sigma: torch.Tensor) -> torch.Tensor:
        nonlocal step_id
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = sampling.to_d(x, old_sigma, denoised)
        if callback is not None:
            callback({"x": x, "i": step_id, "sigma": new_sigma, "sigma_hat": old_sigma, "denoised": denoised})
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, new_sigma * s_in, **extra_args)
            d_2 = sampling.to_d(x_2, new_sigma, denoised_2)
            x = x + (d + d_2) / 2 * dt
        step_id += 1
        return x

    steps = sigmas.shape[0] - 1
    if restart_list is None:
        if steps >= RESTART_MIN_STEPS:
            restart_steps, restart_times = 9, 1
            if steps >= RESTART_TWICE_MIN_STEPS:
                restart_steps, restart_times = steps // 4, 2
            sigmas = sampling.get_sigmas_karras(
                steps - restart_steps * restart_times, sigmas[-2].item(), sigmas[0].item(), device=sigmas.device
            )
            restart_list = {RESTART_AT_SIGMA: [restart_steps + 1, restart_times, RESTART_TO_SIGMA]}
        else:
            restart_list = {}

    restart_at = {_nearest_index(sigmas, key): value for key, value in restart_list.items()}

    step_list: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_at:
            restart_steps, restart_times, restart_max = restart_at[i + 1]
            min_idx = i + 1
            max_idx = _nearest_index(sigmas, restart_max)
            if max_idx < min_idx:
                sigma_restart = sampling.get_sigmas_karras(
                    restart_steps, sigmas[min_idx].item(), sigmas[max_idx].item(), device=sigmas.device
                )[:-1]
                for _ in range(restart_times):
                    step_list.extend(zip(sigma_restart[:-1], sigma_restart[1:], strict=True))

    last_sigma = None
    for old_sigma, new_sigma in tqdm(step_list, disable=disable):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            noise = noise_sampler(last_sigma, old_sigma)
            x = x + noise * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        x = heun_step(x, old_sigma, new_sigma)
        last_sigma = new_sigma

    return x
