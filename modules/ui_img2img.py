"""The img2img tab (a1111-spec §1.3): source sub-tabs img2img, Sketch, Inpaint, Inpaint sketch (gr.ImageEditor),
Inpaint upload and Batch; resize mode, Resize to / Resize by, sampler, batch, CFG, denoising, seed, the inpaint
controls, override settings and scripts; output panel; extra-network sub-tabs.

The image and mask of the chosen source come from modules/img2img.py (`image_and_mask`); processing is built
with `img2img.create_processing`. Which source tab and which resize tab are open is kept in hidden inputs set in
the browser when a tab is selected (A1111's mode numbers: 0 img2img ... 5 batch).
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from PIL import Image

from modules import (
    img2img,
    infotext_paste,
    processing,
    scripts,
    shared,
    txt2img,
    ui_common,
    ui_extra_networks,
    ui_generation,
)
from modules.errors import UserError
from modules.ui_components import FormGroup, FormHTML, FormRow, ResizeHandleRow, ToolButton
from modules.ui_toprow import Toprow

log = logging.getLogger(__name__)

switch_values_symbol = "\u21c5"  # ⇅
detect_image_size_symbol = "\U0001f4d0"  # 📐

RESIZE_MODES = ["Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)"]
MASK_MODES = ["Inpaint masked", "Inpaint not masked"]
MASKED_CONTENT = ["fill", "original", "latent noise", "latent nothing"]
INPAINT_AREAS = ["Whole picture", "Only masked"]
SOURCE_TABS = ["img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch"]

FIELDS = ["mode", "prompt", "negative_prompt", "styles", "init_img", "sketch", "init_img_with_mask",
          "inpaint_color_sketch", "init_img_inpaint", "init_mask_inpaint", "mask_blur", "mask_alpha",
          "inpainting_fill", "n_iter", "batch_size", "cfg_scale", "image_cfg_scale", "denoising_strength",
          "selected_scale_tab", "height", "width", "scale_by", "resize_mode", "inpaint_full_res",
          "inpaint_full_res_padding", "inpainting_mask_invert", "img2img_batch_input_dir",
          "img2img_batch_output_dir", "img2img_batch_inpaint_mask_dir", "override_settings_texts",
          "img2img_batch_use_png_info", "img2img_batch_png_info_props", "img2img_batch_png_info_dir",
          "img2img_batch_source_type", "img2img_batch_upload", "steps", "sampler_name", "scheduler", "seed",
          "seed_checkbox", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h", "id_task"]


def editor_layers(value: Any) -> tuple[Image.Image | None, Image.Image | None, Image.Image | None]:
    """(background, strokes, composite) of a gr.ImageEditor value; strokes are all layers merged (RGBA)."""
    if not value:
        return None, None, None
    if isinstance(value, Image.Image):
        return value, None, value
    background = value.get("background")
    composite = value.get("composite")
    strokes = None
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        layer = layer.convert("RGBA")
        if strokes is None:
            strokes = Image.new("RGBA", layer.size, (0, 0, 0, 0))
        if layer.size != strokes.size:
            layer = layer.resize(strokes.size)
        strokes.alpha_composite(layer)
    if background is None:
        background = composite
    return background, strokes, composite


def image_and_mask(mode: int, values: dict[str, Any]) -> tuple[Image.Image | None, Image.Image | None]:
    """The init image and mask of the open source tab."""
    kwargs: dict[str, Any] = {"mask_blur": values["mask_blur"], "mask_alpha": values["mask_alpha"]}
    if mode == img2img.MODE_IMG2IMG:
        kwargs["init_img"] = values["init_img"]
    elif mode == img2img.MODE_SKETCH:
        background, strokes, composite = editor_layers(values["sketch"])
        kwargs["sketch"] = background
        kwargs["sketch_strokes"] = strokes
    elif mode == img2img.MODE_INPAINT:
        background, strokes, _ = editor_layers(values["init_img_with_mask"])
        if strokes is None and background is not None:
            raise UserError("Draw a mask over the image first: the Inpaint tab paints the area to regenerate.")
        kwargs["init_img_with_mask"] = background
        kwargs["drawn_mask"] = strokes
    elif mode == img2img.MODE_INPAINT_SKETCH:
        background, _, composite = editor_layers(values["inpaint_color_sketch"])
        kwargs["inpaint_color_sketch"] = composite
        kwargs["inpaint_color_sketch_orig"] = background
    elif mode == img2img.MODE_INPAINT_UPLOAD:
        kwargs["init_img_inpaint"] = values["init_img_inpaint"]
        kwargs["init_mask_inpaint"] = values["init_mask_inpaint"]
    return img2img.image_and_mask(mode, **kwargs)


def create_processing(values: dict[str, Any], script_args: tuple) -> tuple[processing.StableDiffusionProcessingImg2Img,
                                                                            int]:
    mode = int(values["mode"] or 0)
    is_batch = mode == img2img.MODE_BATCH
    image, mask = (None, None) if is_batch else image_and_mask(mode, values)
    width, height = int(values["width"]), int(values["height"])
    if int(values["selected_scale_tab"] or 0) == 1 and image is not None:
        width, height = img2img.scaled_size(image, float(values["scale_by"]))
    seed = ui_generation.seed_arguments(values["seed"], values["seed_checkbox"], values["subseed"],
                                        values["subseed_strength"], values["seed_resize_from_w"],
                                        values["seed_resize_from_h"])
    p = img2img.create_processing(
        values["prompt"] or "", values["negative_prompt"] or "", [image] if image is not None else [], mask,
        values["steps"], values["sampler_name"], values["scheduler"], width, height, values["n_iter"],
        values["batch_size"], values["cfg_scale"], values["denoising_strength"], seed.pop("seed"),
        styles=values["styles"] or [], **seed,
        resize_mode=int(values["resize_mode"] or 0), mask_blur=int(values["mask_blur"]),
        inpainting_fill=int(values["inpainting_fill"] or 0), inpaint_full_res=bool(values["inpaint_full_res"]),
        inpaint_full_res_padding=int(values["inpaint_full_res_padding"]),
        inpainting_mask_invert=int(values["inpainting_mask_invert"] or 0),
        image_cfg_scale=float(values["image_cfg_scale"]),
        override_settings=ui_generation.override_settings(values["override_settings_texts"]),
    )
    p.scripts = scripts.scripts_img2img
    p.script_args = script_args
    p.user = None
    return p, mode


def run_batch(p: processing.StableDiffusionProcessingImg2Img, values: dict[str, Any]) -> tuple:
    uploads = values["img2img_batch_upload"] or []
    from_upload = int(values["img2img_batch_source_type"] or 0) == 0
    if from_upload:
        if not uploads:
            raise UserError("Batch: upload images on the Upload tab, or use From directory.")
        source: str | list[str] = [getattr(f, "name", f) for f in uploads]
        output_dir = ""
    else:
        if shared.cmd_opts.hide_ui_dir_config:
            raise UserError("Batch from a directory is disabled by --hide-ui-dir-config.")
        source = values["img2img_batch_input_dir"]
        output_dir = values["img2img_batch_output_dir"]
    processed = img2img.process_batch(
        p, source, output_dir, "" if from_upload else values["img2img_batch_inpaint_mask_dir"],
        to_scale=int(values["selected_scale_tab"] or 0) == 1, scale_by=float(values["scale_by"]),
        use_png_info=bool(values["img2img_batch_use_png_info"]),
        png_info_props=values["img2img_batch_png_info_props"] or [],
        png_info_dir=values["img2img_batch_png_info_dir"] or "", run=txt2img.run_selected_script)
    if processed is None:
        return [], "", ui_common.plaintext_to_html("No images were processed."), ""
    return (processed.images, processed.js(), ui_common.plaintext_to_html(processed.info),
            ui_common.plaintext_to_html(processed.comments, classname="comments"))


def run(*args) -> tuple:
    values = dict(zip(FIELDS, args[:len(FIELDS)], strict=True))
    script_args = args[len(FIELDS):]

    def job():
        p, mode = create_processing(values, script_args)
        try:
            if mode == img2img.MODE_BATCH:
                return run_batch(p, values)
            return img2img.img2img(p)
        finally:
            p.close()

    return ui_generation.run_as_task("img2img", values["id_task"], job, 4)


def detect_size(mode: int, *sources) -> tuple:
    """📐: width and height from the open tab's image."""
    values = dict(zip(["init_img", "sketch", "init_img_with_mask", "inpaint_color_sketch", "init_img_inpaint"],
                      sources, strict=True))
    key = {0: "init_img", 1: "sketch", 2: "init_img_with_mask", 3: "inpaint_color_sketch", 4: "init_img_inpaint"}
    source = values.get(key.get(int(mode or 0), "init_img"))
    image = editor_layers(source)[0] if isinstance(source, dict) else source
    if image is None:
        return gr.update(), gr.update()
    return image.width, image.height


