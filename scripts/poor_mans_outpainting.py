"""Poor man's outpainting: paste the image on a larger canvas and inpaint the border tiles
(modules/outpainting.py)."""

import gradio as gr

from modules import outpainting, scripts


class Script(scripts.Script):
    def title(self):
        return "Poor man's outpainting"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        if not is_img2img:
            return None
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4,
                              elem_id=self.elem_id("mask_blur"))
        inpainting_fill = gr.Radio(label="Masked content", choices=["fill", "original", "latent noise",
                                                                    "latent nothing"],
                                   value="fill", type="index", elem_id=self.elem_id("inpainting_fill"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(outpainting.DIRECTIONS),
                                     value=list(outpainting.DIRECTIONS), elem_id=self.elem_id("direction"))
        return [pixels, mask_blur, inpainting_fill, direction]

    def run(self, p, pixels=128, mask_blur=4, inpainting_fill=0, direction=outpainting.DIRECTIONS):
        return outpainting.run_poor_mans(p, pixels, mask_blur, inpainting_fill, direction)
