"""The Gradio page (a1111-spec §1): the quicksettings row above the tabs txt2img, img2img, Extras, PNG Info,
Checkpoint Merger, the extensions' tabs, Settings and Extensions (ui_tab_order / hidden_tabs), with A1111's
element ids, and the footer.

Each tab lives in its own module (modules/ui_<tab>.py); handlers are thin: they build a processing object
through the core and render the result. Errors a user can cause are shown under the gallery; the server keeps
serving.
"""

from __future__ import annotations

import html
import logging
import platform
from collections.abc import Callable

import gradio as gr

from modules import (
    gradio_compat,
    infotext_paste,
    model_download,
    script_callbacks,
    scripts,
    sd_models,
    shared,
    ui_checkpoint_merger,
    ui_extensions,
    ui_extra_networks,
    ui_img2img,
    ui_infotext,
    ui_loadsave,
    ui_pnginfo,
    ui_postprocessing,
    ui_settings,
    ui_txt2img,
)
from modules.errors import UserError
from modules.ui_common import create_refresh_button, error_html, plaintext_to_html  # noqa: F401 (A1111 surface)

log = logging.getLogger(__name__)

refresh_symbol = "\U0001f504"  # 🔄
random_symbol = "\U0001f3b2\ufe0f"  # 🎲
reuse_symbol = "\u267b\ufe0f"  # ♻️
paste_symbol = "\u2199\ufe0f"  # ↙️
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
apply_style_symbol = "\U0001f4cb"  # 📋
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
extra_networks_symbol = "\U0001f3b4"  # 🎴
switch_values_symbol = "\u21c5"  # ⇅
restore_progress_symbol = "\U0001f300"  # 🌀
detect_image_size_symbol = "\U0001f4d0"  # 📐

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
    return f"Downloaded to {html.escape(path)}.", gr.update(choices=sd_models.checkpoint_tiles())


def versions_html() -> str:
    import torch

    checkpoint = shared.opts.sd_checkpoint_hash[:10] if shared.opts.sd_checkpoint_hash else "N/A"
    parts = [f"python: {platform.python_version()}", f"torch: {torch.__version__}", f"gradio: {gr.__version__}",
             f"checkpoint: {checkpoint}"]
    return " &#x2000;•&#x2000; ".join(html.escape(p) for p in parts)


def footer_html() -> str:
    api = "<a href='./docs'>API</a>" if shared.cmd_opts.api else ""
    links = " &#x2000;•&#x2000; ".join(x for x in (
        api, "<a href='https://gradio.app'>Gradio</a>", "<a href='#' onclick='location.reload()'>Reload UI</a>") if x)
    return f"<div>{links}</div><br><div class='versions'>{versions_html()}</div>"


def ordered_tabs(tabs: list[tuple[str, str, Callable[[], None]]]) -> list[tuple[str, str, Callable[[], None]]]:
    """ui_tab_order first (by label), the rest in place; hidden_tabs removed (Settings always stays)."""
    hidden = set(shared.opts.hidden_tabs or [])
    tabs = [t for t in tabs if t[0] not in hidden or t[1] == "settings"]
    order = {label: i for i, label in enumerate(shared.opts.ui_tab_order or [])}
    return sorted(tabs, key=lambda t: order.get(t[0], len(order) + tabs.index(t)))


def create_ui() -> gr.Blocks:
    gradio_compat.install()
    infotext_paste.reset()
    script_callbacks.before_ui_callback()
    ui_extra_networks.initialize()
    ui_extra_networks.register_default_pages()
    scripts.scripts_txt2img.initialize_scripts(is_img2img=False)
    scripts.scripts_img2img.initialize_scripts(is_img2img=True)
    extension_tabs = script_callbacks.ui_tabs_callback()  # each extension builds its own gr.Blocks
    loadsave = ui_loadsave.UiLoadsave(shared.cmd_opts.ui_config_file)
    settings = ui_settings.UiSettings()

    with gr.Blocks(title="Stable Diffusion", analytics_enabled=False) as demo:
        settings.create_quicksettings()
        settings.settings_json = ui_settings.create_settings_json()
        gr.HTML(ui_extensions.load_errors_banner(), elem_id="extension_load_errors")
        message = gr.HTML(no_model_banner(), elem_id="no_model_message")
        if not shared.cmd_opts.no_download_sd_model:
            with gr.Row(visible=not sd_models.checkpoints_list) as download_row:
                download = gr.Button("Download Stable Diffusion 1.5 (4 GB)", elem_id="download_sd15")
            quick_checkpoint = settings.quicksettings.get("sd_model_checkpoint") or gr.State()
            download.click(download_sd15, outputs=[message, quick_checkpoint], api_name="download_sd15").then(
                lambda: gr.update(visible=not sd_models.checkpoints_list), outputs=[download_row])

        checkpoint = settings.quicksettings.get("sd_model_checkpoint")
        tabs: list[tuple[str, str, Callable[[], None]]] = [
            ("txt2img", "txt2img", ui_txt2img.create_ui),
            ("img2img", "img2img", ui_img2img.create_ui),
            ("Extras", "extras", ui_postprocessing.create_ui),
            ("PNG Info", "pnginfo", ui_pnginfo.create_ui),
            ("Checkpoint Merger", "modelmerger", lambda: ui_checkpoint_merger.create_ui(checkpoint)),
        ]
        for interface, label, ifid in extension_tabs:
            tabs.append((label, ifid, interface.render))
        tabs.append(("Settings", "settings", lambda: settings.create_ui(loadsave)))
        tabs.append(("Extensions", "extensions", ui_extensions.create_ui))

        settings_tab = None
        with gr.Tabs(elem_id="tabs"):
            for label, ifid, build in ordered_tabs(tabs):
                with gr.Tab(label, id=ifid, elem_id=f"tab_{ifid}") as tab:
                    scripts.scripts_current = {"txt2img": scripts.scripts_txt2img,
                                               "img2img": scripts.scripts_img2img}.get(ifid)
                    try:
                        build()
                    finally:
                        scripts.scripts_current = None
                if ifid == "settings":
                    settings_tab = tab
                elif ifid != "extensions":
                    loadsave.add_block(tab, ifid)

        gr.HTML(footer_html(), elem_id="footer")
        ui_infotext.connect_paste_params_buttons()
        settings.add_functionality(demo, settings_tab)
        loadsave.setup_ui()
        loadsave.dump_defaults()
    return demo
