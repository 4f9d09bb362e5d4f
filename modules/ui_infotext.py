"""Pasting infotexts into the page (a1111-spec §6.4): the ↙️ button, PNG Info's "Send to" buttons and the output
panel's "Send to img2img / inpaint / extras".

Each tab registers its fields with `infotext_paste.add_paste_fields(tab, init_img, [(component, label or
function)])`; the bindings made with `register_paste_params_button` are wired once every tab exists
(`connect_paste_params_buttons`). Values are converted to each component's type; a value a control cannot take
(an unknown sampler, text in a number field) leaves that control unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import gradio as gr
from PIL import Image

from modules import images, infotext_paste, infotext_utils, script_callbacks, shared
from modules.errors import UserError

log = logging.getLogger(__name__)

SEND_FIELD_NAMES = ["Prompt", "Negative prompt", "Steps", "Face restoration"]


def read_params_txt() -> str:
    """The last generation's infotext (params.txt), for ↙️ with an empty prompt."""
    if shared.cmd_opts.no_prompt_history:
        return ""
    path = os.path.join(shared.data_path, "params.txt")
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf8") as f:
        return f.read()


def convert_value(component: Any, value: Any) -> Any:
    """`value` (text from an infotext, or a parsed value) in the type `component` holds; raises ValueError."""
    if isinstance(component, gr.Checkbox):
        return value if isinstance(value, bool) else str(value).strip() != "False"
    if isinstance(component, (gr.Slider, gr.Number)):
        number = float(value)
        precision = getattr(component, "precision", None)
        step = getattr(component, "step", None)
        if precision == 0 or (isinstance(step, int) and not isinstance(step, bool) and float(number).is_integer()):
            return int(number)
        return number
    if isinstance(component, (gr.Dropdown, gr.Radio)):
        choices = [c[1] if isinstance(c, (tuple, list)) else c for c in (component.choices or [])]
        if getattr(component, "multiselect", False):
            values = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
            return [v for v in values if v in choices or getattr(component, "allow_custom_value", False)]
        if getattr(component, "type", "value") == "index":
            return int(value) if not isinstance(value, str) else choices.index(value)
        if value not in choices and not getattr(component, "allow_custom_value", False):
            raise ValueError(f"{value!r} is not one of the choices")
        return value
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def field_updates(fields: list, params: dict[str, Any]) -> list:
    """One update per field for a parsed infotext."""
    updates = []
    for component, target in fields:
        value = target(params) if callable(target) else params.get(target)
        if value is None:
            updates.append(gr.update())
        elif isinstance(value, dict) and value.get("__type__") == "update":
            updates.append(value)
        else:
            try:
                updates.append(gr.update(value=convert_value(component, value)))
            except (TypeError, ValueError):
                log.debug("Not pasting %r into %s", value, getattr(component, "elem_id", component))
                updates.append(gr.update())
    return updates


def override_settings_update(params: dict[str, Any], tabname: str) -> Any:
    """The Override settings selector after a paste: shown with the settings the infotext changes."""
    skip = set(shared.opts.infotext_skip_pasting or [])
    entries = [f"{label}: {value}" for label, _key, value in
               infotext_paste.get_override_settings(params, shared.opts, skip_fields=skip)]
    return gr.update(value=entries, choices=entries, visible=bool(entries))


def parse(text: str) -> dict[str, Any]:
    params = infotext_utils.parse_generation_parameters(text, opts=shared.opts, styles=shared.prompt_styles)
    script_callbacks.infotext_pasted_callback(text, params)
    return params


def connect_paste(button: Any, fields: list, input_comp: Any, override_settings_component: Any,
                  tabname: str) -> None:
    """`button` pastes the infotext in `input_comp` (or params.txt when it is empty) into `fields`."""
    outputs = [f[0] for f in fields]
    if override_settings_component is not None:
        outputs.append(override_settings_component)

    def paste(text: str):
        text = text or ""
        if not text.strip():
            text = read_params_txt()
        params = parse(text)
        result = field_updates(fields, params)
        if override_settings_component is not None:
            result.append(override_settings_update(params, tabname))
        return result

    button.click(fn=paste, inputs=[input_comp], outputs=outputs, show_progress="hidden", api_visibility="private")


def image_from_gallery(gallery: Any, index: Any) -> Image.Image | None:
    """The selected picture of a gallery value (the first when none is selected)."""
    if not gallery:
        return None
    index = int(index) if index is not None and int(index) >= 0 and int(index) < len(gallery) else 0
    item = gallery[index]
    path = item[0] if isinstance(item, (tuple, list)) else (item.get("image", item) if isinstance(item, dict) else item)
    if isinstance(path, dict):
        path = path.get("path")
    if isinstance(path, Image.Image):
        return path
    if not path:
        return None
    return images.read(path)


