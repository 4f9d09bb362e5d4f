"""The paste registry: which UI field or setting each infotext label goes to (reference spec §6.4).

The UI binds components to the registry; `processing_args_from_infotext` maps a parsed infotext to processing
arguments and override settings without any UI (the paste button and the API's `infotext` field use it).
A1111 keeps these names in ``modules.infotext_utils``, which re-exports them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from modules import sd_samplers

log = logging.getLogger(__name__)


class PasteField(tuple):
    """A UI component and what to put in it: an infotext label, or a function ``params -> value``."""

    def __new__(cls, component: Any, target: str | Callable[[dict], Any], *, api: str | None = None):
        return super().__new__(cls, (component, target))

    def __init__(self, component: Any, target: str | Callable[[dict], Any], *, api: str | None = None):
        super().__init__()
        self.api = api
        self.component = component
        self.label = target if isinstance(target, str) else None
        self.function = target if callable(target) else None


class ParamBinding:
    """A "send to" button: where its infotext (text or image) comes from and which tab receives it."""

    def __init__(
        self,
        paste_button: Any,
        tabname: str,
        source_text_component: Any = None,
        source_image_component: Any = None,
        source_tabname: str | None = None,
        override_settings_component: Any = None,
        paste_field_names: list[str] | None = None,
    ):
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


paste_fields: dict[str, dict[str, Any]] = {}
registered_param_bindings: list[ParamBinding] = []


def reset() -> None:
    paste_fields.clear()
    registered_param_bindings.clear()


def add_paste_fields(tabname: str, init_img: Any, fields: list | None, override_settings_component: Any = None) -> None:
    """Register the paste targets of a tab; plain ``(component, target)`` tuples become `PasteField`s."""
    if fields:
        fields[:] = [f if isinstance(f, PasteField) else PasteField(*f) for f in fields]
    paste_fields[tabname] = {
        "init_img": init_img,
        "fields": fields,
        "override_settings_component": override_settings_component,
    }


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


# Infotext label -> setting key for settings that an infotext can carry (reference spec §3 / §6.4). Extensions
# append their own pairs here (A1111 API); settings declared with OptionInfo(infotext=...) are found too.
infotext_to_setting_name_mapping: list[tuple[str, str]] = [
    ("Model hash", "sd_model_checkpoint"),
    ("VAE", "sd_vae"),
    ("Clip skip", "CLIP_stop_at_last_layers"),
    ("Emphasis", "emphasis"),
    ("RNG", "randn_source"),
    ("Tiling", "tiling"),
    ("Hires refiner", "hires_fix_refiner_pass"),
    ("VAE Encoder", "sd_vae_encode_method"),
    ("VAE Decoder", "sd_vae_decode_method"),
    ("Face restoration", "face_restoration"),
    ("Conditional mask weight", "inpainting_mask_weight"),
    ("Noise multiplier", "initial_noise_multiplier"),
    ("Extra noise", "img2img_extra_noise"),
    ("NGMS", "s_min_uncond"),
    ("NGMS all steps", "s_min_uncond_all"),
    ("Token merging ratio", "token_merging_ratio"),
    ("Token merging ratio hr", "token_merging_ratio_hr"),
    ("Pad conds", "pad_cond_uncond"),
    ("Pad conds v0", "pad_cond_uncond_v0"),
    ("FP8 weight", "fp8_storage"),
    ("Cache FP16 weight for LoRA", "cache_fp16_weight"),
    ("Old prompt editing timelines", "use_old_scheduling"),
    ("Downcast alphas_cumprod", "use_downcasted_alpha_bar"),
    ("Refiner switch by sampling steps", "refiner_switch_by_sample_steps"),
    ("Eta DDIM", "eta_ddim"),
    ("Eta", "eta_ancestral"),
    ("Sigma churn", "s_churn"),
    ("Sigma tmin", "s_tmin"),
    ("Sigma tmax", "s_tmax"),
    ("Sigma noise", "s_noise"),
    ("Schedule min sigma", "sigma_min"),
    ("Schedule max sigma", "sigma_max"),
    ("Schedule rho", "rho"),
    ("ENSD", "eta_noise_seed_delta"),
    ("Discard penultimate sigma", "always_discard_next_to_last_sigma"),
    ("SGM noise multiplier", "sgm_noise_multiplier"),
    ("UniPC variant", "uni_pc_variant"),
    ("UniPC skip type", "uni_pc_skip_type"),
    ("UniPC order", "uni_pc_order"),
    ("UniPC lower order final", "uni_pc_lower_order_final"),
    ("Noise Schedule", "sd_noise_schedule"),
    ("Skip Early CFG", "skip_early_cond"),
    ("Beta schedule alpha", "beta_dist_alpha"),
    ("Beta schedule beta", "beta_dist_beta"),
]


def _setting_mapping(opts: Any) -> list[tuple[str, str]]:
    """Label -> key pairs from the settings' own ``infotext`` labels, then the module list, without repeats."""
    pairs = [
        (info.infotext, key)
        for key, info in getattr(opts, "data_labels", {}).items()
        if getattr(info, "infotext", None)
    ]
    return list(dict.fromkeys(pairs + infotext_to_setting_name_mapping))


