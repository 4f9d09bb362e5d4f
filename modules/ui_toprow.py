"""The top row of txt2img and img2img (a1111-spec §1.1): prompts with their "N/75" token counters, Generate /
Interrupt / Skip, ↙️ paste, 🗑️ clear, 📋 apply styles, 🌀 restore progress, and the styles row.

The page's JavaScript (javascript/ui.js, javascript/token-counter.js) shows the buttons that fit the job state,
counts tokens through /internal/token-count while typing, reads a dropped picture's infotext into the prompt and
offers "Generate forever" on Generate's context menu.
"""

from __future__ import annotations

import logging

import gradio as gr

from modules import shared, token_counter, ui_infotext, ui_prompt_styles
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

paste_symbol = "\u2199\ufe0f"  # ↙️
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
apply_style_symbol = "\U0001f4cb"  # 📋
restore_progress_symbol = "\U0001f300"  # 🌀
PROMPT_PLACEHOLDER = "Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"
NEGATIVE_PLACEHOLDER = "Negative prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)"


def interrupt() -> None:
    """Interrupt: with several images still to come (and interrupt_after_current), stop after the current one;
    a second click, or a single image, stops at once (a1111-spec §1.1)."""
    state = shared.state
    if state.job_count > 1 and shared.opts.interrupt_after_current and not state.stopping_generation:
        state.stop_generating()
        gr.Info("Generation will stop after finishing this image, click again to stop immediately.")
    else:
        state.interrupt()


def count_tokens_html(text: str, steps: float, styles: list[str] | None, is_positive: bool = True) -> str:
    try:
        return token_counter.update_token_counter(text or "", int(steps or 1), styles or [], is_positive=is_positive)
    except Exception as e:  # a counter must never break typing
        log.debug("Token count failed: %s", e)
        return ""


class Toprow:
    def __init__(self, is_img2img: bool):
        self.id_part = id_part = "img2img" if is_img2img else "txt2img"
        self.is_img2img = is_img2img
        with gr.Row(elem_id=f"{id_part}_toprow", variant="compact"):
            with gr.Column(elem_id=f"{id_part}_prompt_container", elem_classes=["prompt-container-compact"],
                           scale=6):
                with gr.Row(elem_id=f"{id_part}_prompt_row", elem_classes=["prompt-row"]):
                    self.prompt = gr.Textbox(value="", label="Prompt", elem_id=f"{id_part}_prompt", show_label=False,
                                             lines=3, placeholder=PROMPT_PLACEHOLDER, elem_classes=["prompt"])
                    self.prompt_img = gr.File(label="", elem_id=f"{id_part}_prompt_image", file_count="single",
                                              type="filepath", visible="hidden")
                with gr.Row(elem_id=f"{id_part}_neg_prompt_row", elem_classes=["prompt-row"]):
                    self.negative_prompt = gr.Textbox(value="", label="Negative prompt", show_label=False, lines=3,
                                                      elem_id=f"{id_part}_neg_prompt",
                                                      placeholder=NEGATIVE_PLACEHOLDER, elem_classes=["prompt"])

            with gr.Column(scale=1, elem_id=f"{id_part}_actions_column"):
                with gr.Row(elem_id=f"{id_part}_generate_box", elem_classes=["generate-box"]):
                    self.interrupt = gr.Button("Interrupt", elem_id=f"{id_part}_interrupt",
                                               elem_classes="generate-box-interrupt")
                    self.skip = gr.Button("Skip", elem_id=f"{id_part}_skip", elem_classes="generate-box-skip")
                    self.interrupting = gr.Button("Interrupting...", elem_id=f"{id_part}_interrupting",
                                                  elem_classes="generate-box-interrupting")
                    self.submit = gr.Button("Generate", elem_id=f"{id_part}_generate", variant="primary")
                with gr.Row(elem_id=f"{id_part}_tools"):
                    self.paste = ToolButton(value=paste_symbol, elem_id="paste",
                                            tooltip="Read generation parameters from prompt or last generation if "
                                                    "prompt is empty into user interface.")
                    self.clear_prompt_button = ToolButton(value=clear_prompt_symbol,
                                                          elem_id=f"{id_part}_clear_prompt",
                                                          tooltip="Clear prompt")
                    self.apply_styles = ToolButton(value=apply_style_symbol, elem_id=f"{id_part}_style_apply",
                                                   tooltip="Apply all selected styles to prompts.")
                    # style.css hides it until javascript/ui.js finds a task to re-attach to
                    self.restore_progress_button = ToolButton(value=restore_progress_symbol,
                                                              elem_id=f"{id_part}_restore_progress",
                                                              tooltip="Restore progress")
                    self.token_counter = gr.HTML(value="<span>0/75</span>", elem_id=f"{id_part}_token_counter",
                                                 elem_classes=["token-counter"])
                    self.token_button = gr.Button(visible="hidden", elem_id=f"{id_part}_token_button")
                    self.negative_token_counter = gr.HTML(value="<span>0/75</span>",
                                                          elem_id=f"{id_part}_negative_token_counter",
                                                          elem_classes=["token-counter"])
                    self.negative_token_button = gr.Button(visible="hidden",
                                                           elem_id=f"{id_part}_negative_token_button")
                self.ui_styles = ui_prompt_styles.UiPromptStyles(id_part, self.prompt, self.negative_prompt)
                self.ui_styles.setup_apply_button(self.apply_styles, self.prompt, self.negative_prompt)

        private = {"api_visibility": "private", "show_progress": "hidden"}
        self.interrupt.click(fn=interrupt, **private, queue=False)
        self.interrupting.click(fn=lambda: shared.state.interrupt(), **private, queue=False)
        self.skip.click(fn=lambda: shared.state.skip(), **private, queue=False)
        self.clear_prompt_button.click(fn=None, js="confirm_clear_prompt", inputs=[self.prompt, self.negative_prompt],
                                       outputs=[self.prompt, self.negative_prompt], **private)
        self.prompt_img.change(fn=lambda f: (ui_infotext.image_info(f) if f else gr.update(), None),
                               inputs=[self.prompt_img], outputs=[self.prompt, self.prompt_img], **private)

    def setup_token_counters(self, steps) -> None:
        """The hidden buttons A1111's JavaScript clicks to recount (the page uses /internal/token-count)."""
        private = {"api_visibility": "private", "show_progress": "hidden"}
        self.token_button.click(fn=lambda t, s, st: count_tokens_html(t, s, st, True),
                                inputs=[self.prompt, steps, self.ui_styles.dropdown], outputs=[self.token_counter],
                                **private)
        self.negative_token_button.click(fn=lambda t, s, st: count_tokens_html(t, s, st, False),
                                         inputs=[self.negative_prompt, steps, self.ui_styles.dropdown],
                                         outputs=[self.negative_token_counter], **private)
