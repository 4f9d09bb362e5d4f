"""The A1111 sampler facts that infotext and file naming need, without importing any sampler code.

Names, aliases, default schedule type and whether the sampler draws ancestral noise that ENSD
(eta_noise_seed_delta) shifts — as listed in A1111 v1.10.1's sampler table (reference spec §5.1).
"""

from __future__ import annotations

from typing import NamedTuple


class SamplerFacts(NamedTuple):
    name: str
    aliases: tuple[str, ...]
    scheduler: str | None = None
    uses_ensd: bool = False


SAMPLERS: tuple[SamplerFacts, ...] = (
    SamplerFacts("DPM++ 2M", ("k_dpmpp_2m",), "karras"),
    SamplerFacts("DPM++ SDE", ("k_dpmpp_sde",), "karras"),
    SamplerFacts("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "exponential"),
    SamplerFacts("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), "exponential"),
    SamplerFacts("DPM++ 2S a", ("k_dpmpp_2s_a",), "karras", uses_ensd=True),
    SamplerFacts("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), "exponential"),
    SamplerFacts("Euler a", ("k_euler_a", "k_euler_ancestral"), uses_ensd=True),
    SamplerFacts("Euler", ("k_euler",)),
    SamplerFacts("LMS", ("k_lms",)),
    SamplerFacts("Heun", ("k_heun",)),
    SamplerFacts("DPM2", ("k_dpm_2",), "karras"),
    SamplerFacts("DPM2 a", ("k_dpm_2_a",), "karras", uses_ensd=True),
    SamplerFacts("DPM fast", ("k_dpm_fast",), uses_ensd=True),
    SamplerFacts("DPM adaptive", ("k_dpm_ad",), uses_ensd=True),
    SamplerFacts("Restart", ("restart",), "karras"),
    SamplerFacts("DDIM", ("ddim",)),
    SamplerFacts("DDIM CFG++", ("ddim_cfgpp",)),
    SamplerFacts("PLMS", ("plms",)),
    SamplerFacts("UniPC", ("unipc",)),
    SamplerFacts("LCM", ("k_lcm",)),
)

by_name: dict[str, SamplerFacts] = {s.name: s for s in SAMPLERS}

# A1111's samplers_map: lower-case name or alias -> name.
samplers_map: dict[str, str] = {key.lower(): s.name for s in SAMPLERS for key in (s.name, *s.aliases)}
