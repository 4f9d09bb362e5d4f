"""Loopback: feed each img2img output back in as the next input (modules/loopback.py)."""

import gradio as gr

from modules import loopback, scripts


class Script(scripts.Script):
    def title(self):
        return "Loopback"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4, elem_id=self.elem_id("loops"))
        final_denoising_strength = gr.Slider(minimum=0, maximum=1, step=0.01, label="Final denoising strength",
                                             value=0.5, elem_id=self.elem_id("final_denoising_strength"))
        denoising_curve = gr.Dropdown(label="Denoising strength curve", choices=list(loopback.CURVES), value="Linear")
        append_interrogation = gr.Dropdown(label="Append interrogated prompt at each iteration",
                                           choices=["None", "CLIP", "DeepBooru"], value="None")
        return [loops, final_denoising_strength, denoising_curve, append_interrogation]

    def run(self, p, loops=4, final_denoising_strength=0.5, denoising_curve="Linear", append_interrogation="None"):
        return loopback.run(p, loops, final_denoising_strength, denoising_curve, append_interrogation)
