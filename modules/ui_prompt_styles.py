"""The styles row under the prompts: the Styles dropdown, 🖌️ and its editor (a1111-spec §1.1).

Styles live in styles.csv (modules/styles.py: A1111's format, saved atomically with a .bak copy). A style's text
with `{prompt}` wraps the user's prompt; otherwise it is appended after ", ".
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from modules import shared, styles
from modules.errors import UserError
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

STYLES_INFO = ("Styles allow you to add custom text to prompt. Use the {prompt} token in style text, and it will be "
               "replaced with user's prompt when applying style. Otherwise, style's text will be added to the end of "
               "the prompt.")
edit_symbol = "\U0001f58c\ufe0f"  # 🖌️
apply_symbol = "\U0001f4cb"  # 📋
copy_symbol = "\U0001f4dd"  # 📝
refresh_symbol = "\U0001f504"  # 🔄


def style_names() -> list[str]:
    return list(shared.prompt_styles.styles) if shared.prompt_styles is not None else []


def select_style(name: str) -> tuple[str, str, dict]:
    """The editor's fields for the chosen style (empty for a new name); Delete only for existing ones."""
    style = shared.prompt_styles.styles.get(name) if name else None
    if style is None or style.is_divider:
        return "", "", gr.update(visible=False)
    return style.prompt, style.negative_prompt, gr.update(visible=True)


def save_style(name: str, prompt: str, negative_prompt: str) -> tuple[dict, str]:
    """Add or replace a style and write styles.csv; returns the Delete button's visibility and a message."""
    name = (name or "").strip()
    if not name:
        return gr.update(), "<span class='error'>Type a name for the style first.</span>"
    db = shared.prompt_styles
    existing = db.styles.get(name)
    if existing is not None and existing.is_divider:
        return gr.update(), "<span class='error'>That name is a divider, not a style.</span>"
    db.styles[name] = styles.PromptStyle(name, prompt or "", negative_prompt or "", existing.path if existing else None)
    try:
        db.save_styles()
    except UserError as e:
        return gr.update(), f"<span class='error'>{html.escape(str(e))}</span>"
    return gr.update(visible=True), f"Style {html.escape(name)} saved."


def delete_style(name: str) -> tuple[str, str, str, str]:
    db = shared.prompt_styles
    style = db.styles.get(name or "")
    if style is None or style.is_divider:
        return name, "", "", ""
    del db.styles[name]
    try:
        db.save_styles()
    except UserError as e:
        db.styles[name] = style
        return name, style.prompt, style.negative_prompt, f"<span class='error'>{html.escape(str(e))}</span>"
    return "", "", "", f"Style {html.escape(name)} deleted."


def materialize_styles(prompt: str, negative_prompt: str, selected: list[str]) -> tuple[str, str, list[str]]:
    """📋: write the selected styles into the prompts and clear the selection."""
    db = shared.prompt_styles
    return (db.apply_styles_to_prompt(prompt or "", selected or []),
            db.apply_negative_styles_to_prompt(negative_prompt or "", selected or []), [])


def refresh_styles() -> tuple[dict, dict]:
    shared.prompt_styles.reload()
    return gr.update(choices=style_names()), gr.update(choices=style_names())


class UiPromptStyles:
    """The Styles dropdown (its value is the styles applied at generation) and the editor dialog."""

    def __init__(self, tabname: str, main_ui_prompt, main_ui_negative_prompt):
        self.tabname = tabname
        with gr.Row(elem_id=f"{tabname}_styles_row"):
            self.dropdown = gr.Dropdown(label="Styles", show_label=False, elem_id=f"{tabname}_styles",
                                        choices=style_names(), value=[], multiselect=True,
                                        tooltip="Styles", scale=5)
            edit_button = ToolButton(value=edit_symbol, elem_id=f"{tabname}_styles_edit_button",
                                     tooltip="Edit styles")

        with gr.Group(elem_id=f"{tabname}_styles_dialog", elem_classes="popup-dialog", visible=False) as dialog:
            with gr.Row():
                self.selection = gr.Dropdown(label="Styles", elem_id=f"{tabname}_styles_edit_select",
                                             choices=style_names(), value=None, allow_custom_value=True,
                                             info=STYLES_INFO, scale=5)
                refresh = ToolButton(value=refresh_symbol, elem_id=f"{tabname}_styles_refresh",
                                     tooltip="Reload styles from file")
                apply_dialog = ToolButton(value=apply_symbol, elem_id=f"{tabname}_style_apply_dialog",
                                          tooltip="Apply all selected styles from the style selection dropdown in "
                                                  "main UI to the prompt.")
                copy = ToolButton(value=copy_symbol, elem_id=f"{tabname}_style_copy",
                                  tooltip="Copy main UI prompt to style.")
            self.prompt = gr.Textbox(value="", label="Prompt", show_label=True, lines=3,
                                     elem_id=f"{tabname}_edit_style_prompt")
            self.neg_prompt = gr.Textbox(value="", label="Negative prompt", show_label=True,
                                         elem_id=f"{tabname}_edit_style_neg_prompt", lines=3)
            with gr.Row():
                save = gr.Button("Save", variant="primary", elem_id=f"{tabname}_edit_style_save")
                delete = gr.Button("Delete", variant="primary", elem_id=f"{tabname}_edit_style_delete",
                                   visible=False)
                close = gr.Button("Close", variant="secondary", elem_id=f"{tabname}_edit_style_close")
            message = gr.HTML(elem_id=f"{tabname}_edit_style_message")

        private = {"api_visibility": "private", "show_progress": "hidden"}
        edit_button.click(fn=lambda: gr.update(visible=True), outputs=[dialog], **private)
        close.click(fn=lambda: (gr.update(visible=False), ""), outputs=[dialog, message], **private)
        self.selection.change(fn=select_style, inputs=[self.selection], outputs=[self.prompt, self.neg_prompt, delete],
                              **private)
        save.click(fn=save_style, inputs=[self.selection, self.prompt, self.neg_prompt], outputs=[delete, message],
                   **private).then(fn=lambda: (gr.update(choices=style_names()), gr.update(choices=style_names())),
                                   outputs=[self.dropdown, self.selection], **private)
        delete.click(fn=delete_style, inputs=[self.selection], outputs=[self.selection, self.prompt, self.neg_prompt,
                                                                        message], **private).then(
            fn=lambda: (gr.update(choices=style_names()), gr.update(choices=style_names())),
            outputs=[self.dropdown, self.selection], **private)
        refresh.click(fn=refresh_styles, outputs=[self.dropdown, self.selection], **private)
        copy.click(fn=lambda p, n: (p, n), inputs=[main_ui_prompt, main_ui_negative_prompt],
                   outputs=[self.prompt, self.neg_prompt], **private)
        apply_dialog.click(fn=materialize_styles, inputs=[main_ui_prompt, main_ui_negative_prompt, self.dropdown],
                           outputs=[main_ui_prompt, main_ui_negative_prompt, self.dropdown], **private).then(
            fn=lambda: gr.update(visible=False), outputs=[dialog], **private)

    def setup_apply_button(self, button, prompt, negative_prompt) -> None:
        """The top row's 📋 button applies the selected styles to the prompts."""
        button.click(fn=materialize_styles, inputs=[prompt, negative_prompt, self.dropdown],
                     outputs=[prompt, negative_prompt, self.dropdown], api_visibility="private",
                     show_progress="hidden")
