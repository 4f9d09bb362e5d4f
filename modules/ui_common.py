"""UI helpers shared by tabs and used by extensions (A1111's `modules.ui_common`): the 🔄 refresh button and the
output panel (gallery, infotext, 📂 open folder, 💾 save, 🗃️ zip, send to img2img / inpaint / extras).
"""

from __future__ import annotations

import html
import json
import logging
import os
import platform
import subprocess
from collections.abc import Callable
from typing import Any

import gradio as gr

from modules import infotext_paste, paths_internal, save_outputs, shared, ui_infotext
from modules.errors import UserError
from modules.txt2img import plaintext_to_html  # A1111 extensions import it from ui_common
from modules.ui_components import ToolButton

log = logging.getLogger(__name__)

refresh_symbol = "\U0001f504"  # 🔄
folder_symbol = "\U0001f4c2"  # 📂
save_symbol = "\U0001f4be"  # 💾
zip_symbol = "\U0001f5c3\ufe0f"  # 🗃️
img2img_symbol = "\U0001f5bc\ufe0f"  # 🖼️
inpaint_symbol = "\U0001f3a8\ufe0f"  # 🎨️
extras_symbol = "\U0001f4d0"  # 📐
upscale_symbol = "\u2728"  # ✨


def create_refresh_button(refresh_component, refresh_method: Callable[[], Any], refreshed_args,
                          elem_id: str | None) -> ToolButton:
    """A 🔄 button: calls `refresh_method()`, then updates the component(s) with `refreshed_args` (a dict of
    properties such as choices, or a function returning one)."""
    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = next((getattr(c, "label", None) for c in components if getattr(c, "label", None)), None)

    def refresh():
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        args = dict(args or {})
        for key, value in args.items():
            for component in components:
                setattr(component, key, value)
        updates = [gr.update(**args) for _ in components]
        return updates if len(components) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id, tooltip=f"{label}: refresh" if label else "Refresh")
    button.click(fn=refresh, inputs=[], outputs=components, api_visibility="private")
    return button


def error_html(message: str) -> str:
    return f"<div class='error'>{html.escape(message)}</div>"


def open_folder(path: str) -> None:
    """Show a folder in the file manager of the machine running the server (only offered for a local server)."""
    path = os.path.normpath(path)
    if not os.path.isdir(path):
        raise UserError(f'Folder "{path}" does not exist yet; it is created when the first image is saved there.')
    if platform.system() == "Windows":
        os.startfile(path)  # noqa: S606 (a folder the user owns, on their own machine)
    elif platform.system() == "Darwin":
        subprocess.Popen(["open", path])
    elif "microsoft-standard-WSL2" in platform.uname().release:
        subprocess.Popen(["wsl-open", path])
    else:
        subprocess.Popen(["xdg-open", path])


def open_folder_allowed() -> bool:
    """📂 opens a window on the server's screen: useless (and hidden) for a server used from other machines."""
    return not (shared.cmd_opts.hide_ui_dir_config or shared.cmd_opts.webui_is_non_local)


def gallery_pictures(gallery: Any) -> list:
    """PIL images of a gallery value (file paths or (path, caption) pairs)."""
    return [picture for i in range(len(gallery or [])) if (picture := ui_infotext.image_from_gallery(gallery, i))]


class OutputPanel:
    gallery = None
    generation_info = None
    infotext = None
    html_log = None
    button_upscale = None
    selected_index = None