def _destination_size(fields: list) -> tuple[Any, Any]:
    width = next((c for c, name in fields if name == "Size-1"), None)
    height = next((c for c, name in fields if name == "Size-2"), None)
    return width, height


def connect_paste_params_buttons() -> None:
    """Wire every registered "Send to" binding: the image into the target's image input (with its size when
    send_size is on), the infotext into the target's fields, or the source tab's prompt fields copied over."""
    for binding in infotext_paste.registered_param_bindings:
        target = infotext_paste.paste_fields.get(binding.tabname)
        if target is None:
            continue
        fields = target["fields"] or []
        destination_image = target["init_img"]
        private = {"api_visibility": "private", "show_progress": "hidden"}

        if binding.source_image_component is not None and destination_image is not None:
            width, height = _destination_size(fields)
            sources = [binding.source_image_component]
            if isinstance(binding.source_image_component, gr.Gallery):
                sources.append(getattr(binding.source_image_component, "selected_index_component", None)
                               or gr.State(-1))
            else:
                sources.append(gr.State(0))
            with_size = width is not None and height is not None

            def send_image(source, index, with_size=with_size, is_gallery=isinstance(binding.source_image_component,
                                                                                      gr.Gallery)):
                picture = image_from_gallery(source, index) if is_gallery else source
                if isinstance(picture, str):
                    picture = images.read(picture)
                if with_size:
                    if picture is None or not shared.opts.send_size:
                        return picture, gr.update(), gr.update()
                    return picture, picture.width, picture.height
                return picture

            outputs = [destination_image, width, height] if with_size else [destination_image]
            binding.paste_button.click(fn=send_image, inputs=sources, outputs=outputs, **private)

        if binding.source_text_component is not None and fields:
            connect_paste(binding.paste_button, fields, binding.source_text_component,
                          target.get("override_settings_component"), binding.tabname)

        if binding.source_tabname is not None and fields:
            names = SEND_FIELD_NAMES + (["Seed"] if shared.opts.send_seed else []) + binding.paste_field_names
            source_fields = infotext_paste.paste_fields.get(binding.source_tabname, {}).get("fields") or []
            by_name = {name: c for c, name in source_fields if isinstance(name, str)}
            pairs = [(by_name[name], c) for c, name in fields if isinstance(name, str) and name in by_name
                     and name in names]
            if pairs:
                binding.paste_button.click(fn=lambda *values: values if len(values) > 1 else values[0],
                                           inputs=[s for s, _ in pairs], outputs=[d for _, d in pairs], **private)

        binding.paste_button.click(fn=None, js=f"switch_to_{binding.tabname}", **private)


def create_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """A1111's "Send to <tab>" buttons (extensions call this through modules.infotext_utils)."""
    buttons = {}
    for tab in tabs_list:
        name = "inpaint" if tab == "inpaint" else tab
        buttons[tab] = gr.Button(f"Send to {name}", elem_id=f"{tab}_tab")
    return buttons


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    """Register `buttons` (from create_buttons) to send an image and/or an infotext (text component or tab name)."""
    for tabname, button in buttons.items():
        source_text = send_generate_info if isinstance(send_generate_info, gr.components.Component) else None
        source_tab = send_generate_info if isinstance(send_generate_info, str) else None
        infotext_paste.register_paste_params_button(infotext_paste.ParamBinding(
            paste_button=button, tabname=tabname, source_text_component=source_text,
            source_image_component=send_image, source_tabname=source_tab))


def image_info(image: Any) -> str:
    """The infotext of an uploaded picture (a file path or an image; dropped onto a prompt), or "" when it has
    none or is not a picture."""
    if image is None:
        return ""
    if not isinstance(image, Image.Image):
        try:
            image = images.read(str(image))
        except UserError as e:
            log.info("No infotext: %s", e)
            return ""
    geninfo, _items = images.read_info_from_image(image)
    return geninfo or ""


def infotext_json(js_data: str, index: int) -> str:
    """The infotext of gallery picture `index` of a generation (Processed.js() JSON; its infotexts follow the
    gallery, grid included)."""
    try:
        data = json.loads(js_data or "{}")
    except ValueError:
        return ""
    infotexts = data.get("infotexts") or [] if isinstance(data, dict) else []
    if 0 <= index < len(infotexts):
        return infotexts[index]
    return infotexts[0] if infotexts else ""
