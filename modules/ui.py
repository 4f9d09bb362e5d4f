"""The Gradio page: quicksettings row and the tabs, with A1111's element ids.

Handlers are thin: they build a processing object (modules.txt2img) and render the result. Errors a user can
cause are shown under the gallery; the server keeps serving.
"""

from __future__ import annotations

import html
import logging
import os

import gradio as gr

from modules import (
    call_queue,
    gradio_compat,
    model_download,
    script_callbacks,
    scripts,
    sd_models,
    sd_samplers,
    sd_schedulers,
    shared,
    txt2img,
    ui_extensions,
    ui_settings,
)
from modules.errors import UserError
from modules.shared import opts
from modules.ui_common import create_refresh_button  # noqa: F401 (A1111 surface: modules.ui.create_refresh_button)

log = logging.getLogger(__name__)

refresh_symbol = "\U0001f504"  # 🔄
random_symbol = "\U0001f3b2\ufe0f"  # 🎲


def error_html(message: str) -> str:
    return f"<div class='error'>{html.escape(message)}</div>"


def checkpoint_choices() -> list[str]:
    return sd_models.checkpoint_tiles(use_short=opts.sd_checkpoint_dropdown_use_short)


def refresh_checkpoints():
    sd_models.list_models()
    return gr.update(choices=checkpoint_choices(), value=opts.sd_model_checkpoint)


def select_checkpoint(title: str):
    """Quicksetting change: load the chosen checkpoint now (in the generation queue)."""
    if not title:
        return gr.update(), ""
    try:
        info = sd_models.find_checkpoint(title)
        call_queue.run_job("load checkpoint", sd_models.reload_model_weights, info=info)
        shared.opts.save(shared.config_filename)
        return gr.update(value=shared.opts.sd_model_checkpoint), ""
    except UserError as e:
        return gr.update(value=shared.opts.sd_model_checkpoint), error_html(str(e))


def no_model_banner() -> str:
    if sd_models.checkpoints_list:
        return ""
    return (
        "<div id='no_model_notice'><b>No checkpoint found.</b> Put a Stable Diffusion model (.safetensors or .ckpt) "
        f"into <code>{html.escape(sd_models.model_path)}</code> and press 🔄, or download Stable Diffusion 1.5 "
        "below.</div>"
    )


def download_sd15(progress=gr.Progress(track_tqdm=True)):
    try:
        path = model_download.download_sd15(progress_callback=lambda f, d: progress(f, desc=d))
    except UserError as e:
        return error_html(str(e)), gr.update()
    sd_models.list_models()
    return f"Downloaded to {html.escape(path)}.", gr.update(choices=checkpoint_choices())


def create_quicksettings() -> tuple[gr.Dropdown, gr.HTML]:
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(
            label="Stable Diffusion checkpoint", choices=checkpoint_choices(), value=opts.sd_model_checkpoint,
            elem_id="setting_sd_model_checkpoint", allow_custom_value=True, interactive=True,
        )
        refresh = gr.Button(refresh_symbol, elem_id="refresh_sd_model_checkpoint", elem_classes=["tool"],
                            scale=0, min_width=40)
    message = gr.HTML(no_model_banner(), elem_id="quicksettings_message")
    refresh.click(refresh_checkpoints, outputs=[checkpoint]).then(no_model_banner, outputs=[message])
    checkpoint.input(select_checkpoint, inputs=[checkpoint], outputs=[checkpoint, message])
    return checkpoint, message