def create_output_panel(tabname: str, outdir: str | Callable[[], str], toprow: Any = None) -> OutputPanel:
    """The right-hand column of txt2img / img2img / extras."""
    res = OutputPanel()
    with gr.Column(elem_id=f"{tabname}_results"):
        with gr.Column(variant="panel", elem_id=f"{tabname}_results_panel"):
            with gr.Group(elem_id=f"{tabname}_gallery_container"):
                res.gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tabname}_gallery", columns=4,
                                         preview=True, height=shared.opts.gallery_height or "auto", format="png",
                                         interactive=False)
            res.selected_index = gr.Number(value=-1, precision=0, visible="hidden",
                                           elem_id=f"{tabname}_gallery_selected_index")
            res.selected_index.do_not_save_to_config = True
            res.gallery.selected_index_component = res.selected_index

            with gr.Row(elem_id=f"image_buttons_{tabname}", elem_classes="image-buttons"):
                open_button = ToolButton(folder_symbol, elem_id=f"{tabname}_open_folder",
                                         visible=open_folder_allowed(),
                                         tooltip="Open images output directory.")
                if tabname != "extras":
                    save = ToolButton(save_symbol, elem_id=f"save_{tabname}",
                                      tooltip="Save the image to a dedicated directory (log/images).")
                    save_zip = ToolButton(zip_symbol, elem_id=f"save_zip_{tabname}",
                                          tooltip="Save zip archive with images to a dedicated directory "
                                                  "(log/images)")
                buttons = {
                    "img2img": ToolButton(img2img_symbol, elem_id=f"{tabname}_send_to_img2img",
                                          tooltip="Send image and generation parameters to img2img tab."),
                    "inpaint": ToolButton(inpaint_symbol, elem_id=f"{tabname}_send_to_inpaint",
                                          tooltip="Send image and generation parameters to img2img inpaint tab."),
                    "extras": ToolButton(extras_symbol, elem_id=f"{tabname}_send_to_extras",
                                         tooltip="Send image and generation parameters to extras tab."),
                }
                if tabname == "txt2img":
                    res.button_upscale = ToolButton(upscale_symbol, elem_id=f"{tabname}_upscale",
                                                    tooltip="Create an upscaled version of the current image "
                                                            "using hires fix settings.")

            private = {"api_visibility": "private", "show_progress": "hidden"}
            html_open_message = gr.HTML(elem_id=f"html_open_{tabname}", visible="hidden")

            def open_output_folder():
                folder = outdir() if callable(outdir) else outdir
                try:
                    open_folder(paths_internal.data_relative(folder))
                except UserError as e:
                    return error_html(str(e))
                return ""

            open_button.click(fn=open_output_folder, outputs=[html_open_message], **private)

            download_files = gr.File(None, file_count="multiple", interactive=False, show_label=False,
                                     visible=False, elem_id=f"download_files_{tabname}")
            with gr.Group():
                res.infotext = gr.HTML(elem_id=f"html_info_{tabname}", elem_classes="infotext")
                res.html_log = gr.HTML(elem_id=f"html_log_{tabname}", elem_classes="html-log")
                res.generation_info = gr.Textbox(value="", visible="hidden", elem_id=f"generation_info_{tabname}")

            def select_picture(js_data: str, evt: gr.SelectData):
                index = evt.index if isinstance(evt.index, int) else -1
                text = ui_infotext.infotext_json(js_data, index)
                return index, plaintext_to_html(text) if text else gr.update()

            res.gallery.select(fn=select_picture, inputs=[res.generation_info],
                               outputs=[res.selected_index, res.infotext], **private)
            res.gallery.change(fn=lambda: -1, outputs=[res.selected_index], **private)

            if tabname != "extras":
                def save_files(js_data, gallery, index, do_make_zip):
                    try:
                        files, message = save_outputs.save_files(js_data, gallery_pictures(gallery), do_make_zip,
                                                                 int(index if index is not None else -1),
                                                                 shared.opts)
                    except UserError as e:
                        return gr.update(), error_html(str(e))
                    return gr.update(value=files, visible=True), plaintext_to_html(message)

                save.click(fn=lambda j, g, i: save_files(j, g, i, False),
                           inputs=[res.generation_info, res.gallery, res.selected_index],
                           outputs=[download_files, res.html_log], **private)
                save_zip.click(fn=lambda j, g, i: save_files(j, g, i, True),
                               inputs=[res.generation_info, res.gallery, res.selected_index],
                               outputs=[download_files, res.html_log], **private)

            for paste_tabname, button in buttons.items():
                infotext_paste.register_paste_params_button(infotext_paste.ParamBinding(
                    paste_button=button, tabname=paste_tabname,
                    source_tabname="txt2img" if tabname == "txt2img" else None,
                    source_image_component=res.gallery, paste_field_names=[]))
    return res


def reuse_seed(js_data: str, index: Any, is_subseed: bool) -> int:
    """♻️: the seed (or variation seed) of the selected picture of the last generation, else -1."""
    try:
        data = json.loads(js_data or "{}")
    except ValueError:
        return -1
    key = "all_subseeds" if is_subseed else "all_seeds"
    seeds = data.get(key) or []
    if not seeds:
        return -1
    index = int(index if index is not None else -1)
    first = int(data.get("index_of_first_image", 0))
    position = index - first if index >= first else 0
    return int(seeds[position] if 0 <= position < len(seeds) else seeds[0])