def _cast_setting(opts: Any, key: str, value: Any) -> Any:
    """A pasted value in the type of the setting (A1111's Options.cast_value; "False" is the only false text)."""
    if hasattr(opts, "cast_value"):
        return opts.cast_value(key, value)
    if value is None:
        return None
    current = getattr(opts, key, None)
    if current is None:
        return None
    expected_type = type(current)
    if expected_type is bool and value == "False":
        return False
    return expected_type(value)


def get_override_settings(
    params: dict[str, Any], opts: Any, skip_fields: Iterable[str] | None = None
) -> list[tuple[str, str, Any]]:
    """``(label, setting key, value)`` for each infotext field that would change a setting's current value.

    ``Model hash`` is ignored when ``disable_weights_auto_swap`` is on; values that do not fit the setting's
    type are skipped with a warning.
    """
    skip = set(skip_fields or ())
    res = []
    for label, key in _setting_mapping(opts):
        if label in skip:
            continue
        value = params.get(label)
        if value is None:
            continue
        if key == "sd_model_checkpoint" and opts.disable_weights_auto_swap:
            continue
        try:
            value = _cast_setting(opts, key, value)
        except (TypeError, ValueError):
            log.warning('Infotext field "%s: %s" is not a valid value for setting %s; ignored', label, value, key)
            continue
        if value is None or value == getattr(opts, key, None):
            continue
        res.append((label, key, value))
    return res


def create_override_settings_dict(text_pairs: Iterable[str], opts: Any) -> dict[str, Any]:
    """``["Clip skip: 2", "ENSD: 31337"]`` (the override-settings selector) -> ``{setting key: value}``."""
    params = {}
    for pair in text_pairs:
        k, _, v = pair.partition(":")
        params[k] = v.strip()

    res = {}
    for label, key in _setting_mapping(opts):
        value = params.get(label)
        if value is None:
            continue
        try:
            res[key] = _cast_setting(opts, key, value)
        except (TypeError, ValueError):
            log.warning('Override "%s: %s" is not a valid value for setting %s; ignored', label, value, key)
    return res


# ---- a parsed infotext -> processing arguments (the paste button, the API's `infotext` request field) ----

MASK_MODES = ["Inpaint masked", "Inpaint not masked"]
MASKED_CONTENT = ["fill", "original", "latent noise", "latent nothing"]
INPAINT_AREAS = ["Whole picture", "Only masked"]


def _hires_enabled(params: dict[str, Any]) -> bool | None:
    # A1111 also counts the "Hires resize-1: 0" that parsing adds to every infotext (so any infotext with a
    # denoising strength would turn hires fix on); only hires keys the infotext really has count here.
    if "Denoising strength" not in params:
        return None
    resize = str(params.get("Hires resize-1", 0))
    return "Hires upscale" in params or "Hires upscaler" in params or resize not in ("0", "")


def _sampler(params: dict[str, Any]) -> str | None:
    return sd_samplers.get_sampler_from_infotext(params) if "Sampler" in params else None


def _scheduler(params: dict[str, Any]) -> str | None:
    if "Sampler" not in params and "Schedule type" not in params:
        return None
    return sd_samplers.get_scheduler_from_infotext(params)


