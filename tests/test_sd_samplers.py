"""The sampler table, name/alias/legacy-name resolution and lookup errors (A1111 spec §5.1, parity README §5)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from modules import sd_samplers, sd_samplers_extra, sd_samplers_lcm, sd_samplers_timesteps_impl
from modules.errors import NotFoundError, UserError
from modules.k_diffusion import sampling

DATA = json.loads((Path(__file__).parent / "fixtures" / "samplers.json").read_text())

UI_ORDER = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC",
    "LCM",
]  # fmt: skip


def test_table_order_and_defaults():
    assert [s.name for s in sd_samplers.all_samplers] == UI_ORDER
    assert sd_samplers.samplers_for_img2img is sd_samplers.all_samplers
    assert sd_samplers.find_sampler_config(None).name == "DPM++ 2M"
    default_schedulers = {s.name: s.options.get("scheduler") for s in sd_samplers.all_samplers}
    assert default_schedulers == {
        "DPM++ 2M": "karras", "DPM++ SDE": "karras", "DPM++ 2M SDE": "exponential",
        "DPM++ 2M SDE Heun": "exponential", "DPM++ 2S a": "karras", "DPM++ 3M SDE": "exponential", "Euler a": None,
        "Euler": None, "LMS": None, "Heun": None, "DPM2": "karras", "DPM2 a": "karras", "DPM fast": None,
        "DPM adaptive": None, "Restart": "karras", "DDIM": None, "DDIM CFG++": None, "PLMS": None, "UniPC": None,
        "LCM": None,
    }  # fmt: skip


@pytest.mark.parametrize("run", DATA["runs"], ids=lambda r: f"{r['sampler']}-{r['scheduler']}-{r['steps']}")
def test_options_and_functions_match_the_parity_table(run):
    config = sd_samplers.find_sampler_config(run["sampler"])
    options = {k: v for k, v in config.options.items() if k != "scheduler"}
    assert options == run["sampler_options"]
    assert config.funcname == run["function"]


def test_functions_resolve():
    by_name = {s.name: s.constructor.function() for s in sd_samplers.all_samplers}
    assert by_name["Euler a"] is sampling.sample_euler_ancestral
    assert by_name["DPM++ 2M SDE Heun"] is sampling.sample_dpmpp_2m_sde
    assert by_name["Restart"] is sd_samplers_extra.restart_sampler
    assert by_name["LCM"] is sd_samplers_lcm.sample_lcm
    assert by_name["UniPC"] is sd_samplers_timesteps_impl.unipc
    assert sd_samplers.find_sampler_config("LCM").constructor.denoiser == "lcm"
    assert {
        s.constructor.sampler_class for s in sd_samplers.all_samplers if s.name.startswith(("DDIM", "PLMS", "Uni"))
    } == {"CompVisSampler"}


def test_total_steps_doubles_for_second_order():
    assert sd_samplers.find_sampler_config("Heun").total_steps(20) == 40
    assert sd_samplers.find_sampler_config("Euler").total_steps(20) == 20


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Euler a", "Euler a"),
        ("euler A", "Euler a"),
        ("k_euler_a", "Euler a"),
        ("k_euler_ancestral", "Euler a"),
        ("K_DPMPP_2M", "DPM++ 2M"),
        ("k_dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun"),
        ("restart", "Restart"),
        ("ddim_cfgpp", "DDIM CFG++"),
        ("k_lcm", "LCM"),
        ("unipc", "UniPC"),
    ],
)
def test_find_sampler_config_by_name_or_alias(name, expected):
    assert sd_samplers.find_sampler_config(name).name == expected
    assert sd_samplers.require_sampler_config(name).name == expected


def test_unknown_sampler():
    assert sd_samplers.find_sampler_config("Euler b") is None
    with pytest.raises(NotFoundError) as error:
        sd_samplers.require_sampler_config("Euler b")
    message = str(error.value)
    assert "'Euler b'" in message
    assert "DPM++ 2M, DPM++ SDE" in message and "UniPC, LCM" in message
    assert error.value.status_code == 404


@pytest.mark.parametrize(
    ("sampler", "scheduler", "convert", "expected"),
    [
        ("DPM++ 2M Karras", None, True, ("DPM++ 2M", "Automatic")),
        ("DPM++ 2M Karras", None, False, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", "Karras", True, ("DPM++ 2M", "Automatic")),
        ("DPM++ 2M", "karras", False, ("DPM++ 2M", "Karras")),
        ("DPM++ 2M", "Exponential", True, ("DPM++ 2M", "Exponential")),
        ("Euler a Karras", "Automatic", True, ("Euler a", "Karras")),
        ("LMS Karras", None, True, ("LMS", "Karras")),
        ("DPM2 a Karras", None, True, ("DPM2 a", "Automatic")),
        ("DPM++ 2M SDE Exponential", None, True, ("DPM++ 2M SDE", "Automatic")),
        ("DPM++ 2M SDE Heun Karras", None, True, ("DPM++ 2M SDE Heun", "Karras")),
        ("DPM++ 2M SGMUniform", None, True, ("DPM++ 2M", "SGM Uniform")),
        ("Euler Align Your Steps", None, True, ("Euler", "Align Your Steps")),
        ("k_euler_a", None, True, ("Euler a", "Automatic")),
        ("dpm++ 2m karras", None, False, ("DPM++ 2M", "Karras")),
        ("DDIM", None, True, ("DDIM", "Automatic")),
        ("DDIM CFG++", "Uniform", True, ("DDIM CFG++", "Uniform")),
        (None, None, True, ("DPM++ 2M", "Automatic")),
        ("no such sampler", "no such scheduler", True, ("DPM++ 2M", "Automatic")),
    ],
)
def test_get_sampler_and_scheduler(sampler, scheduler, convert, expected):
    assert sd_samplers.get_sampler_and_scheduler(sampler, scheduler, convert_automatic=convert) == expected


def test_infotext_helpers():
    d = {"Sampler": "DPM++ 2M Karras"}
    assert sd_samplers.get_sampler_from_infotext(d) == "DPM++ 2M"
    assert sd_samplers.get_scheduler_from_infotext(d) == "Automatic"
    assert sd_samplers.get_scheduler_from_infotext({"Sampler": "Euler", "Schedule type": "Karras"}) == "Karras"

    assert sd_samplers.get_hr_sampler_and_scheduler({"Sampler": "Euler", "Schedule type": "Karras"}) == (
        "Use same sampler",
        "Use same scheduler",
    )
    hires = {
        "Sampler": "Euler",
        "Schedule type": "Karras",
        "Hires sampler": "DPM++ 2M",
        "Hires schedule type": "Karras",
    }
    assert sd_samplers.get_hr_sampler_from_infotext(hires) == "DPM++ 2M"
    # Karras is DPM++ 2M's default, so the hires schedule resolves to Automatic, which differs from "Karras".
    assert sd_samplers.get_hr_scheduler_from_infotext(hires) == "Automatic"


def test_fix_p_invalid_sampler_and_scheduler(caplog):
    p = types.SimpleNamespace(sampler_name="DPM++ 2M Karras", scheduler="Automatic")
    sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
    assert (p.sampler_name, p.scheduler) == ("DPM++ 2M", "Karras")
    assert "autocorrection" in caplog.text

    caplog.clear()
    p = types.SimpleNamespace(sampler_name="Euler", scheduler="Automatic")
    sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
    assert (p.sampler_name, p.scheduler) == ("Euler", "Automatic")
    assert caplog.text == ""


def test_visible_sampler_names():
    assert sd_samplers.visible_sampler_names() == UI_ORDER
    visible = sd_samplers.visible_sampler_names(["PLMS", "DPM fast"])
    assert visible == [n for n in UI_ORDER if n not in ("PLMS", "DPM fast")]


@pytest.fixture
def fake_sampler_classes(monkeypatch):
    """Stand-ins for the integrator's sampler classes, which the table's constructors import lazily."""

    class Recorder:
        def __init__(self, funcname, model, denoiser="compvis"):
            self.funcname = funcname
            self.model = model
            self.denoiser = denoiser

    kdiffusion = types.ModuleType("modules.sd_samplers_kdiffusion")
    kdiffusion.KDiffusionSampler = type("KDiffusionSampler", (Recorder,), {})
    timesteps = types.ModuleType("modules.sd_samplers_timesteps")
    timesteps.CompVisSampler = type("CompVisSampler", (Recorder,), {})
    monkeypatch.setitem(sys.modules, "modules.sd_samplers_kdiffusion", kdiffusion)
    monkeypatch.setitem(sys.modules, "modules.sd_samplers_timesteps", timesteps)


def test_create_sampler(fake_sampler_classes):
    model = types.SimpleNamespace(is_sdxl=False)
    euler = sd_samplers.create_sampler("k_euler", model)
    assert type(euler).__name__ == "KDiffusionSampler"
    assert euler.funcname == "sample_euler" and euler.model is model
    assert euler.config.name == "Euler"

    assert sd_samplers.create_sampler("Restart", model).funcname is sd_samplers_extra.restart_sampler
    assert sd_samplers.create_sampler("LCM", model).funcname is sd_samplers_lcm.sample_lcm
    ddim = sd_samplers.create_sampler("DDIM", model)
    assert type(ddim).__name__ == "CompVisSampler"
    assert ddim.funcname is sd_samplers_timesteps_impl.ddim

    with pytest.raises(NotFoundError):
        sd_samplers.create_sampler("nope", model)


def test_extension_samplers_and_no_sdxl(fake_sampler_classes, monkeypatch):
    entry = sd_samplers.SamplerData("Mine", lambda model: types.SimpleNamespace(), ["my_alias"], {"no_sdxl": True})
    monkeypatch.setattr(sd_samplers, "all_samplers", [*sd_samplers.all_samplers, entry])
    sd_samplers.set_samplers()
    try:
        assert sd_samplers.find_sampler_config("MY_ALIAS") is entry
        assert entry.funcname is None
        assert sd_samplers.create_sampler("Mine", types.SimpleNamespace(is_sdxl=False)).config is entry
        with pytest.raises(UserError, match="SDXL"):
            sd_samplers.create_sampler("Mine", types.SimpleNamespace(is_sdxl=True))
    finally:
        monkeypatch.undo()
        sd_samplers.set_samplers()
    assert sd_samplers.find_sampler_config("Mine") is None