def scale_preview(image_source: Any, scale: float) -> str:
    image = editor_layers(image_source)[0] if isinstance(image_source, dict) else image_source
    if image is None:
        return ""
    w, h = img2img.scaled_size(image, float(scale))
    return (f"resize: from <span class='resolution'>{image.width}x{image.height}</span> to "
            f"<span class='resolution'>{w}x{h}</span>")


def create_ui() -> None:
    tab = "img2img"
    runner = scripts.scripts_img2img
    toprow = Toprow(is_img2img=True)
    id_task = gr.Textbox(value="", visible="hidden", label="id_task", elem_id=f"{tab}_id_task")
    mode = gr.Number(value=0, precision=0, visible="hidden", label="img2img mode", elem_id="img2img_selected_mode")
    selected_scale_tab = gr.Number(value=0, precision=0, visible="hidden", label="Resize tab",
                                   elem_id="img2img_selected_scale_tab")
    batch_source_type = gr.Number(value=0, precision=0, visible="hidden", label="Batch source",
                                  elem_id="img2img_batch_source_type")
    for hidden in (id_task, mode, selected_scale_tab, batch_source_type):
        hidden.do_not_save_to_config = True
    private = {"api_visibility": "private", "show_progress": "hidden"}
    opts = shared.opts

    with gr.Tabs(elem_id=f"{tab}_extra_tabs", elem_classes=["extra-networks"]):
        with gr.Tab("Generation", id=f"{tab}_generation", elem_id=f"{tab}_generation_tab"):
            with ResizeHandleRow(equal_height=False):
                with gr.Column(variant="compact", elem_id=f"{tab}_settings"):
                    runner.prepare_ui()
                    copy_buttons: dict[tuple[int, int], Any] = {}

                    def add_copy_buttons(from_index: int) -> None:
                        with gr.Row(variant="compact", elem_id=f"img2img_copy_to_{SOURCE_TABS[from_index]}",
                                    elem_classes="img2img-copy-to"):
                            gr.HTML("Copy image to: ", elem_id=f"img2img_label_copy_to_{SOURCE_TABS[from_index]}")
                            for to_index, title in ((1, "sketch"), (2, "inpaint"), (3, "inpaint sketch")):
                                if to_index != from_index:
                                    copy_buttons[(from_index, to_index)] = gr.Button(
                                        title, elem_id=f"copy_to_{title.replace(' ', '_')}_{from_index}",
                                        size="sm")

                    editor_height = opts.img2img_editor_height
                    with gr.Tabs(elem_id="mode_img2img"):
                        with gr.Tab("img2img", id="img2img", elem_id="img2img_img2img_tab") as tab_img2img:
                            init_img = gr.Image(label="Image for img2img", elem_id="img2img_image", type="pil",
                                                image_mode="RGBA", height=editor_height, sources=["upload",
                                                                                                   "clipboard"])
                            add_copy_buttons(0)
                        with gr.Tab("Sketch", id="img2img_sketch", elem_id="img2img_img2img_sketch_tab") as tab_sketch:
                            sketch = gr.ImageEditor(
                                label="Image for img2img", elem_id="img2img_sketch", type="pil", image_mode="RGBA",
                                height=editor_height, sources=["upload", "clipboard"], layers=False,
                                brush=gr.Brush(colors=[opts.img2img_sketch_default_brush_color],
                                               color_mode="defaults"))
                            add_copy_buttons(1)
                        with gr.Tab("Inpaint", id="inpaint", elem_id="img2img_inpaint_tab") as tab_inpaint:
                            init_img_with_mask = gr.ImageEditor(
                                label="Image for inpainting with mask", elem_id="img2maskimg", type="pil",
                                image_mode="RGBA", height=editor_height, sources=["upload", "clipboard"],
                                layers=False, brush=gr.Brush(colors=[opts.img2img_inpaint_mask_brush_color],
                                                             color_mode="fixed"))
                            add_copy_buttons(2)
                        with gr.Tab("Inpaint sketch", id="inpaint_sketch",
                                    elem_id="img2img_inpaint_sketch_tab") as tab_inpaint_color:
                            inpaint_color_sketch = gr.ImageEditor(
                                label="Color sketch inpainting", elem_id="inpaint_sketch", type="pil",
                                image_mode="RGBA", height=editor_height, sources=["upload", "clipboard"],
                                layers=False,
                                brush=gr.Brush(colors=[opts.img2img_inpaint_sketch_default_brush_color],
                                               color_mode="defaults"))
                            add_copy_buttons(3)
                        with gr.Tab("Inpaint upload", id="inpaint_upload",
                                    elem_id="img2img_inpaint_upload_tab") as tab_inpaint_upload:
                            init_img_inpaint = gr.Image(label="Image for img2img", type="pil",
                                                        elem_id="img_inpaint_base", sources=["upload", "clipboard"])
                            init_mask_inpaint = gr.Image(label="Mask", type="pil", image_mode="RGBA",
                                                         elem_id="img_inpaint_mask", sources=["upload", "clipboard"])
                        with gr.Tab("Batch", id="batch", elem_id="img2img_batch_tab") as tab_batch:
                            with gr.Tabs(elem_id="img2img_batch_source"):
                                with gr.Tab("Upload", id="batch_upload",
                                            elem_id="img2img_batch_upload_tab") as tab_batch_upload:
                                    batch_upload = gr.Files(label="Files", interactive=True,
                                                            elem_id="img2img_batch_upload")
                                with gr.Tab("From directory", id="batch_from_dir",
                                            elem_id="img2img_batch_from_dir_tab") as tab_batch_dir:
                                    hidden = "<br>Disabled when launched with --hide-ui-dir-config." \
                                        if shared.cmd_opts.hide_ui_dir_config else ""
                                    gr.HTML("<p style='padding-bottom: 1em;' class=\"text-gray-500\">Process images "
                                            "in a directory on the same machine where the server is running.<br>Use "
                                            "an empty output directory to save pictures normally instead of writing "
                                            "to the output directory.<br>Add inpaint batch mask directory to enable "
                                            f"inpaint batch processing.{hidden}</p>")
                                    dir_interactive = not shared.cmd_opts.hide_ui_dir_config
                                    batch_input_dir = gr.Textbox(value="", label="Input directory",
                                                                 elem_id="img2img_batch_input_dir",
                                                                 interactive=dir_interactive)
                                    batch_output_dir = gr.Textbox(value="", label="Output directory",
                                                                  elem_id="img2img_batch_output_dir",
                                                                  interactive=dir_interactive)
                                    batch_inpaint_mask_dir = gr.Textbox(value="", label="Inpaint batch mask directory "
                                                                        "(required for inpaint batch processing only)",
                                                                        elem_id="img2img_batch_inpaint_mask_dir",
                                                                        interactive=dir_interactive)
                            with gr.Accordion("PNG info", open=False):
                                batch_use_png_info = gr.Checkbox(label="Append png info to prompts",
                                                                 elem_id="img2img_batch_use_png_info")
                                batch_png_info_dir = gr.Textbox(value="", label="PNG info directory",
                                                                placeholder="Leave empty to use input directory",
                                                                elem_id="img2img_batch_png_info_dir")
                                batch_png_info_props = gr.CheckboxGroup(
                                    list(img2img.PNG_INFO_PROPS), label="Parameters to take from png info",
                                    info="Prompts from png info will be appended to prompts set in ui.",
                                    elem_id="img2img_batch_png_info_props")

                    with FormRow():
                        resize_mode = gr.Radio(label="Resize mode", elem_id="resize_mode", choices=RESIZE_MODES,
                                               type="index", value="Just resize")
                    sampler, scheduler, steps = ui_generation.create_sampler_and_steps_selection(tab)
                    runner.setup_ui_for_section("sampler")

                    with gr.Row(elem_id=f"{tab}_accordions", elem_classes="accordions"):
                        runner.setup_ui_for_section("accordions")
                    runner.setup_ui_for_section("checkboxes")

                    with FormRow():
                        with gr.Column(elem_id="img2img_column_size", scale=4):
                            with gr.Tabs(elem_id="img2img_tabs_resize"):
                                with gr.Tab("Resize to", id="to", elem_id="img2img_tab_resize_to") as tab_scale_to:
                                    with FormRow():
                                        with gr.Column(elem_id="img2img_column_size", scale=4):
                                            width = gr.Slider(minimum=64, maximum=2048, step=8, label="Width",
                                                              value=512, elem_id="img2img_width")
                                            height = gr.Slider(minimum=64, maximum=2048, step=8, label="Height",
                                                               value=512, elem_id="img2img_height")
                                        with gr.Column(elem_id="img2img_dimensions_row", scale=1,
                                                       elem_classes="dimensions-tools", min_width=40):
                                            res_switch = ToolButton(value=switch_values_symbol,
                                                                    elem_id="img2img_res_switch_btn",
                                                                    tooltip="Switch width/height")
                                            detect = ToolButton(value=detect_image_size_symbol,
                                                                elem_id="img2img_detect_image_size_btn",
                                                                tooltip="Auto detect size from img2img")
                                with gr.Tab("Resize by", id="by", elem_id="img2img_tab_resize_by") as tab_scale_by:
                                    scale_by = gr.Slider(minimum=0.05, maximum=4.0, step=0.05, label="Scale",
                                                         value=1.0, elem_id="img2img_scale")
                                    with FormRow():
                                        scale_resolution = FormHTML(value="",
                                                                    elem_id="img2img_scale_resolution_preview")
                        with gr.Column(elem_id="img2img_column_batch"):
                            batch_count = gr.Slider(minimum=1, maximum=100, step=1, label="Batch count", value=1,
                                                    elem_id=f"{tab}_batch_count")
                            batch_size = gr.Slider(minimum=1, maximum=8, step=1, label="Batch size", value=1,
                                                   elem_id=f"{tab}_batch_size")
                    runner.setup_ui_for_section("dimensions")

                    with FormGroup():
                        with FormRow():
                            cfg_scale = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, label="CFG Scale", value=7.0,
                                                  elem_id="img2img_cfg_scale")
                            image_cfg_scale = gr.Slider(minimum=0, maximum=3.0, step=0.05, label="Image CFG Scale",
                                                        value=1.5, elem_id="img2img_image_cfg_scale", visible=False)
                        runner.setup_ui_for_section("cfg")
                        denoising_strength = gr.Slider(minimum=0.0, maximum=1.0, step=0.01,
                                                       label="Denoising strength", value=0.75,
                                                       elem_id="img2img_denoising_strength")
                        runner.setup_ui_for_section("denoising")
                    seed = ui_generation.create_seed_inputs(tab)
                    runner.setup_ui_for_section("seed")
                    override = ui_generation.create_override_settings_dropdown(tab)

                    with FormGroup(elem_id="inpaint_controls", visible=False) as inpaint_controls:
                        with FormRow():
                            mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4,
                                                  elem_id="img2img_mask_blur")
                            mask_alpha = gr.Slider(label="Mask transparency", minimum=0, maximum=100, step=1,
                                                   value=0, visible=False, elem_id="img2img_mask_alpha")
                        with FormRow():
                            inpainting_mask_invert = gr.Radio(label="Mask mode", choices=MASK_MODES,
                                                              value=MASK_MODES[0], type="index",
                                                              elem_id="img2img_mask_mode")
                        with FormRow():
                            inpainting_fill = gr.Radio(label="Masked content", choices=MASKED_CONTENT,
                                                       value="original", type="index",
                                                       elem_id="img2img_inpainting_fill")
                        with FormRow():
                            with gr.Column():
                                inpaint_full_res = gr.Radio(label="Inpaint area", choices=INPAINT_AREAS,
                                                            type="index", value=INPAINT_AREAS[0],
                                                            elem_id="img2img_inpaint_full_res")
                            with gr.Column(scale=4):
                                inpaint_full_res_padding = gr.Slider(label="Only masked padding, pixels", minimum=0,
                                                                     maximum=256, step=4, value=32,
                                                                     elem_id="img2img_inpaint_full_res_padding")
                        runner.setup_ui_for_section("inpaint")

                    with gr.Group(elem_id=f"{tab}_script_container"):
                        script_inputs = runner.setup_ui()
                    for section in ("prompt", "image", "batch", "override_settings", "scripts"):
                        runner.setup_ui_for_section(section)

                output_panel = ui_common.create_output_panel(tab, opts.outdir_img2img_samples, toprow)
        ui_extra_networks.create_ui(tab)

    toprow.setup_token_counters(steps)
    seed.connect_reuse(output_panel.generation_info, output_panel.selected_index)

    source_tabs = [tab_img2img, tab_sketch, tab_inpaint, tab_inpaint_color, tab_inpaint_upload, tab_batch]
    for index, source_tab in enumerate(source_tabs):
        # Set in the browser at once (no round trip), so Generate right after a tab switch sees the new mode.
        source_tab.select(fn=None, js=f"() => {index}", outputs=[mode], **private)
    mode.change(fn=lambda m: (gr.update(visible=int(m or 0) in (2, 3, 4)), gr.update(visible=int(m or 0) == 3)),
                inputs=[mode], outputs=[inpaint_controls, mask_alpha], **private)
    tab_scale_to.select(fn=None, js="() => 0", outputs=[selected_scale_tab], **private)
    tab_scale_by.select(fn=None, js="() => 1", outputs=[selected_scale_tab], **private)
    tab_batch_upload.select(fn=None, js="() => 0", outputs=[batch_source_type], **private)
    tab_batch_dir.select(fn=None, js="() => 1", outputs=[batch_source_type], **private)

    editors = {0: init_img, 1: sketch, 2: init_img_with_mask, 3: inpaint_color_sketch}
    for (from_index, to_index), button in copy_buttons.items():
        source = editors[from_index]
        button.click(fn=lambda v: editor_layers(v)[2] if isinstance(v, dict) else v, inputs=[source],
                     outputs=[editors[to_index]], **private).then(
            fn=None, js=f"() => switch_to_img2img_tab({to_index})", **private)

    res_switch.click(fn=lambda w, h: (h, w), inputs=[width, height], outputs=[width, height], **private)
    detect.click(fn=detect_size, inputs=[mode, init_img, sketch, init_img_with_mask, inpaint_color_sketch,
                                         init_img_inpaint], outputs=[width, height], **private)
    for component in (scale_by, init_img):
        component.change(fn=scale_preview, inputs=[init_img, scale_by], outputs=[scale_resolution], **private)

    components = {
        "mode": mode, "prompt": toprow.prompt, "negative_prompt": toprow.negative_prompt,
        "styles": toprow.ui_styles.dropdown, "init_img": init_img, "sketch": sketch,
        "init_img_with_mask": init_img_with_mask, "inpaint_color_sketch": inpaint_color_sketch,
        "init_img_inpaint": init_img_inpaint, "init_mask_inpaint": init_mask_inpaint, "mask_blur": mask_blur,
        "mask_alpha": mask_alpha, "inpainting_fill": inpainting_fill, "n_iter": batch_count,
        "batch_size": batch_size, "cfg_scale": cfg_scale, "image_cfg_scale": image_cfg_scale,
        "denoising_strength": denoising_strength, "selected_scale_tab": selected_scale_tab, "height": height,
        "width": width, "scale_by": scale_by, "resize_mode": resize_mode, "inpaint_full_res": inpaint_full_res,
        "inpaint_full_res_padding": inpaint_full_res_padding, "inpainting_mask_invert": inpainting_mask_invert,
        "img2img_batch_input_dir": batch_input_dir, "img2img_batch_output_dir": batch_output_dir,
        "img2img_batch_inpaint_mask_dir": batch_inpaint_mask_dir, "override_settings_texts": override,
        "img2img_batch_use_png_info": batch_use_png_info, "img2img_batch_png_info_props": batch_png_info_props,
        "img2img_batch_png_info_dir": batch_png_info_dir, "img2img_batch_source_type": batch_source_type,
        "img2img_batch_upload": batch_upload, "steps": steps, "sampler_name": sampler, "scheduler": scheduler,
        "seed": seed.seed, "seed_checkbox": seed.seed_checkbox, "subseed": seed.subseed,
        "subseed_strength": seed.subseed_strength, "seed_resize_from_w": seed.seed_resize_from_w,
        "seed_resize_from_h": seed.seed_resize_from_h, "id_task": id_task,
    }
    inputs = [components[name] for name in FIELDS] + list(script_inputs)
    outputs = [output_panel.gallery, output_panel.generation_info, output_panel.infotext, output_panel.html_log]
    id_index = FIELDS.index("id_task")
    toprow.submit.click(fn=run, js=f"(...args) => submit_generation('{tab}', args, {id_index})", inputs=inputs,
                        outputs=outputs, api_name="img2img", concurrency_limit=None, show_progress="hidden")
    toprow.restore_progress_button.click(fn=lambda i: ui_generation.restore_progress(i, len(outputs)),
                                         js=f"() => restore_progress('{tab}')", inputs=[id_task], outputs=outputs,
                                         api_visibility="private", concurrency_limit=None, show_progress="hidden")

    paste_components = {
        "prompt": toprow.prompt, "negative_prompt": toprow.negative_prompt, "steps": steps, "sampler_name": sampler,
        "scheduler": scheduler, "cfg_scale": cfg_scale, "image_cfg_scale": image_cfg_scale, "width": width,
        "height": height, "batch_size": batch_size, "styles": toprow.ui_styles.dropdown,
        "denoising_strength": denoising_strength, "mask_blur": mask_blur,
        "inpainting_mask_invert": inpainting_mask_invert, "inpainting_fill": inpainting_fill,
        "inpaint_full_res": inpaint_full_res, "inpaint_full_res_padding": inpaint_full_res_padding,
    }
    fields = [*ui_generation.core_paste_fields(paste_components), *seed.paste_fields(), *runner.infotext_fields]
    infotext_paste.add_paste_fields(tab, init_img, fields, override)
    infotext_paste.add_paste_fields("inpaint", init_img_with_mask, fields, override)
    infotext_paste.register_paste_params_button(infotext_paste.ParamBinding(
        paste_button=toprow.paste, tabname=tab, source_text_component=toprow.prompt, source_image_component=None))
