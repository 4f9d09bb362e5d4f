"""The PNG Info tab (a1111-spec §1.6): every text item of an image (the `parameters` chunk first, then other
PNG text chunks and EXIF fields; JPEG/WebP carry the infotext in EXIF UserComment), shown escaped, and Send to
txt2img / img2img / inpaint / extras, which fill every field the infotext has (a1111-spec §6.4) and switch the
checkpoint by its hash unless disable_weights_auto_swap is on (the Override settings entry "Model hash").
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from modules import images, infotext_paste, ui_infotext
from modules.errors import UserError

log = logging.getLogger(__name__)


def run_pnginfo(image_path: Any) -> tuple[str, str, str]:
    """("", infotext, HTML listing every item) for an uploaded image."""
    if not image_path:
        return "", "", ""
    try:
        image = images.read(image_path)
    except UserError as e:
        return "", "", f"<div class='error'>{html.escape(str(e))}</div>"
    geninfo, items = images.read_info_from_image(image)
    items = {**({"parameters": geninfo} if geninfo else {}), **items}
    info = "".join(
        f"<div class='infotext'><p><b>{html.escape(str(key))}</b></p><p>"
        + "<br>\n".join(html.escape(line) for line in str(text).split("\n")) + "</p></div>\n"
        for key, text in items.items())
    return "", geninfo or "", info or "<div><p>Nothing found in the image.</p></div>"


def create_ui() -> None:
    with gr.Row(equal_height=False):
        with gr.Column(variant="panel"):
            image = gr.Image(elem_id="pnginfo_image", label="Source", sources=["upload", "clipboard"],
                             interactive=True, type="filepath", image_mode=None)
        with gr.Column(variant="panel"):
            html_info = gr.HTML(elem_id="pnginfo_html")
            generation_info = gr.Textbox(value="", visible="hidden", elem_id="pnginfo_generation_info")
            html_items = gr.HTML(elem_id="pnginfo_html2")
            with gr.Row():
                buttons = ui_infotext.create_buttons(["txt2img", "img2img", "inpaint", "extras"])
    for tabname, button in buttons.items():
        infotext_paste.register_paste_params_button(infotext_paste.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=generation_info,
            source_image_component=image))
    image.change(fn=run_pnginfo, inputs=[image], outputs=[html_info, generation_info, html_items],
                 api_name="pnginfo", show_progress="hidden")