def create_txt2img_tab() -> None:
    tab = "txt2img"
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(elem_id=f"{tab}_prompt_container", scale=6):
            prompt = gr.Textbox(label="Prompt", elem_id=f"{tab}_prompt", lines=3, show_label=False,
                                placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, Esc to interrupt)")
            negative_prompt = gr.Textbox(label="Negative prompt", elem_id=f"{tab}_neg_prompt", lines=3,
                                         show_label=False, placeholder="Negative prompt")
        with gr.Column(elem_id=f"{tab}_actions_column", scale=1):
            generate = gr.Button("Generate", elem_id=f"{tab}_generate", variant="primary")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt")
                skip = gr.Button("Skip", elem_id=f"{tab}_skip")

    with gr.Row(equal_height=False):
        with gr.Column(elem_id=f"{tab}_settings"):
            with gr.Row(elem_id=f"sampler_selection_{tab}"):
                sampler_names = sd_samplers.visible_sampler_names(opts.hide_samplers)
                sampler = gr.Dropdown(label="Sampling method", elem_id=f"{tab}_sampling", choices=sampler_names,
                                      value=sampler_names[0] if sampler_names else None)
                scheduler = gr.Dropdown(label="Schedule type", elem_id=f"{tab}_scheduler",
                                        choices=[s.label for s in sd_schedulers.schedulers],
                                        value=sd_schedulers.schedulers[0].label)
                steps = gr.Slider(minimum=1, maximum=150, step=1, label="Sampling steps", value=20,
                                  elem_id=f"{tab}_steps")
            with gr.Row():
                with gr.Column(elem_id=f"{tab}_column_size", scale=4):
                    width = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512,
                                      elem_id=f"{tab}_width")
                    height = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512,
                                       elem_id=f"{tab}_height")
                with gr.Column(elem_id=f"{tab}_column_batch"):
                    batch_count = gr.Slider(minimum=1, maximum=100, step=1, label="Batch count", value=1,
                                            elem_id=f"{tab}_batch_count")
                    batch_size = gr.Slider(minimum=1, maximum=8, step=1, label="Batch size", value=1,
                                           elem_id=f"{tab}_batch_size")
            cfg_scale = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, label="CFG Scale", value=7.0,
                                  elem_id=f"{tab}_cfg_scale")
            with gr.Row(elem_id=f"{tab}_seed_row"):
                seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed")
                random_seed = gr.Button(random_symbol, elem_id=f"{tab}_random_seed", scale=0, min_width=40)
            random_seed.click(lambda: -1, outputs=[seed])
            with gr.Group(elem_id=f"{tab}_script_container"):
                script_inputs = scripts.scripts_txt2img.setup_ui_sections()

        with gr.Column(elem_id=f"{tab}_results"):
            gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tab}_gallery", columns=4,
                                 preview=True, format="png", height="auto")
            generation_info = gr.Textbox(visible=False, elem_id=f"generation_info_{tab}")
            html_info = gr.HTML(elem_id=f"html_info_{tab}", elem_classes="infotext")
            html_log = gr.HTML(elem_id=f"html_log_{tab}", elem_classes="html-log")

    def run(prompt_, negative_, steps_, sampler_, scheduler_, width_, height_, n_iter_, batch_size_, cfg_, seed_,
            *script_args):
        try:
            p = txt2img.create_processing(prompt_, negative_, steps_, sampler_, scheduler_, width_, height_, n_iter_,
                                          batch_size_, cfg_, seed_)
            p.scripts = scripts.scripts_txt2img
            p.script_args = script_args
            images, info_js, info_html = call_queue.run_job("txt2img", txt2img.txt2img, p)
            return images, info_js, info_html, ""
        except UserError as e:
            return gr.update(), gr.update(), gr.update(), error_html(str(e))
        except Exception as e:  # keep serving; the traceback goes to the console
            log.exception("txt2img failed")
            return gr.update(), gr.update(), gr.update(), error_html(f"{type(e).__name__}: {e}")

    inputs = [prompt, negative_prompt, steps, sampler, scheduler, width, height, batch_count, batch_size, cfg_scale,
              seed, *script_inputs]
    outputs = [gallery, generation_info, html_info, html_log]
    generate.click(run, inputs=inputs, outputs=outputs, api_name="txt2img", concurrency_id="gpu")
    prompt.submit(run, inputs=inputs, outputs=outputs, concurrency_id="gpu")
    interrupt.click(lambda: shared.state.interrupt(), api_name=False)
    skip.click(lambda: shared.state.skip(), api_name=False)


def create_ui() -> gr.Blocks:
    gradio_compat.install()
    script_callbacks.before_ui_callback()
    scripts.scripts_txt2img.initialize_scripts(is_img2img=False)
    extension_tabs = script_callbacks.ui_tabs_callback()  # each extension builds its own gr.Blocks
    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        checkpoint, message = create_quicksettings()
        settings_json = ui_settings.create_settings_json()
        gr.HTML(ui_extensions.load_errors_banner(), elem_id="extension_load_errors")
        if not shared.cmd_opts.no_download_sd_model:
            with gr.Row(visible=not sd_models.checkpoints_list) as download_row:
                download = gr.Button("Download Stable Diffusion 1.5 (4 GB)", elem_id="download_sd15")
            download.click(download_sd15, outputs=[message, checkpoint], api_name="download_sd15").then(
                lambda: gr.update(visible=not sd_models.checkpoints_list), outputs=[download_row])
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img"):
                scripts.scripts_current = scripts.scripts_txt2img
                create_txt2img_tab()
                scripts.scripts_current = None
            for interface, label, ifid in extension_tabs:
                with gr.Tab(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                ui_settings.create_ui(settings_json)
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                ui_extensions.create_ui()
        gr.HTML(f"<div class='versions'>data: {html.escape(os.path.abspath(shared.data_path))}</div>")
    return demo
