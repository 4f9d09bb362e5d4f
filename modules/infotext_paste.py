"""The paste registry: which UI field or setting each infotext label goes to (reference spec §6.4).

Data only; the UI binds components to it. A1111 keeps these names in ``modules.infotext_utils``, which
re-exports them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

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
