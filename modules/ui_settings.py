"""The Settings tab (a1111-spec §1.9, §3) and the quicksettings row.

One page per section (built-in and extensions' `on_ui_settings` options) in category order, a search box (it
shows only the pages and settings whose label or key matches), Apply settings (saved atomically to config.json),
Reload UI, the Defaults page (ui-config.json) and Actions. Options name their widget either as a string (the
core's shared_options: "slider", "dropdown", ...) or as a gradio class (extensions: `gr.Slider`);
`component_args` may be a dict or a function returning one. Controls get A1111's ids `setting_<key>`.

Values are read again from `opts` when the tab is opened, so settings changed through the API show up.
Frozen settings (--freeze-settings, --freeze-settings-in-sections, --freeze-specific-settings) are shown
disabled; with --hide-ui-dir-config the folder settings are hidden.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import gradio as gr

from modules import call_queue, script_callbacks, sd_models, shared, ui_gradio_extensions
from modules.errors import UserError
from modules.options import OptionHTML, OptionInfo, categories
from modules.ui_common import create_refresh_button

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


def is_hidden(key: str) -> bool:
    return bool(shared.cmd_opts.hide_ui_dir_config and key in shared.restricted_opts)


def value_for_setting(key: str) -> Any:
    info = shared.opts.data_labels[key]
    value = shared.opts.data.get(key, info.default)
    cls, _args = _component_for(key, info)
    if issubclass(cls, gr.Textbox) and isinstance(value, list):
        value = ", ".join(map(str, value))
    return value


def create_setting_component(key: str, info: OptionInfo, is_quicksettings: bool = False):
    """The control of one setting, with the current value."""
    if isinstance(info, OptionHTML):
        return gr.HTML(info.default, elem_id=f"setting_{key}", elem_classes="settings-info")
    cls, args = _component_for(key, info)
    if issubclass(cls, gr.Dropdown):
        args.setdefault("allow_custom_value", True)
    kwargs: dict[str, Any] = {"label": info.label or key, "value": value_for_setting(key),
                              "elem_id": f"setting_{key}", **args}
    if issubclass(cls, (gr.CheckboxGroup, gr.Radio)):
        kwargs["choices"] = with_saved_values(kwargs.get("choices"), kwargs["value"])
    if key in shared.opts.frozen_keys:
        kwargs["interactive"] = False
    if is_hidden(key):
        kwargs["visible"] = False
    builtin = info.component is None or isinstance(info.component, str)
    if builtin and not is_quicksettings and (info.comment_before or info.comment_after):
        kwargs.setdefault("info", _plain(info.comment_before + info.comment_after))
    return cls(**kwargs)


def with_saved_values(choices: Any, value: Any) -> list:
    """Choices plus the saved values that are not among them (a model list that is empty on this machine, an
    entry of an older version): Gradio refuses a value outside the choices, which would fail Apply settings for
    every setting at once."""
    choices = list(choices or [])
    known = {c[1] if isinstance(c, tuple) else c for c in choices}
    values = value if isinstance(value, list) else [] if value is None else [value]
    return choices + [v for v in values if v not in known]


def _plain(comment: str) -> str | None:
    """An option's HTML comment as the control's info text (tags dropped: gradio shows info as text)."""
    return re.sub(r"<[^>]+>", "", comment).strip() or None


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


def section_tab_ids(sections: list) -> list[str]:
    """`settings_<section id>` per section; A1111 gives two sections the id "ui" (Live previews, User interface),
    so a repeated id gets a number (the page needs distinct ids to open a section)."""
    ids, seen = [], {}
    for (section_id, _label), _items in sections:
        seen[section_id] = seen.get(section_id, 0) + 1
        ids.append(f"settings_{section_id}" + (f"_{seen[section_id]}" if seen[section_id] > 1 else ""))
    return ids


def convert_value(key: str, value: Any) -> Any:
    """A control's value in the type of the setting (text → list, integral float → int)."""
    info = shared.opts.data_labels[key]
    if isinstance(info.default, list) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(info.default, int) and not isinstance(info.default, bool) and isinstance(value, float) \
            and value.is_integer():
        value = int(value)
    return value


def set_setting(key: str, value: Any) -> bool:
    """Set one setting; one whose onchange may load a model waits for the generation queue."""
    info = shared.opts.data_labels[key]
    if info.onchange is not None and value != shared.opts.data.get(key, info.default):
        return bool(call_queue.run_job(f"set {key}", shared.opts.set, key, value))
    return shared.opts.set(key, value)


