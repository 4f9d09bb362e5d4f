"""A1111's small UI building blocks (`modules.ui_components`), which many extensions import.

They are thin subclasses of Gradio 6 components that render as the built-in component (`get_block_name`) with
A1111's extra CSS classes.
"""

from __future__ import annotations

import gradio as gr

from modules import gradio_compat

gradio_compat.install()  # before the subclasses below are created (gradio would write .pyi files for them)


class FormComponent:
    """Marker A1111 used to let a component sit inside a form row."""

    webui_do_not_create_gradio_pyi_thank_you = True

    def get_expected_parent(self):
        return gr.components.Form


class ToolButton(gr.Button, FormComponent):
    """Small button with a single emoji as text."""

    def __init__(self, *args, **kwargs):
        classes = kwargs.pop("elem_classes", None) or []
        classes = [classes] if isinstance(classes, str) else list(classes)
        kwargs.setdefault("scale", 0)
        kwargs.setdefault("min_width", 40)
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)

    def get_block_name(self):
        return "button"


class ResizeHandleRow(gr.Row):
    """A row whose two columns can be resized by dragging (A1111's resizeHandle.js)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.elem_classes = [*(self.elem_classes or []), "resize-handle-row"]

    def get_block_name(self):
        return "row"


class FormRow(gr.Row, FormComponent):
    def get_block_name(self):
        return "row"


class FormColumn(gr.Column, FormComponent):
    def get_block_name(self):
        return "column"


class FormGroup(gr.Group, FormComponent):
    def get_block_name(self):
        return "group"


class FormHTML(gr.HTML, FormComponent):
    def get_block_name(self):
        return "html"


class FormColorPicker(gr.ColorPicker, FormComponent):
    def get_block_name(self):
        return "colorpicker"


class DropdownMulti(gr.Dropdown, FormComponent):
    """A dropdown that is always multiselect."""

    def __init__(self, **kwargs):
        kwargs["multiselect"] = True
        super().__init__(**kwargs)

    def get_block_name(self):
        return "dropdown"


class DropdownEditable(gr.Dropdown, FormComponent):
    """A dropdown that also accepts typed values."""

    def __init__(self, **kwargs):
        kwargs["allow_custom_value"] = True
        super().__init__(**kwargs)

    def get_block_name(self):
        return "dropdown"


class InputAccordion(gr.Checkbox):
    """An accordion that is an input: its value is True while it is open.

    A hidden checkbox holds the value; opening/closing the accordion sets it (in the browser, no server round
    trip), and setting the checkbox (e.g. from pasted infotext) opens or closes the accordion. Use it as
    `with InputAccordion(False, label="...") as acc:`; `acc.extra()` is a column in the accordion's header area.
    """

    global_index = 0

    def __init__(self, value: bool = False, **kwargs):
        from gradio.context import Context

        if Context.root_block is None:
            # Gradio re-creates an output component from its settings to apply an update (a pasted value):
            # that copy is just the checkbox, the accordion already exists on the page.
            super().__init__(value, **kwargs)
            self.accordion = None
            return
        self.accordion_id = kwargs.get("elem_id")
        if self.accordion_id is None:
            self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
            InputAccordion.global_index += 1
        checkbox_kwargs = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": "hidden"}
        super().__init__(value, **checkbox_kwargs)
        self.accordion = gr.Accordion(label=kwargs.get("label", "Accordion"), open=bool(value),
                                      elem_id=self.accordion_id, elem_classes=["input-accordion"],
                                      visible=kwargs.get("visible", True))
        self.accordion.expand(fn=None, js="() => true", outputs=[self], api_visibility="private")
        self.accordion.collapse(fn=None, js="() => false", outputs=[self], api_visibility="private")
        self.change(fn=lambda checked: gr.update(open=bool(checked)), inputs=[self], outputs=[self.accordion],
                    api_visibility="private", queue=False)

    def extra(self):
        return gr.Column(elem_id=self.accordion_id + "-extra", elem_classes="input-accordion-extra", min_width=0)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.accordion.__exit__(exc_type, exc_val, exc_tb)

    def get_block_name(self):
        return "checkbox"
