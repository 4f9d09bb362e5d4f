"""The txt2img tab (a1111-spec §1.2): top row, Generation sub-tab (sampler, size, batch, CFG, seed, Hires. fix,
override settings, scripts) with the output panel, and the extra-network sub-tabs.

The Generate event's inputs start with A1111's order of the first eleven fields (prompt, negative prompt, steps,
sampler, scheduler, width, height, batch count, batch size, CFG scale, seed) so gradio_client callers can pass
those positionally; the rest have defaults.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import gradio as gr

from modules import (
    hires_fix,
    infotext_paste,
    infotext_utils,
    processing,
    scripts,
    sd_models,
    shared,
    txt2img,
    ui_common,
    ui_extra_networks,
    ui_generation,
)
from modules.errors import UserError
from modules.ui_components import FormHTML, FormRow, InputAccordion, ResizeHandleRow, ToolButton
from modules.ui_toprow import Toprow

log = logging.getLogger(__name__)

switch_values_symbol = "\u21c5"  # ⇅

FIELDS = ["prompt", "negative_prompt", "steps", "sampler_name", "scheduler", "width", "height", "n_iter",
          "batch_size", "cfg_scale", "seed", "styles", "seed_checkbox", "subseed", "subseed_strength",
          "seed_resize_from_w", "seed_resize_from_h", "enable_hr", "hr_upscaler", "hr_second_pass_steps",
          "denoising_strength", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name",
          "hr_scheduler", "hr_prompt", "hr_negative_prompt", "override_settings_texts", "id_task"]


SEED_FIELDS = {"seed", "seed_checkbox", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h"}


def hires_upscalers() -> list[str]:
    return [*shared.latent_upscale_modes, *[u.name for u in shared.sd_upscalers]]


def hires_resolution(enable: bool, width: float, height: float, hr_scale: float, hr_resize_x: float,
                     hr_resize_y: float) -> str:
    """The "from WxH to WxH" line of the Hires. fix accordion."""
    if not enable:
        return ""
    p = SimpleNamespace(width=int(width), height=int(height), hr_scale=float(hr_scale), hr_resize_x=int(hr_resize_x),
                        hr_resize_y=int(hr_resize_y), applied_old_hires_behavior_to=None, extra_generation_params={},
                        truncate_x=0, truncate_y=0)
    hires_fix.calculate_target_resolution(p)
    return (f"from <span class='resolution'>{p.width}x{p.height}</span> to <span class='resolution'>"
            f"{p.hr_resize_x or p.hr_upscale_to_x}x{p.hr_resize_y or p.hr_upscale_to_y}</span>")


def create_processing(values: dict[str, Any], script_args: tuple,
                      force_enable_hr: bool = False) -> processing.StableDiffusionProcessingTxt2Img:
    seed = ui_generation.seed_arguments(values["seed"], values["seed_checkbox"], values["subseed"],
                                        values["subseed_strength"], values["seed_resize_from_w"],
                                        values["seed_resize_from_h"])
    enable_hr = bool(values["enable_hr"]) or force_enable_hr
    p = txt2img.create_processing(
        values["prompt"] or "", values["negative_prompt"] or "", values["steps"], values["sampler_name"],
        values["scheduler"], values["width"], values["height"], values["n_iter"], values["batch_size"],
        values["cfg_scale"], seed.pop("seed"), styles=values["styles"] or [], **seed,
        enable_hr=enable_hr, denoising_strength=float(values["denoising_strength"]) if enable_hr else None,
        hr_scale=float(values["hr_scale"]), hr_upscaler=values["hr_upscaler"],
        hr_second_pass_steps=int(values["hr_second_pass_steps"]), hr_resize_x=int(values["hr_resize_x"]),
        hr_resize_y=int(values["hr_resize_y"]), hr_checkpoint_name=values["hr_checkpoint_name"],
        hr_sampler_name=values["hr_sampler_name"], hr_scheduler=values["hr_scheduler"],
        hr_prompt=values["hr_prompt"] or "", hr_negative_prompt=values["hr_negative_prompt"] or "",
        override_settings=ui_generation.override_settings(values["override_settings_texts"]),
    )
    p.scripts = scripts.scripts_txt2img
    p.script_args = script_args
    p.user = None
    return p


def run(*args) -> tuple:
    values = dict(zip(FIELDS, args[:len(FIELDS)], strict=True))
    script_args = args[len(FIELDS):]

    def job():
        p = create_processing(values, script_args)
        try:
            images, info_js, info_html = txt2img.txt2img(p)
        finally:
            p.close()
        return images, info_js, info_html, ""

    return ui_generation.run_as_task("txt2img", values["id_task"], job, 4)


def upscale(gallery: Any, gallery_index: Any, generation_info: str, *args) -> tuple:
    """✨: run the hires pass on the selected finished picture (its seed from its infotext), and put the result
    in its place."""
    values = dict(zip(FIELDS, args[:len(FIELDS)], strict=True))
    script_args = args[len(FIELDS):]

    def job():
        if not gallery:
            raise UserError("Generate an image first: ✨ upscales the selected picture with the Hires. fix settings.")
        try:
            geninfo = json.loads(generation_info or "{}")
        except ValueError:
            geninfo = {}
        index = int(gallery_index) if gallery_index is not None and 0 <= int(gallery_index) < len(gallery) else 0
        p = create_processing(values, script_args, force_enable_hr=True)
        p.batch_size = p.n_iter = 1
        p.txt2img_upscale = True
        p.firstpass_image = ui_common.ui_infotext.image_from_gallery(gallery, index)
        infotexts = geninfo.get("infotexts") or []
        params = infotext_utils.parse_generation_parameters(infotexts[index] if index < len(infotexts) else "")
        p.seed = int(params.get("Seed", -1))
        p.subseed = int(params.get("Variation seed", -1))
        p.override_settings["save_images_before_highres_fix"] = False
        try:
            processed = processing.process_images(p)
        finally:
            p.close()
        pictures = ui_common.gallery_pictures(gallery)
        pictures[index] = processed.images[0]
        if infotexts and index < len(infotexts):
            infotexts[index] = processed.info
            geninfo["infotexts"] = infotexts
        return (pictures, json.dumps(geninfo), ui_common.plaintext_to_html(processed.info),
                ui_common.plaintext_to_html(processed.comments, classname="comments"))

    return ui_generation.run_as_task("txt2img", values["id_task"], job, 4)


def create_ui() -> None:
    """Build the tab's content inside the caller's gr.Tab."""
    tab = "txt2img"
    runner = scripts.scripts_txt2img
    toprow = Toprow(is_img2img=False)
    id_task = gr.Textbox(value="", visible="hidden", label="id_task", elem_id=f"{tab}_id_task")
    id_task.do_not_save_to_config = True

    with gr.Tabs(elem_id=f"{tab}_extra_tabs", elem_classes=["extra-networks"]):
        with gr.Tab("Generation", id=f"{tab}_generation", elem_id=f"{tab}_generation_tab"):
            with ResizeHandleRow(equal_height=False):
                with gr.Column(variant="compact", elem_id=f"{tab}_settings"):
                    runner.prepare_ui()
                    sampler, scheduler, steps = ui_generation.create_sampler_and_steps_selection(tab)
                    runner.setup_ui_for_section("sampler")

                    with gr.Row(elem_id=f"{tab}_accordions", elem_classes="accordions"):
                        with InputAccordion(False, label="Hires. fix", elem_id=f"{tab}_hr") as enable_hr:
                            hr_final_resolution = FormHTML(value="", elem_id="txtimg_hr_finalres",
                                                           label="Upscaled resolution")
                            with FormRow(elem_id=f"{tab}_hires_fix_row1", variant="compact"):
                                upscalers = hires_upscalers()
                                hr_upscaler = gr.Dropdown(label="Upscaler", elem_id=f"{tab}_hr_upscaler",
                                                          choices=upscalers,
                                                          value=shared.latent_upscale_default_mode)
                                hr_second_pass_steps = gr.Slider(minimum=0, maximum=150, step=1,
                                                                 label="Hires steps", value=0,
                                                                 elem_id=f"{tab}_hires_steps")
                                denoising_strength = gr.Slider(minimum=0.0, maximum=1.0, step=0.01,
                                                               label="Denoising strength", value=0.7,
                                                               elem_id=f"{tab}_denoising_strength")
                            with FormRow(elem_id=f"{tab}_hires_fix_row2", variant="compact"):
                                hr_scale = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Upscale by",
                                                     value=2.0, elem_id=f"{tab}_hr_scale")
                                hr_resize_x = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize width to",
                                                        value=0, elem_id=f"{tab}_hr_resize_x")
                                hr_resize_y = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize height to",
                                                        value=0, elem_id=f"{tab}_hr_resize_y")
                            with FormRow(elem_id=f"{tab}_hires_fix_row3", variant="compact",
                                         visible=shared.opts.hires_fix_show_sampler) as hr_sampler_container:
                                hr_checkpoint_name = gr.Dropdown(
                                    label="Checkpoint", elem_id="hr_checkpoint",
                                    choices=["Use same checkpoint", *sd_models.checkpoint_tiles(use_short=True)],
                                    value="Use same checkpoint")
                                hr_sampler_name = gr.Dropdown(
                                    label="Hires sampling method", elem_id="hr_sampler",
                                    choices=["Use same sampler", *ui_generation.sampler_names()],
                                    value="Use same sampler")
                                hr_scheduler = gr.Dropdown(
                                    label="Hires schedule type", elem_id="hr_scheduler",
                                    choices=["Use same scheduler", *ui_generation.scheduler_labels()],
                                    value="Use same scheduler")
                            with FormRow(elem_id=f"{tab}_hires_fix_row4", variant="compact",
                                         visible=shared.opts.hires_fix_show_prompts) as hr_prompts_container:
                                hr_prompt = gr.Textbox(value="", label="Hires prompt", elem_id="hires_prompt",
                                                       show_label=False, lines=3,
                                                       placeholder="Prompt for hires fix pass.\nLeave empty to use "
                                                                   "the same prompt as in first pass.")
                                hr_negative_prompt = gr.Textbox(value="", label="Hires negative prompt",
                                                                elem_id="hires_neg_prompt", show_label=False,
                                                                lines=3,
                                                                placeholder="Negative prompt for hires fix pass.\n"
                                                                            "Leave empty to use the same negative "
                                                                            "prompt as in first pass.")
                        runner.setup_ui_for_section("accordions")
                    runner.setup_ui_for_section("checkboxes")

                    with FormRow():
                        with gr.Column(elem_id=f"{tab}_column_size", scale=4):
                            width = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512,
                                              elem_id=f"{tab}_width")
                            height = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512,
                                               elem_id=f"{tab}_height")
                        with gr.Column(elem_id=f"{tab}_dimensions_row", scale=1, elem_classes="dimensions-tools",
                                       min_width=40):
                            res_switch = ToolButton(value=switch_values_symbol, elem_id=f"{tab}_res_switch_btn",
                                                    tooltip="Switch width/height")
                        with gr.Column(elem_id=f"{tab}_column_batch"):
                            batch_count = gr.Slider(minimum=1, maximum=100, step=1, label="Batch count", value=1,
                                                    elem_id=f"{tab}_batch_count")
                            batch_size = gr.Slider(minimum=1, maximum=8, step=1, label="Batch size", value=1,
                                                   elem_id=f"{tab}_batch_size")
                    runner.setup_ui_for_section("dimensions")
                    cfg_scale = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, label="CFG Scale", value=7.0,
                                          elem_id=f"{tab}_cfg_scale")
                    runner.setup_ui_for_section("cfg")
                    seed = ui_generation.create_seed_inputs(tab)
                    runner.setup_ui_for_section("seed")
                    override = ui_generation.create_override_settings_dropdown(tab)
                    with gr.Group(elem_id=f"{tab}_script_container"):
                        script_inputs = runner.setup_ui()
                    for section in ("prompt", "image", "inpaint", "denoising", "batch", "override_settings",
                                    "scripts"):
                        runner.setup_ui_for_section(section)

                output_panel = ui_common.create_output_panel(tab, shared.opts.outdir_txt2img_samples, toprow)
        ui_extra_networks.create_ui(tab)

    toprow.setup_token_counters(steps)
    seed.connect_reuse(output_panel.generation_info, output_panel.selected_index)
    res_switch.click(fn=lambda w, h: (h, w), inputs=[width, height], outputs=[width, height],
                     api_visibility="private", show_progress="hidden")
    resolution_inputs = [enable_hr, width, height, hr_scale, hr_resize_x, hr_resize_y]
    for component in resolution_inputs:
        component.change(fn=hires_resolution, inputs=resolution_inputs, outputs=[hr_final_resolution],
                         api_visibility="private", show_progress="hidden")

    components = {
        "prompt": toprow.prompt, "negative_prompt": toprow.negative_prompt, "steps": steps, "sampler_name": sampler,
        "scheduler": scheduler, "width": width, "height": height, "n_iter": batch_count, "batch_size": batch_size,
        "cfg_scale": cfg_scale, "seed": seed.seed, "styles": toprow.ui_styles.dropdown,
        "seed_checkbox": seed.seed_checkbox, "subseed": seed.subseed, "subseed_strength": seed.subseed_strength,
        "seed_resize_from_w": seed.seed_resize_from_w, "seed_resize_from_h": seed.seed_resize_from_h,
        "enable_hr": enable_hr, "hr_upscaler": hr_upscaler, "hr_second_pass_steps": hr_second_pass_steps,
        "denoising_strength": denoising_strength, "hr_scale": hr_scale, "hr_resize_x": hr_resize_x,
        "hr_resize_y": hr_resize_y, "hr_checkpoint_name": hr_checkpoint_name, "hr_sampler_name": hr_sampler_name,
        "hr_scheduler": hr_scheduler, "hr_prompt": hr_prompt, "hr_negative_prompt": hr_negative_prompt,
        "override_settings_texts": override, "id_task": id_task,
    }
    inputs = [components[name] for name in FIELDS] + list(script_inputs)
    outputs = [output_panel.gallery, output_panel.generation_info, output_panel.infotext, output_panel.html_log]
    id_index = FIELDS.index("id_task")
    toprow.submit.click(fn=run, js=f"(...args) => submit_generation('{tab}', args, {id_index})", inputs=inputs,
                        outputs=outputs, api_name="txt2img", concurrency_limit=None, show_progress="hidden")
    output_panel.button_upscale.click(
        fn=upscale, js=f"(...args) => submit_generation('{tab}', args, {id_index + 3})",
        inputs=[output_panel.gallery, output_panel.selected_index, output_panel.generation_info, *inputs],
        outputs=outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    toprow.restore_progress_button.click(fn=lambda i: ui_generation.restore_progress(i, len(outputs)),
                                         js=f"() => restore_progress('{tab}')", inputs=[id_task], outputs=outputs,
                                         api_visibility="private", concurrency_limit=None, show_progress="hidden")

    fields = [
        *ui_generation.core_paste_fields({k: v for k, v in components.items() if k not in SEED_FIELDS}),
        *seed.paste_fields(),
        (hr_sampler_container, lambda d: gr.update(visible=True) if any(
            d.get(k, same) != same for k, same in (("Hires sampler", "Use same sampler"),
                                                   ("Hires checkpoint", "Use same checkpoint"),
                                                   ("Hires schedule type", "Use same scheduler"))) else gr.update()),
        (hr_prompts_container, lambda d: gr.update(visible=True) if d.get("Hires prompt") or d.get(
            "Hires negative prompt") else gr.update()),
        *runner.infotext_fields,
    ]
    infotext_paste.add_paste_fields(tab, None, fields, override)
    infotext_paste.register_paste_params_button(infotext_paste.ParamBinding(
        paste_button=toprow.paste, tabname=tab, source_text_component=toprow.prompt, source_image_component=None))
