"""Outpainting mk2: grow the canvas and fill the new area with noise matched to the image, then inpaint it
(modules/outpainting.py)."""

import gradio as gr

from modules import outpainting, scripts


class Script(scripts.Script):
    def title(self):
        return "Outpainting mk2"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        if not is_img2img:
            return None
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Recommended settings: Sampling Steps: 80-100, Sampler: "
                       "Euler a, Denoising strength: 0.8</p>")
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=8,
                              elem_id=self.elem_id("mask_blur"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(outpainting.DIRECTIONS),
                                     value=list(outpainting.DIRECTIONS), elem_id=self.elem_id("direction"))
        noise_q = gr.Slider(label="Fall-off exponent (lower=higher detail)", minimum=0.0, maximum=4.0, step=0.01,
                            value=1.0, elem_id=self.elem_id("noise_q"))
        color_variation = gr.Slider(label="Color variation", minimum=0.0, maximum=1.0, step=0.01, value=0.05,
                                    elem_id=self.elem_id("color_variation"))
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(self, p, _, pixels=128, mask_blur=8, direction=outpainting.DIRECTIONS, noise_q=1.0, color_variation=0.05):
        return outpainting.run_mk2(p, pixels, mask_blur, direction, noise_q, color_variation)
