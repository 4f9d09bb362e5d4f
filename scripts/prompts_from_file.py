"""Prompts from file or textbox: one job per line, with optional `--option value` settings per line
(modules/prompts_from_file.py)."""

import gradio as gr

from modules import prompts_from_file, scripts


def load_prompt_file(file):
    if file is None:
        return None, gr.update(), gr.update(lines=7)
    lines = [x.strip() for x in file.decode("utf8", errors="ignore").split("\n")]
    return None, "\n".join(lines), gr.update(lines=7)


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False,
                                       elem_id=self.elem_id("checkbox_iterate"))
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False,
                                             elem_id=self.elem_id("checkbox_iterate_batch"))
        prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the",
                                   elem_id=self.elem_id("prompt_position"), value="start")
        prompt_txt = gr.Textbox(label="List of prompt inputs", value="", lines=1,
                                elem_id=self.elem_id("prompt_txt"))
        file = gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file"))

        file.change(fn=load_prompt_file, inputs=[file], outputs=[file, prompt_txt, prompt_txt], show_progress=False,
                    api_visibility="private")
        # One line until something is typed; then seven with several lines, two otherwise (shrinking back to one
        # line would make Enter submit instead of adding a line).
        prompt_txt.change(lambda tb: gr.update(lines=7) if ("\n" in tb) else gr.update(lines=2), inputs=[prompt_txt],
                          outputs=[prompt_txt], show_progress=False, api_visibility="private")
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p, checkbox_iterate=False, checkbox_iterate_batch=False, prompt_position="start", prompt_txt=""):
        return prompts_from_file.run(p, checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt or "")