def apply_settings(keys: list[str], values: list) -> str:
    """Set every changed value (each one validated by its onchange), save config.json, and report."""
    changed, errors = [], []
    for key, value in zip(keys, values, strict=True):
        info = shared.opts.data_labels.get(key)
        if info is None or info.do_not_save or key in shared.opts.frozen_keys or is_hidden(key):
            continue
        value = convert_value(key, value)
        if not shared.opts.same_type(value, info.default):
            errors.append(f"{info.label or key}: {value!r} is not a valid value")
            continue
        try:
            if set_setting(key, value):
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


def apply_single(key: str, value: Any):
    """A quicksetting changed: apply and save at once; on error the control shows the old value again."""
    value = convert_value(key, value)
    info = shared.opts.data_labels[key]
    message = ""
    if value is not None and shared.opts.same_type(value, info.default):
        try:
            if set_setting(key, value):
                shared.opts.save(shared.config_filename)
        except UserError as e:
            message = f"<div class='error'>{html.escape(str(e))}</div>"
    return gr.update(value=value_for_setting(key)), ui_gradio_extensions.settings_json(), message


def create_settings_json():
    """The hidden `#settings_json` the page's `opts` comes from (script.js), as in A1111; it must sit outside
    the tabs (Gradio renders only the open tab). Refreshed on every page load and Apply settings."""
    return gr.Textbox(value=ui_gradio_extensions.settings_json, elem_id="settings_json", visible="hidden")


def search_updates(query: str, sections: list, components: dict[str, Any]) -> list:
    """Visibility of every section tab and setting for a search (empty: everything), then the section tabs'
    selection: the first section with a match is opened."""
    query = (query or "").strip().lower()
    tab_updates, setting_updates = [], []
    first_match = None
    for tab_id, (_section, items) in zip(section_tab_ids(sections), sections, strict=True):
        matched = 0
        for key, info in items:
            if key not in components:
                continue
            hit = not query or query in (info.label or "").lower() or query in key.lower()
            matched += hit
            setting_updates.append(gr.update(visible=hit and not is_hidden(key)))
        tab_updates.append(gr.update(visible=bool(matched)))
        if matched and first_match is None:
            first_match = tab_id
    selection = gr.update(selected=first_match) if query and first_match else gr.update()
    return tab_updates + setting_updates + [selection]


