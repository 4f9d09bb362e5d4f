"""The sampler table (UI order, names, aliases, options) and name resolution, as A1111 exposes them.

Entries construct the app's sampler classes lazily: `modules.sd_samplers_kdiffusion.KDiffusionSampler(funcname,
model)` for k-diffusion-style samplers (Restart and LCM included) and `modules.sd_samplers_timesteps.
CompVisSampler(funcname, model)` for DDIM / DDIM CFG++ / PLMS / UniPC. Which function an entry runs is data on its
constructor (`SamplerData.funcname`, `SamplerConstructor.function()`).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from modules import sd_schedulers
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SamplerConstructor:
    """Builds an entry's sampler object for a model; its fields say which function the sampler runs.

    `sampler_class` is "KDiffusionSampler" or "CompVisSampler"; `denoiser` is "compvis" (CompVisDenoiser /
    CompVisVDenoiser by the model's parameterization) or "lcm" (sd_samplers_lcm.LCMCompVisDenoiser).
    """

    sampler_class: str
    funcname: str
    module: str
    denoiser: str = "compvis"

    def function(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.funcname)

    def __call__(self, model: Any) -> Any:
        if self.sampler_class == "CompVisSampler":
            from modules.sd_samplers_timesteps import CompVisSampler

            return CompVisSampler(self.function(), model)
        from modules.sd_samplers_kdiffusion import KDiffusionSampler

        # k-diffusion functions go by name (extensions compare `sampler.funcname`); the web UI's own by object.
        in_k_diffusion = self.module == "modules.k_diffusion.sampling"
        return KDiffusionSampler(self.funcname if in_k_diffusion else self.function(), model, self.denoiser)


class SamplerData(NamedTuple):
    """One sampler: its name, how to construct it, aliases and options (A1111's tuple; extensions build these)."""

    name: str
    constructor: Callable[[Any], Any]
    aliases: list[str]
    options: dict[str, Any]

    def total_steps(self, steps: int) -> int:
        """Model-call steps for progress: second-order samplers evaluate twice per step."""
        return steps * 2 if self.options.get("second_order", False) else steps

    @property
    def funcname(self) -> str | None:
        return getattr(self.constructor, "funcname", None)


def _k(funcname: str) -> SamplerConstructor:
    return SamplerConstructor("KDiffusionSampler", funcname, "modules.k_diffusion.sampling")


def _timesteps(funcname: str) -> SamplerConstructor:
    return SamplerConstructor("CompVisSampler", funcname, "modules.sd_samplers_timesteps_impl")


samplers_k_diffusion = [
    SamplerData("DPM++ 2M", _k("sample_dpmpp_2m"), ["k_dpmpp_2m"], {"scheduler": "karras"}),
    SamplerData(
        "DPM++ SDE", _k("sample_dpmpp_sde"), ["k_dpmpp_sde"],
        {"scheduler": "karras", "second_order": True, "brownian_noise": True},
    ),
    SamplerData(
        "DPM++ 2M SDE", _k("sample_dpmpp_2m_sde"), ["k_dpmpp_2m_sde"],
        {"scheduler": "exponential", "brownian_noise": True},
    ),
    SamplerData(
        "DPM++ 2M SDE Heun", _k("sample_dpmpp_2m_sde"), ["k_dpmpp_2m_sde_heun"],
        {"scheduler": "exponential", "brownian_noise": True, "solver_type": "heun"},
    ),
    SamplerData(
        "DPM++ 2S a", _k("sample_dpmpp_2s_ancestral"), ["k_dpmpp_2s_a"],
        {"scheduler": "karras", "uses_ensd": True, "second_order": True},
    ),
    SamplerData(
        "DPM++ 3M SDE", _k("sample_dpmpp_3m_sde"), ["k_dpmpp_3m_sde"],
        {"scheduler": "exponential", "discard_next_to_last_sigma": True, "brownian_noise": True},
    ),
    SamplerData("Euler a", _k("sample_euler_ancestral"), ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": True}),
    SamplerData("Euler", _k("sample_euler"), ["k_euler"], {}),
    SamplerData("LMS", _k("sample_lms"), ["k_lms"], {}),
    SamplerData("Heun", _k("sample_heun"), ["k_heun"], {"second_order": True}),
    SamplerData(
        "DPM2", _k("sample_dpm_2"), ["k_dpm_2"],
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True},
    ),
    SamplerData(
        "DPM2 a", _k("sample_dpm_2_ancestral"), ["k_dpm_2_a"],
        {"scheduler": "karras", "discard_next_to_last_sigma": True, "uses_ensd": True, "second_order": True},
    ),
    SamplerData("DPM fast", _k("sample_dpm_fast"), ["k_dpm_fast"], {"uses_ensd": True}),
    SamplerData("DPM adaptive", _k("sample_dpm_adaptive"), ["k_dpm_ad"], {"uses_ensd": True}),
    SamplerData(
        "Restart", SamplerConstructor("KDiffusionSampler", "restart_sampler", "modules.sd_samplers_extra"),
        ["restart"], {"scheduler": "karras", "second_order": True},
    ),
]  # fmt: skip

samplers_timesteps = [
    SamplerData("DDIM", _timesteps("ddim"), ["ddim"], {}),
    SamplerData("DDIM CFG++", _timesteps("ddim_cfgpp"), ["ddim_cfgpp"], {}),
    SamplerData("PLMS", _timesteps("plms"), ["plms"], {}),
    SamplerData("UniPC", _timesteps("unipc"), ["unipc"], {}),
]

samplers_lcm = [
    SamplerData(
        "LCM", SamplerConstructor("KDiffusionSampler", "sample_lcm", "modules.sd_samplers_lcm", denoiser="lcm"),
        ["k_lcm"], {},
    ),
]  # fmt: skip

all_samplers: list[SamplerData] = [*samplers_k_diffusion, *samplers_timesteps, *samplers_lcm]
all_samplers_map: dict[str, SamplerData] = {}
samplers_map: dict[str, str] = {}
# A1111 1.10 offers every sampler in both tabs; the names stay for extensions.
samplers = all_samplers
samplers_for_img2img = all_samplers


def set_samplers() -> None:
    """Rebuild the lookup maps after `all_samplers` changed (extensions append their own entries)."""
    all_samplers_map.clear()
    samplers_map.clear()
    for sampler in all_samplers:
        all_samplers_map[sampler.name] = sampler
        samplers_map[sampler.name.lower()] = sampler.name
        for alias in sampler.aliases:
            samplers_map[alias.lower()] = sampler.name


set_samplers()


def visible_sampler_names(hidden: Iterable[str] = ()) -> list[str]:
    """Sampler names in UI order without those hidden by the `hide_samplers` option."""
    hidden = set(hidden)
    return [x.name for x in all_samplers if x.name not in hidden]


def find_sampler_config(name: str | None) -> SamplerData | None:
    """The entry for a sampler name or alias (case-insensitive); the default sampler for None; None if unknown."""
    if name is None:
        return all_samplers[0]
    canonical = samplers_map.get(name.lower())
    return all_samplers_map.get(canonical) if canonical is not None else None


def require_sampler_config(name: str | None) -> SamplerData:
    """Like `find_sampler_config`, but an unknown name is a `NotFoundError` that lists the valid names."""
    config = find_sampler_config(name)
    if config is None:
        raise NotFoundError(
            f"Sampler {name!r} not found. Use one of: {', '.join(x.name for x in all_samplers)} "
            "(or an alias such as k_euler_a)."
        )
    return config


def create_sampler(name: str | None, model: Any) -> Any:
    """Construct the named sampler for `model` and attach its table entry as `sampler.config`."""
    config = require_sampler_config(name)
    if getattr(model, "is_sdxl", False) and config.options.get("no_sdxl", False):
        raise UserError(f"Sampler {config.name} does not support SDXL models; choose another sampler.")
    sampler = config.constructor(model)
    sampler.config = config
    return sampler


def get_sampler_and_scheduler(
    sampler_name: str | None, scheduler_name: str | None, *, convert_automatic: bool = True
) -> tuple[str, str]:
    """Canonical (sampler name, schedule type label) from what a user, infotext or API client gave.

    Legacy combined names are split ("DPM++ 2M Karras" -> "DPM++ 2M" + "Karras"); an unknown sampler falls back
    to the default one and an unknown schedule type to Automatic, as A1111 does. With `convert_automatic`, a
    schedule type equal to the sampler's default becomes "Automatic".
    """
    default_sampler = all_samplers[0]
    found_scheduler = sd_schedulers.schedulers_map.get(scheduler_name, sd_schedulers.schedulers[0])
    name = sampler_name or default_sampler.name

    for scheduler in sd_schedulers.schedulers:
        for option in [scheduler.label, scheduler.name, *(scheduler.aliases or [])]:
            if name.lower().endswith(" " + option.lower()):
                found_scheduler = scheduler
                name = name[: -(len(option) + 1)]
                break

    sampler = find_sampler_config(name) or default_sampler
    if convert_automatic and sampler.options.get("scheduler") == found_scheduler.name:
        found_scheduler = sd_schedulers.schedulers[0]
    return sampler.name, found_scheduler.label


def get_sampler_from_infotext(d: Mapping[str, Any]) -> str:
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[0]


def get_scheduler_from_infotext(d: Mapping[str, Any]) -> str:
    return get_sampler_and_scheduler(d.get("Sampler"), d.get("Schedule type"))[1]


def get_hr_sampler_and_scheduler(d: Mapping[str, Any]) -> tuple[str, str]:
    """Hires sampler and schedule type from infotext fields, "Use same ..." where they equal the first pass's."""
    hr_sampler = d.get("Hires sampler", "Use same sampler")
    sampler = d.get("Sampler") if hr_sampler == "Use same sampler" else hr_sampler
    hr_scheduler = d.get("Hires schedule type", "Use same scheduler")
    scheduler = d.get("Schedule type") if hr_scheduler == "Use same scheduler" else hr_scheduler

    sampler, scheduler = get_sampler_and_scheduler(sampler, scheduler)
    sampler = sampler if sampler != d.get("Sampler") else "Use same sampler"
    scheduler = scheduler if scheduler != d.get("Schedule type") else "Use same scheduler"
    return sampler, scheduler


def get_hr_sampler_from_infotext(d: Mapping[str, Any]) -> str:
    return get_hr_sampler_and_scheduler(d)[0]


def get_hr_scheduler_from_infotext(d: Mapping[str, Any]) -> str:
    return get_hr_sampler_and_scheduler(d)[1]


def fix_p_invalid_sampler_and_scheduler(p: Any) -> None:
    """Normalise `p.sampler_name` / `p.scheduler` in place (legacy names, unknown values), logging a change."""
    i_sampler_name, i_scheduler = p.sampler_name, p.scheduler
    p.sampler_name, p.scheduler = get_sampler_and_scheduler(p.sampler_name, p.scheduler, convert_automatic=False)
    if p.sampler_name != i_sampler_name or i_scheduler != p.scheduler:
        log.warning(
            'Sampler Scheduler autocorrection: "%s" -> "%s", "%s" -> "%s"',
            i_sampler_name,
            p.sampler_name,
            i_scheduler,
            p.scheduler,
        )


def resolve_sampler_and_scheduler(sampler_name: str | None, scheduler_name: str | None) -> tuple[str, str]:
    """Strict version of get_sampler_and_scheduler for requests: an unknown sampler (after splitting a legacy
    "X Karras" name) is a NotFoundError listing the valid names instead of a silent fallback."""
    if sampler_name:
        base = sampler_name
        for scheduler in sd_schedulers.schedulers:
            for option in [scheduler.label, scheduler.name, *(scheduler.aliases or [])]:
                if base.lower().endswith(" " + option.lower()) and find_sampler_config(base) is None:
                    base = base[: -(len(option) + 1)]
        require_sampler_config(base)
    if scheduler_name and scheduler_name not in sd_schedulers.schedulers_map:
        known = [s.label for s in sd_schedulers.schedulers]
        lowered = {k.lower(): v.label for k, v in sd_schedulers.schedulers_map.items()}
        if scheduler_name.lower() not in lowered:
            raise NotFoundError(f"Schedule type {scheduler_name!r} not found. Use one of: {', '.join(known)}.")
        scheduler_name = lowered[scheduler_name.lower()]
    return get_sampler_and_scheduler(sampler_name, scheduler_name, convert_automatic=False)
