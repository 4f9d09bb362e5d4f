"""Callbacks extensions register with `on_*` and the app calls at fixed moments (a1111-spec §9.3).

A callback that raises is reported with its name and traceback, and the others still run. Each callback is named
`<extension>/<file>/<category>[/<name>]` ("base" outside extensions); an extension's metadata.ini can order them
with `[callbacks/<that name>] Before = … / After = …`, and a `prioritized_callbacks_<category>` setting (a list of
names) puts those first, as in A1111.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: Callable
    name: str | None = None


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class ExtraNoiseParams:
    def __init__(self, noise, x, xi):
        self.noise = noise
        self.x = x
        self.xi = xi


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


class UiTrainTabParams:
    def __init__(self, txt2img_preview_params):
        self.txt2img_preview_params = txt2img_preview_params


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


@dataclasses.dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


_CATEGORIES = [
    "callbacks_app_started", "callbacks_model_loaded", "callbacks_ui_tabs", "callbacks_ui_train_tabs",
    "callbacks_ui_settings", "callbacks_before_image_saved", "callbacks_image_saved", "callbacks_extra_noise",
    "callbacks_cfg_denoiser", "callbacks_cfg_denoised", "callbacks_cfg_after_cfg", "callbacks_before_component",
    "callbacks_after_component", "callbacks_image_grid", "callbacks_infotext_pasted", "callbacks_script_unloaded",
    "callbacks_before_ui", "callbacks_on_reload", "callbacks_list_optimizers", "callbacks_list_unets",
    "callbacks_before_token_counter",
]
callback_map: dict[str, list[ScriptCallback]] = {name: [] for name in _CATEGORIES}


ordered_callbacks_map: dict[str, list[ScriptCallback]] = {}


def _caller_script() -> str:
    """The file of the extension script that registers the callback (for reports and removal)."""
    for frame in inspect.stack()[2:]:
        if frame.filename != __file__:
            return frame.filename
    return "unknown"


def add_callback(callbacks: list[ScriptCallback], fun: Callable, *, name: str | None = None,
                 category: str = "unknown", filename: str | None = None) -> None:
    from modules import extensions

    filename = filename or _caller_script()
    extension = extensions.find_extension(filename)
    callback_name = f"{extension.canonical_name if extension else 'base'}/{os.path.basename(filename)}/{category}"
    if name is not None:
        callback_name += f"/{name}"
    unique_name = callback_name
    for index in range(1, 1000):
        if not any(c.name == unique_name for c in callbacks):
            break
        unique_name = f"{callback_name}-{index}"
    callbacks.append(ScriptCallback(filename, fun, unique_name))
    ordered_callbacks_map.clear()


def sort_callbacks(category: str, unordered: list[ScriptCallback], *, enable_user_sort: bool = True) -> list[ScriptCallback]:
    """metadata.ini Before/After instructions of every extension, then the user's priority setting."""
    from modules import extensions

    callbacks = list(unordered)
    lookup = {c.name: c for c in callbacks}
    instructions: dict[str, list] = {}
    for extension in extensions.extensions:
        for instruction in extension.metadata.list_callback_order_instructions():
            if instruction.name in lookup:
                instructions.setdefault(instruction.name, []).append(instruction)
    if instructions:
        dependencies: dict[str, list[str]] = {c.name: [] for c in callbacks}
        for callback in callbacks:
            for instruction in instructions.get(callback.name, []):
                dependencies[callback.name] += [x for x in instruction.after if x in lookup]
                for before in instruction.before:
                    if before in lookup:
                        dependencies[before].append(callback.name)
        callbacks = [lookup[name] for name in extensions.topological_sort(dependencies)]
    if enable_user_sort:
        from modules.options import current_opts

        for name in reversed(list(getattr(current_opts(), f"prioritized_callbacks_{category}", None) or [])):
            index = next((i for i, c in enumerate(callbacks) if c.name == name), None)
            if index is not None:
                callbacks.insert(0, callbacks.pop(index))
    return callbacks


def ordered_callbacks(category: str, unordered: list[ScriptCallback] | None = None, *,
                      enable_user_sort: bool = True) -> list[ScriptCallback]:
    """The callbacks of a category (e.g. "app_started") in their configured order (cached until they change)."""
    if unordered is None:
        unordered = callback_map.get(f"callbacks_{category}", [])
    if not enable_user_sort:
        return sort_callbacks(category, unordered, enable_user_sort=False)
    cached = ordered_callbacks_map.get(category)
    if cached is not None and len(cached) == len(unordered):
        return cached
    callbacks = sort_callbacks(category, unordered)
    ordered_callbacks_map[category] = callbacks
    return callbacks


def clear_callbacks() -> None:
    for callbacks in callback_map.values():
        callbacks.clear()
    ordered_callbacks_map.clear()


def remove_current_script_callbacks() -> None:
    script = _caller_script()
    for callbacks in callback_map.values():
        callbacks[:] = [c for c in callbacks if c.script != script]
    ordered_callbacks_map.clear()