class UiSettings:
    """Settings tab and quicksettings; `components` maps setting keys to their controls."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.quicksettings: dict[str, Any] = {}
        self.settings_json = None
        self.message = None
        self.sections: list = []
        self.loadsave = None

    def create_quicksettings(self) -> None:
        """The row above the tabs (quicksettings_list; default checkpoint, VAE and clip skip)."""
        with gr.Row(elem_id="quicksettings", variant="compact"):
            for key in shared.opts.quicksettings_list:
                info = shared.opts.data_labels.get(key)
                if info is None or isinstance(info, OptionHTML):
                    continue
                component = create_setting_component(key, info, is_quicksettings=True)
                self.quicksettings[key] = component
                if info.refresh is not None:
                    create_refresh_button(component, info.refresh, info.component_args, f"refresh_{key}")
        self.message = gr.HTML(elem_id="quicksettings_message")

    def create_ui(self, loadsave) -> None:
        """Build the Settings tab content inside the caller's gr.Tab."""
        self.loadsave = loadsave
        with gr.Row():
            with gr.Column(scale=6):
                self.submit = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
            with gr.Column():
                self.restart_gradio = gr.Button("Reload UI", variant="primary", elem_id="settings_restart_gradio")
        self.result = gr.HTML(elem_id="settings_result")
        self.search = gr.Textbox(label="Search", show_label=False, placeholder="Search...",
                                 elem_id="settings_search", max_lines=1)
        self.sections = visible_sections()
        self.section_tabs = []
        with gr.Tabs(elem_id="settings") as self.tabs:
            for tab_id, ((_section_id, label), items) in zip(section_tab_ids(self.sections), self.sections,
                                                             strict=True):
                with gr.Tab(label, id=tab_id, elem_id=tab_id) as tab:
                    with gr.Column(elem_id=f"column_{tab_id}"):
                        for key, info in items:
                            try:
                                component = create_setting_component(key, info)
                            except Exception:
                                log.exception("Could not create the control of setting %s", key)
                                continue
                            if not isinstance(info, OptionHTML):
                                self.components[key] = component
                self.section_tabs.append(tab)
            with gr.Tab("Defaults", id="defaults", elem_id="settings_tab_defaults"):
                loadsave.create_ui()
            with gr.Tab("Actions", id="actions", elem_id="settings_tab_actions"):
                with gr.Row():
                    self.unload = gr.Button("Unload SD checkpoint to RAM", elem_id="sett_unload_sd_model")
                    self.reload = gr.Button("Load SD checkpoint to VRAM from RAM", elem_id="sett_reload_sd_model")
                with gr.Row():
                    self.calculate_hashes = gr.Button("Calculate hash for all checkpoint",
                                                      elem_id="calculate_all_checkpoint_hash")
                self.actions_result = gr.HTML(elem_id="settings_actions_result")

    def add_functionality(self, demo, settings_tab) -> None:
        keys = list(self.components)
        components = [self.components[k] for k in keys]
        private = {"api_visibility": "private", "show_progress": "hidden"}

        def apply(*values):
            return apply_settings(keys, list(values)), ui_gradio_extensions.settings_json()

        def current_values():
            return [value_for_setting(k) for k in keys]

        self.submit.click(fn=apply, inputs=components, outputs=[self.result, self.settings_json], **private).then(
            fn=lambda: [value_for_setting(k) for k in self.quicksettings], outputs=list(self.quicksettings.values()),
            **private)
        # Opening the tab shows the current values (they may have been changed through the API).
        settings_tab.select(fn=current_values, outputs=components, **private)
        self.search.change(fn=lambda q: search_updates(q, self.sections, self.components), inputs=[self.search],
                           outputs=self.section_tabs + [self.components[k] for _, items in self.sections
                                                        for k, _ in items if k in self.components] + [self.tabs],
                           **private)
        self.restart_gradio.click(fn=request_reload_ui, **private).then(fn=None, js="restart_reload", **private)
        self.unload.click(fn=unload_checkpoint, outputs=[self.actions_result], **private)
        self.reload.click(fn=reload_checkpoint, outputs=[self.actions_result], **private)
        self.calculate_hashes.click(fn=calculate_all_hashes, outputs=[self.actions_result], **private)

        for key, component in self.quicksettings.items():
            event = component.release if isinstance(component, gr.Slider) else component.input
            event(fn=lambda value, k=key: apply_single(k, value), inputs=[component],
                  outputs=[component, self.settings_json, self.message], **private)

        # The page shows config.json as it is now (a reload after an API change).
        quick_keys = list(self.quicksettings)
        demo.load(fn=lambda: [value_for_setting(k) for k in quick_keys] + [ui_gradio_extensions.settings_json()],
                  outputs=[self.quicksettings[k] for k in quick_keys] + [self.settings_json], **private)

        checkpoint = self.quicksettings.get("sd_model_checkpoint")
        if checkpoint is not None:
            # A checkpoint card sets `desiredCheckpointName` in the page and presses this button.
            button = gr.Button("Change checkpoint", elem_id="change_checkpoint", visible="hidden")
            button.click(fn=lambda value: apply_single("sd_model_checkpoint", value),
                         js="(v) => { const r = desiredCheckpointName; desiredCheckpointName = ''; return r || v; }",
                         inputs=[checkpoint], outputs=[checkpoint, self.settings_json, self.message], **private)


def request_reload_ui() -> None:
    """Reload UI: the server rebuilds the page (scripts and extensions reloaded) and the browser reloads."""
    script_callbacks.app_reload_callback()
    shared.state.server_command = "reload-ui"


def unload_checkpoint() -> str:
    call_queue.run_job("unload checkpoint", sd_models.unload_model_weights)
    return "Checkpoint unloaded."


def reload_checkpoint() -> str:
    try:
        call_queue.run_job("load checkpoint", sd_models.model_data.get_sd_model)
    except UserError as e:
        return f"<div class='error'>{html.escape(str(e))}</div>"
    return "Checkpoint loaded."


def calculate_all_hashes() -> str:
    missing = [info for info in sd_models.checkpoints_list.values() if info.shorthash is None]
    for info in missing:
        info.calculate_shorthash()
    return f"Calculated {len(missing)} hashes." if missing else "All checkpoint hashes are known."
