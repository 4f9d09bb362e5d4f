"""The Extras tab (a1111-spec §1.5): Single Image / Batch Process / Batch from Directory, the Upscale operation
(Scale by / Scale to, upscaler 1 and 2 with visibility), then each extension postprocessing script's controls
(`scripts.scripts_postproc`, one row each, as A1111), Generate, and the output panel. The work is
modules/postprocessing.py's; face restoration is not provided.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from modules import infotext_paste, postprocessing, scripts, shared, ui_common, ui_generation
from modules.ui_components import FormRow, InputAccordion, ToolButton

log = logging.getLogger(__name__)

switch_values_symbol = "\u21c5"  # ⇅
FIELDS = ["extras_mode", "image", "image_batch", "input_dir", "output_dir", "show_extras_results", "upscale_enabled",
          "upscale_mode", "upscale_by", "max_side_length", "upscale_to_width", "upscale_to_height", "upscale_crop",
          "upscaler_1_name", "upscaler_2_name", "upscaler_2_visibility", "id_task"]


def upscaler_names() -> list[str]:
    return [u.name for u in shared.sd_upscalers]


def run(*args) -> tuple:
    """FIELDS' values, then the postprocessing scripts' control values."""
    values = dict(zip(FIELDS, args[:len(FIELDS)], strict=True))
    script_args = list(args[len(FIELDS):])

    def job():
        upscale = postprocessing.UpscaleArgs(
            upscale_enabled=bool(values["upscale_enabled"]), upscale_mode=int(values["upscale_mode"] or 0),
            upscale_by=float(values["upscale_by"]), max_side_length=int(values["max_side_length"] or 0),
            upscale_to_width=int(values["upscale_to_width"]), upscale_to_height=int(values["upscale_to_height"]),
            upscale_crop=bool(values["upscale_crop"]), upscaler_1_name=values["upscaler_1_name"],
            upscaler_2_name=values["upscaler_2_name"],
            upscaler_2_visibility=float(values["upscaler_2_visibility"] or 0))
        return postprocessing.run_postprocessing(
            int(values["extras_mode"] or 0), values["image"], values["image_batch"], values["input_dir"] or "",
            values["output_dir"] or "", bool(values["show_extras_results"]), upscale, script_args=script_args)

    return ui_generation.run_as_task("extras", values["id_task"], job, 3)


def create_ui() -> None:
    tab = "extras"
    private = {"api_visibility": "private", "show_progress": "hidden"}
    extras_mode = gr.Number(value=0, precision=0, visible="hidden", label="Extras mode", elem_id="extras_mode")
    upscale_mode = gr.Number(value=0, precision=0, visible="hidden", label="Upscale mode",
                             elem_id="extras_upscale_mode")
    id_task = gr.Textbox(value="", visible="hidden", label="id_task", elem_id=f"{tab}_id_task")
    for hidden in (extras_mode, upscale_mode, id_task):
        hidden.do_not_save_to_config = True
    dir_interactive = not shared.cmd_opts.hide_ui_dir_config
    with gr.Row(equal_height=False, variant="compact"):
        with gr.Column(variant="compact"):
            with gr.Tabs(elem_id="mode_extras"):
                with gr.Tab("Single Image", id="single_image", elem_id="extras_single_tab") as tab_single:
                    image = gr.Image(label="Source", sources=["upload", "clipboard"], interactive=True, type="pil",
                                     elem_id="extras_image", image_mode="RGBA")
                with gr.Tab("Batch Process", id="batch_process", elem_id="extras_batch_process_tab") as tab_batch:
                    image_batch = gr.Files(label="Batch Process", interactive=True, elem_id="extras_image_batch")
                with gr.Tab("Batch from Directory", id="batch_from_directory",
                            elem_id="extras_batch_directory_tab") as tab_batch_dir:
                    input_dir = gr.Textbox(value="", label="Input directory", interactive=dir_interactive,
                                           placeholder="A directory on the same machine where the server is running.",
                                           elem_id="extras_batch_input_dir")
                    output_dir = gr.Textbox(value="", label="Output directory", interactive=dir_interactive,
                                            placeholder="Leave blank to save images to the default path.",
                                            elem_id="extras_batch_output_dir")
                    show_extras_results = gr.Checkbox(label="Show result images", value=True,
                                                      elem_id="extras_show_extras_results")

            with InputAccordion(True, label="Upscale", elem_id="extras_upscale") as upscale_enabled:
                with FormRow():
                    upscaler_1 = gr.Dropdown(label="Upscaler 1", elem_id="extras_upscaler_1",
                                             choices=upscaler_names(), value="None")
                with FormRow():
                    upscaler_2 = gr.Dropdown(label="Upscaler 2", elem_id="extras_upscaler_2",
                                             choices=upscaler_names(), value="None")
                    upscaler_2_visibility = gr.Slider(minimum=0.0, maximum=1.0, step=0.001,
                                                      label="Upscaler 2 visibility", value=0.0,
                                                      elem_id="extras_upscaler_2_visibility")
                with gr.Tabs(elem_id="extras_resize_mode"):
                    with gr.Tab("Scale by", id="scale_by", elem_id="extras_scale_by_tab") as tab_scale_by:
                        with gr.Row():
                            upscale_by = gr.Slider(minimum=1.0, maximum=8.0, step=0.05, label="Resize", value=4,
                                                   elem_id="extras_upscaling_resize")
                            max_side_length = gr.Number(label="Max side length", value=0, precision=0,
                                                        elem_id="extras_upscale_max_side_length")
                    with gr.Tab("Scale to", id="scale_to", elem_id="extras_scale_to_tab") as tab_scale_to:
                        with FormRow():
                            with gr.Column(scale=4):
                                upscale_to_width = gr.Slider(minimum=64, maximum=8192, step=8, label="Width",
                                                             value=512, elem_id="extras_upscaling_resize_w")
                                upscale_to_height = gr.Slider(minimum=64, maximum=8192, step=8, label="Height",
                                                              value=512, elem_id="extras_upscaling_resize_h")
                            with gr.Column(scale=1, min_width=40, elem_classes="dimensions-tools"):
                                res_switch = ToolButton(value=switch_values_symbol,
                                                        elem_id="upscaling_res_switch_btn",
                                                        tooltip="Switch width/height")
                                upscale_crop = gr.Checkbox(label="Crop to fit", value=True,
                                                           elem_id="extras_upscaling_crop")
            script_inputs = scripts.scripts_postproc.setup_ui()

        with gr.Column():
            with gr.Row(elem_id=f"{tab}_toprow"):
                submit = gr.Button("Generate", elem_id=f"{tab}_generate", variant="primary")
            output_panel = ui_common.create_output_panel(tab, shared.opts.outdir_extras_samples)

    for index, source_tab in enumerate((tab_single, tab_batch, tab_batch_dir)):
        source_tab.select(fn=None, js=f"() => {index}", outputs=[extras_mode], **private)
    tab_scale_by.select(fn=None, js="() => 0", outputs=[upscale_mode], **private)
    tab_scale_to.select(fn=None, js="() => 1", outputs=[upscale_mode], **private)
    res_switch.click(fn=lambda w, h: (h, w), inputs=[upscale_to_width, upscale_to_height],
                     outputs=[upscale_to_width, upscale_to_height], **private)

    components: dict[str, Any] = {
        "extras_mode": extras_mode, "image": image, "image_batch": image_batch, "input_dir": input_dir,
        "output_dir": output_dir, "show_extras_results": show_extras_results, "upscale_enabled": upscale_enabled,
        "upscale_mode": upscale_mode, "upscale_by": upscale_by, "max_side_length": max_side_length,
        "upscale_to_width": upscale_to_width, "upscale_to_height": upscale_to_height, "upscale_crop": upscale_crop,
        "upscaler_1_name": upscaler_1, "upscaler_2_name": upscaler_2,
        "upscaler_2_visibility": upscaler_2_visibility, "id_task": id_task,
    }
    submit.click(fn=run, js=f"(...args) => submit_generation('{tab}', args, {FIELDS.index('id_task')})",
                 inputs=[components[name] for name in FIELDS] + script_inputs,
                 outputs=[output_panel.gallery, output_panel.infotext, output_panel.html_log], api_name="extras",
                 concurrency_limit=None, show_progress="hidden")
    image.change(fn=scripts.scripts_postproc.image_changed, **private)
    infotext_paste.add_paste_fields(tab, image, None)
