"""ui-config.json: the user's defaults for the page's controls (a1111-spec §3), A1111's `modules.ui_loadsave`.

Keys are "<tab>/<label>/<field>" (field: value, visible, minimum, maximum, step), e.g.
"txt2img/Sampling steps/value"; a gr.Tabs' chosen tab is "<tab>/Tabs@<elem_id>/selected"; a script's controls
are "customscript/<file>.py/<tab>/<label>/<field>". At the first start the file is written with every
control's default; afterwards its values replace the defaults while the page is built. Settings > Defaults shows
which controls now differ from the file and writes them (atomically).
"""

from __future__ import annotations

import html
import json
import logging
import os
from typing import Any

import gradio as gr

from modules.fileio import atomic_write_text

log = logging.getLogger(__name__)

FIELDS = ("value", "visible", "minimum", "maximum", "step")
SKIPPED_TYPES = (gr.File, gr.Image, gr.ImageEditor, gr.Gallery, gr.HTML, gr.Button, gr.State, gr.Files)


class UiLoadsave:
    def __init__(self, filename: str):
        self.filename = filename
        self.ui_settings: dict[str, Any] = {}
        self.component_mapping: dict[str, Any] = {}
        self.error_loading = False
        self.finalized_ui = False
        self.ui_defaults_view = None
        self.ui_defaults_apply = None
        self.ui_defaults_review = None
        try:
            self.ui_settings = self.read_from_file()
        except (OSError, ValueError) as e:
            self.error_loading = True
            log.error("Could not read %s (%s); using built-in defaults and not overwriting it.", filename, e)

    def read_from_file(self) -> dict[str, Any]:
        if not os.path.isfile(self.filename):
            return {}
        with open(self.filename, encoding="utf8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data

    def write_to_file(self, current: dict[str, Any]) -> None:
        atomic_write_text(self.filename, json.dumps(current, indent=4, ensure_ascii=False))

    def add_component(self, path: str, x: Any) -> None:
        """Record the control's defaults under `path` and apply the saved ones."""
        if self.finalized_ui:
            return

        def apply_field(obj: Any, field: str, condition=None) -> None:
            key = f"{path}/{field}"
            if getattr(obj, "custom_script_source", None) is not None:
                key = f"customscript/{obj.custom_script_source}/{key}"
            if getattr(obj, "do_not_save_to_config", False):
                return
            saved = self.ui_settings.get(key)
            if saved is None:
                self.ui_settings[key] = getattr(obj, field)
            elif condition and not condition(saved):
                pass
            else:
                if isinstance(x, gr.Textbox) and field == "value":
                    saved = str(saved)
                elif isinstance(x, gr.Number) and field == "value":
                    try:
                        saved = float(saved)
                    except ValueError:
                        return
                setattr(obj, field, saved)
            if field == "value" and key not in self.component_mapping:
                self.component_mapping[key] = obj

        if isinstance(x, (gr.Textbox, gr.Number, gr.Checkbox, gr.Slider, gr.Radio, gr.Dropdown, gr.CheckboxGroup,
                          gr.ColorPicker)):
            apply_field(x, "visible")
        if isinstance(x, gr.Slider):
            for field in ("value", "minimum", "maximum", "step"):
                apply_field(x, field)
        elif isinstance(x, gr.Radio):
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in x.choices or []]
            apply_field(x, "value", lambda v: v in choices)
        elif isinstance(x, gr.Dropdown):
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in x.choices or []]

            def valid(v: Any) -> bool:
                if getattr(x, "multiselect", False):
                    return isinstance(v, list) and all(i in choices for i in v)
                return v in choices or getattr(x, "allow_custom_value", False)

            apply_field(x, "value", valid)
        elif isinstance(x, gr.CheckboxGroup):
            choices = [c[1] if isinstance(c, (tuple, list)) else c for c in x.choices or []]
            apply_field(x, "value", lambda v: isinstance(v, list) and all(i in choices for i in v))
        elif isinstance(x, (gr.Textbox, gr.Number, gr.Checkbox, gr.ColorPicker)):
            apply_field(x, "value")

    def add_tabs(self, key: str, tabs: Any) -> None:
        """A gr.Tabs' open tab: recorded as its default, or chosen from the file when that tab exists."""
        ids = [t.id for t in tabs.children if isinstance(t, gr.Tab)]
        saved = self.ui_settings.get(key)
        if saved is None:
            self.ui_settings[key] = tabs.selected
        elif saved in ids:
            tabs.selected = saved

    def add_block(self, x: Any, path: str = "") -> None:
        """Walk a block tree: every labelled input control and every gr.Tabs."""
        if hasattr(x, "children"):
            if isinstance(x, gr.Tabs) and x.elem_id is not None:
                self.add_tabs(f"{path}/Tabs@{x.elem_id}/selected", x)
            for child in x.children:
                self.add_block(child, path)
        elif getattr(x, "label", None) is not None and not isinstance(x, SKIPPED_TYPES):
            self.add_component(f"{path}/{x.label}", x)

    def dump_defaults(self) -> None:
        """Write the file at the first start (never over a file that could not be read)."""
        if self.error_loading and os.path.exists(self.filename):
            return
        if not os.path.isfile(self.filename):
            self.write_to_file(self.ui_settings)

    def iter_changes(self, current: dict[str, Any], values: list[Any]):
        """(path, old, new) for each registered control whose value differs from the file's."""
        for (path, component), new_value in zip(self.component_mapping.items(), values, strict=False):
            old_value = current.get(path)
            if isinstance(component, gr.Radio) and getattr(component, "type", "value") == "index" \
                    and isinstance(new_value, int):
                choices = [c[1] if isinstance(c, (tuple, list)) else c for c in component.choices or []]
                new_value = choices[new_value] if 0 <= new_value < len(choices) else new_value
            if isinstance(new_value, float) and isinstance(old_value, int) and new_value.is_integer():
                new_value = int(new_value)
            if old_value == new_value:
                continue
            if old_value is None and new_value in ("", []):
                continue
            yield path, old_value, new_value

    def ui_view(self, *values) -> str:
        rows = "".join(
            f"<tr><td><b>{html.escape(path)}</b></td><td>{html.escape(str(old) if old is not None else '<i>None</i>')}"
            f"</td><td>{html.escape(str(new))}</td></tr>"
            for path, old, new in self.iter_changes(self.read_from_file(), list(values)))
        if not rows:
            return "No changes"
        return (f"<table><thead><tr><th>Path</th><th>Old value</th><th>New value</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")

    def ui_apply(self, *values) -> str:
        current = self.read_from_file()
        changed = 0
        for path, _, new_value in self.iter_changes(current.copy(), list(values)):
            current[path] = new_value
            changed += 1
        self.write_to_file(current)
        return f"Wrote {changed} changes."

    def create_ui(self) -> None:
        """The Defaults page (inside the caller's gr.Tab)."""
        gr.HTML(f"This page allows you to change default values in UI elements on other tabs.<br />Make your "
                f"changes, press 'View changes' to review the changed default values,<br />then press 'Apply' to "
                f"write them to {html.escape(os.path.basename(self.filename))}.<br />New values will appear in UI "
                "only after you reload UI.")
        with gr.Row():
            self.ui_defaults_view = gr.Button(value="View changes", elem_id="ui_defaults_view", variant="secondary")
            self.ui_defaults_apply = gr.Button(value="Apply", elem_id="ui_defaults_apply", variant="primary")
        self.ui_defaults_review = gr.HTML("")

    def setup_ui(self) -> None:
        """Wire the Defaults page's buttons to every registered control (call after the whole page is built)."""
        assert not self.finalized_ui
        self.finalized_ui = True
        components = list(self.component_mapping.values())
        private = {"api_visibility": "private", "show_progress": "hidden"}
        self.ui_defaults_view.click(fn=self.ui_view, inputs=components, outputs=[self.ui_defaults_review], **private)
        self.ui_defaults_apply.click(fn=self.ui_apply, inputs=components, outputs=[self.ui_defaults_review],
                                     **private)
