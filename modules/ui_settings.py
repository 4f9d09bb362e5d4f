"""The Settings tab: one page per section (built-in and extensions' `on_ui_settings` options), Apply settings,
and the hidden `#settings_json` the page's JavaScript reads `opts` from.

Options name their widget either as a string (the core's shared_options: "slider", "dropdown", ...) or as a
gradio class (extensions: `gr.Slider`); `component_args` may be a dict or a function returning one. Controls get
A1111's ids `setting_<key>`.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from modules import shared, ui_gradio_extensions
from modules.errors import UserError
from modules.options import OptionHTML, OptionInfo, categories

log = logging.getLogger(__name__)

_COMPONENTS = {
    "slider": gr.Slider, "dropdown": gr.Dropdown, "radio": gr.Radio, "checkboxgroup": gr.CheckboxGroup,
    "textbox": gr.Textbox, "number": gr.Number, "color": gr.ColorPicker, "checkbox": gr.Checkbox,
}


def _component_for(key: str, info: OptionInfo):
    """(gradio class, extra keyword arguments) for an option."""
    args = info.component_args() if callable(info.component_args) else dict(info.component_args or {})
    component = info.component
    if component == "multiselect":
        return gr.Dropdown, {**args, "multiselect": True}
    if isinstance(component, str):
        return _COMPONENTS.get(component, gr.Textbox), args
    if component is not None:
        return component, args
    default = info.default
    if isinstance(default, bool):
        return gr.Checkbox, args
    if isinstance(default, (int, float)):
        return gr.Number, args
    if isinstance(default, list):
        return gr.Dropdown, {**args, "multiselect": True, "allow_custom_value": True}
    return gr.Textbox, args


def create_setting_component(key: str, info: OptionInfo):
    """The control of one setting, with the current value."""
    if isinstance(info, OptionHTML):
        return gr.HTML(info.default, elem_id=f"setting_{key}", elem_classes="settings-info")
    cls, args = _component_for(key, info)
    value = shared.opts.data.get(key, info.default)
    if issubclass(cls, gr.Dropdown):
        args.setdefault("allow_custom_value", True)
    if issubclass(cls, gr.Textbox) and isinstance(value, list):
        value = ", ".join(map(str, value))
    kwargs: dict[str, Any] = {"label": info.label or key, "value": value, "elem_id": f"setting_{key}", **args}
    if key in shared.opts.frozen_keys:
        kwargs["interactive"] = False
    return cls(**kwargs)


def visible_sections() -> list[tuple[tuple, list[tuple[str, OptionInfo]]]]:
    """Sections in category order (then as declared), without the hidden ones (section id None)."""
    shared.opts.reorder()
    sections: dict[tuple, list] = {}
    for key, info in shared.opts.data_labels.items():
        section = info.section or ("uncategorized", "Uncategorized")
        if section[0] is None:
            continue
        sections.setdefault(tuple(section[:2]), []).append((key, info))
    order = {c: i for i, c in enumerate(categories.mapping)}

    def category_of(items):
        ids = [i.category_id for _, i in items if i.category_id]
        return order.get(ids[0], len(order)) if ids else len(order)

    return sorted(sections.items(), key=lambda kv: category_of(kv[1]))


def apply_settings(keys: list[str], values: list) -> str:
    """Set every changed value (each one validated by its onchange), save config.json, and report."""
    changed, errors = [], []
    for key, value in zip(keys, values, strict=True):
        info = shared.opts.data_labels.get(key)
        if info is None or info.do_not_save or key in shared.opts.frozen_keys:
            continue
        if isinstance(info.default, list) and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(info.default, int) and not isinstance(info.default, bool) and isinstance(value, float) \
                and value.is_integer():
            value = int(value)
        try:
            if shared.opts.set(key, value):
                changed.append(key)
        except UserError as e:
            errors.append(str(e))
        except Exception as e:
            log.exception("Setting %s failed", key)
            errors.append(f"{key}: {e}")
    shared.opts.save(shared.config_filename)
    text = f"{len(changed)} settings changed{': ' if changed else '.'}{', '.join(changed)}"
    if errors:
        text += "<br>" + "<br>".join(html.escape(e) for e in errors)
    return text


def create_settings_json():
    """The hidden `#settings_json` the page's `opts` comes from (script.js), as in A1111; it must sit outside
    the tabs (Gradio renders only the open tab). Refreshed on every page load and Apply settings."""
    return gr.Textbox(value=ui_gradio_extensions.settings_json, elem_id="settings_json", visible="hidden")


def create_ui(settings_json) -> None:
    """Build the Settings tab content inside the caller's gr.Tab."""
    with gr.Row():
        submit = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
    result = gr.HTML(elem_id="settings_result")
    keys, components = [], []
    with gr.Tabs(elem_id="settings"):
        for (section_id, label), items in visible_sections():
            with gr.Tab(label, id=f"settings_{section_id}", elem_id=f"settings_{section_id}"):
                with gr.Column(elem_id=f"column_settings_{section_id}"):
                    for key, info in items:
                        try:
                            component = create_setting_component(key, info)
                        except Exception:
                            log.exception("Could not create the control of setting %s", key)
                            continue
                        if not isinstance(info, OptionHTML):
                            keys.append(key)
                            components.append(component)
    def apply(*values):
        return apply_settings(keys, list(values)), ui_gradio_extensions.settings_json()

    submit.click(apply, inputs=components, outputs=[result, settings_json], api_visibility="private")
