"""SD upscale: enlarge the image with an upscaler, then re-draw it tile by tile with img2img (modules/sd_upscale.py).

Arguments as A1111's: [info, tile overlap, upscaler (index, or name from API callers), scale factor].
"""

import gradio as gr

from modules import scripts, sd_upscale, shared, upscaler


class Script(scripts.Script):
    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        names = [x.name for x in (shared.sd_upscalers or upscaler.load_upscalers())]
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the selected scale factor; use "
                       "width and height sliders to set tile size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                            elem_id=self.elem_id("overlap"))
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0,
                                 elem_id=self.elem_id("scale_factor"))
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[0] if names else None, type="index",
                                  elem_id=self.elem_id("upscaler_index"))
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p, _, overlap=64, upscaler_index=0, scale_factor=2.0):
        return sd_upscale.sd_upscale(p, overlap, upscaler_index, scale_factor)