def _unless(same: str, value: Any) -> Any:
    return None if value == same else value


def _hires_sampler(params: dict[str, Any]) -> str | None:
    return _unless("Use same sampler", sd_samplers.get_hr_sampler_and_scheduler(params)[0])


def _hires_scheduler(params: dict[str, Any]) -> str | None:
    return _unless("Use same scheduler", sd_samplers.get_hr_sampler_and_scheduler(params)[1])


def _hires_checkpoint(params: dict[str, Any]) -> Any:
    return _unless("Use same checkpoint", params.get("Hires checkpoint"))


def _choice_index(choices: list[str]) -> Callable[[Any], int]:
    return lambda value: choices.index(str(value))


def _styles(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("Styles array is not a list")
    return [str(x) for x in value]


# (processing argument, infotext label or function of the parsed dict, conversion). Argument names are those of
# StableDiffusionProcessingTxt2Img / Img2Img, which are also the API's request fields.
PROCESSING_ARGS_FROM_INFOTEXT: list[tuple[str, str | Callable[[dict], Any], Callable[[Any], Any]]] = [
    ("prompt", "Prompt", str),
    ("negative_prompt", "Negative prompt", str),
    ("steps", "Steps", int),
    ("sampler_name", _sampler, str),
    ("scheduler", _scheduler, str),
    ("cfg_scale", "CFG scale", float),
    ("seed", "Seed", int),
    ("width", "Size-1", int),
    ("height", "Size-2", int),
    ("batch_size", "Batch size", int),
    ("styles", "Styles array", _styles),
    ("subseed", "Variation seed", int),
    ("subseed_strength", "Variation seed strength", float),
    # "Seed resize from: WxH", so -1 is the width (A1111's API maps them the other way round, a known bug).
    ("seed_resize_from_w", "Seed resize from-1", int),
    ("seed_resize_from_h", "Seed resize from-2", int),
    ("denoising_strength", "Denoising strength", float),
    ("enable_hr", _hires_enabled, bool),
    ("hr_scale", "Hires upscale", float),
    ("hr_upscaler", "Hires upscaler", str),
    ("hr_second_pass_steps", "Hires steps", int),
    ("hr_resize_x", "Hires resize-1", int),
    ("hr_resize_y", "Hires resize-2", int),
    ("hr_checkpoint_name", _hires_checkpoint, str),
    ("hr_sampler_name", _hires_sampler, str),
    ("hr_scheduler", _hires_scheduler, str),
    ("hr_prompt", "Hires prompt", str),
    ("hr_negative_prompt", "Hires negative prompt", str),
    ("refiner_checkpoint", "Refiner", str),
    ("refiner_switch_at", "Refiner switch at", float),
    ("image_cfg_scale", "Image CFG scale", float),
    ("mask_blur", "Mask blur", int),
    ("inpainting_mask_invert", "Mask mode", _choice_index(MASK_MODES)),
    ("inpainting_fill", "Masked content", _choice_index(MASKED_CONTENT)),
    ("inpaint_full_res", "Inpaint area", lambda value: bool(_choice_index(INPAINT_AREAS)(value))),
    ("inpaint_full_res_padding", "Masked area padding", int),
]


def processing_args_from_infotext(params: dict[str, Any], opts: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a parsed infotext (`infotext_utils.parse_generation_parameters`) sets, as
    ``(keyword arguments for the processing class, override settings {setting key: value})`` (reference spec §6.4).

    Only arguments the infotext has are returned (img2img ones too, which the txt2img class ignores); sampler
    settings such as ENSD, RNG, Eta or Sigma churn become override settings when they differ from `opts`. A value
    that does not convert is skipped with a warning, as pasting does.
    """
    kwargs: dict[str, Any] = {}
    for name, source, convert in PROCESSING_ARGS_FROM_INFOTEXT:
        value = source(params) if callable(source) else params.get(source)
        if value is None:
            continue
        try:
            kwargs[name] = convert(value)
        except (TypeError, ValueError):
            log.warning("Infotext value %r for %s is not valid; ignored", value, name)
    overrides = {key: value for _label, key, value in get_override_settings(params, opts)}
    return kwargs, overrides