def remove_callbacks_for_function(callback_func: Callable) -> None:
    for callbacks in callback_map.values():
        callbacks[:] = [c for c in callbacks if c.callback != callback_func]
    ordered_callbacks_map.clear()


def _run(category: str, *args: Any) -> list[Any]:
    results = []
    for c in ordered_callbacks(category.removeprefix("callbacks_")):
        try:
            results.append(c.callback(*args))
        except Exception:
            log.exception("Error executing callback %s for %s", category, os.path.basename(c.script))
    return results


# -- invocation (called by the app) ---------------------------------------------------------------
def app_started_callback(demo, app) -> None:
    _run("callbacks_app_started", demo, app)


def app_reload_callback() -> None:
    _run("callbacks_on_reload")


def model_loaded_callback(sd_model) -> None:
    _run("callbacks_model_loaded", sd_model)


def ui_tabs_callback() -> list:
    res = []
    for result in _run("callbacks_ui_tabs"):
        res += result or []
    return res


def ui_train_tabs_callback(params: UiTrainTabParams) -> None:
    _run("callbacks_ui_train_tabs", params)


def ui_settings_callback() -> None:
    _run("callbacks_ui_settings")


def before_image_saved_callback(params: ImageSaveParams) -> None:
    _run("callbacks_before_image_saved", params)


def image_saved_callback(params: ImageSaveParams) -> None:
    _run("callbacks_image_saved", params)


def extra_noise_callback(params: ExtraNoiseParams) -> None:
    _run("callbacks_extra_noise", params)


def cfg_denoiser_callback(params: CFGDenoiserParams) -> None:
    _run("callbacks_cfg_denoiser", params)


def cfg_denoised_callback(params: CFGDenoisedParams) -> None:
    _run("callbacks_cfg_denoised", params)


def cfg_after_cfg_callback(params: AfterCFGCallbackParams) -> None:
    _run("callbacks_cfg_after_cfg", params)


def before_component_callback(component, **kwargs) -> None:
    for c in ordered_callbacks("before_component"):
        try:
            c.callback(component, **kwargs)
        except Exception:
            log.exception("Error executing callback before_component for %s", os.path.basename(c.script))


def after_component_callback(component, **kwargs) -> None:
    for c in ordered_callbacks("after_component"):
        try:
            c.callback(component, **kwargs)
        except Exception:
            log.exception("Error executing callback after_component for %s", os.path.basename(c.script))


def image_grid_callback(params: ImageGridLoopParams) -> None:
    _run("callbacks_image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict) -> None:
    _run("callbacks_infotext_pasted", infotext, params)


def script_unloaded_callback() -> None:
    _run("callbacks_script_unloaded")


def before_ui_callback() -> None:
    _run("callbacks_before_ui")


def list_optimizers_callback() -> list:
    res: list = []
    _run("callbacks_list_optimizers", res)
    return res


def list_unets_callback() -> list:
    res: list = []
    _run("callbacks_list_unets", res)
    return res


def before_token_counter_callback(params: BeforeTokenCounterParams) -> None:
    _run("callbacks_before_token_counter", params)


# -- registration (called by extensions) ------------------------------------------------------------
def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def on_before_reload(callback, *, name=None):
    add_callback(callback_map["callbacks_on_reload"], callback, name=name, category="on_reload")


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name, category="model_loaded")


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_ui_train_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_train_tabs"], callback, name=name, category="ui_train_tabs")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def on_before_image_saved(callback, *, name=None):
    add_callback(callback_map["callbacks_before_image_saved"], callback, name=name, category="before_image_saved")


def on_image_saved(callback, *, name=None):
    add_callback(callback_map["callbacks_image_saved"], callback, name=name, category="image_saved")


def on_extra_noise(callback, *, name=None):
    add_callback(callback_map["callbacks_extra_noise"], callback, name=name, category="extra_noise")


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name, category="cfg_denoiser")


def on_cfg_denoised(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoised"], callback, name=name, category="cfg_denoised")


def on_cfg_after_cfg(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_after_cfg"], callback, name=name, category="cfg_after_cfg")


def on_before_component(callback, *, name=None):
    add_callback(callback_map["callbacks_before_component"], callback, name=name, category="before_component")


def on_after_component(callback, *, name=None):
    add_callback(callback_map["callbacks_after_component"], callback, name=name, category="after_component")


def on_image_grid(callback, *, name=None):
    add_callback(callback_map["callbacks_image_grid"], callback, name=name, category="image_grid")


def on_infotext_pasted(callback, *, name=None):
    add_callback(callback_map["callbacks_infotext_pasted"], callback, name=name, category="infotext_pasted")


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name, category="script_unloaded")


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")


def on_list_optimizers(callback, *, name=None):
    add_callback(callback_map["callbacks_list_optimizers"], callback, name=name, category="list_optimizers")


def on_list_unets(callback, *, name=None):
    add_callback(callback_map["callbacks_list_unets"], callback, name=name, category="list_unets")


def on_before_token_counter(callback, *, name=None):
    add_callback(callback_map["callbacks_before_token_counter"], callback, name=name, category="before_token_counter")
