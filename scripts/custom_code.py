"""Custom code: run Python with the processing object `p` (only with --allow-code, checked again in run())."""

import textwrap
import types

import gradio as gr

from modules import processing, scripts
from modules.errors import UserError
from modules.shared import cmd_opts

EXAMPLE = """from modules.processing import process_images

p.width = 768
p.height = 768
p.batch_size = 2
p.steps = 10

return process_images(p)
"""


class Script(scripts.Script):
    def title(self):
        return "Custom code"

    def show(self, is_img2img):
        return bool(cmd_opts.allow_code)

    def ui(self, is_img2img):
        code = gr.Code(value=EXAMPLE, language="python", label="Python code", elem_id=self.elem_id("code"))
        indent_level = gr.Number(label="Indent level", value=2, precision=0, elem_id=self.elem_id("indent_level"))
        return [code, indent_level]

    def run(self, p, code, indent_level=2):
        # The UI hides this script without --allow-code; API requests must be refused here too.
        if not cmd_opts.allow_code:
            raise UserError("Custom code is disabled: start with --allow-code to run Python from the UI or API.")
        shown: list = []

        def display(imgs, seed=-1, info=""):
            shown[:] = [list(imgs), seed, info]

        module = types.ModuleType("custom_code")
        module.__dict__.update({"p": p, "display": display, "processing": processing})
        indent = " " * max(0, int(indent_level or 0))
        body = "def __webuitemp__():\n" + textwrap.indent(code or "pass", indent or " ")
        exec(compile(body, "<custom code>", "exec"), module.__dict__)  # noqa: S102 (the point of this script)
        result = module.__dict__["__webuitemp__"]()
        if isinstance(result, processing.Processed):
            return result
        images, seed, info = shown if shown else ([], -1, "")
        return processing.Processed(p, images, seed, info)
