"""Parts txt2img and img2img share: sampler and steps, the seed block, the override-settings selector, the
paste fields they have in common, and running a generation as a task the page can follow (/internal/progress)
and re-attach to after a reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from modules import call_queue, infotext_paste, progress, sd_samplers, sd_schedulers, shared
from modules.errors import UserError
from modules.ui_common import error_html, reuse_seed
from modules.ui_components import FormRow, ToolButton

log = logging.getLogger(__name__)

random_symbol = "\U0001f3b2\ufe0f"  # 🎲
reuse_symbol = "\u267b\ufe0f"  # ♻️


def sampler_names() -> list[str]:
    return sd_samplers.visible_sampler_names(shared.opts.hide_samplers)


def scheduler_labels() -> list[str]:
    return [s.label for s in sd_schedulers.schedulers]


def create_sampler_and_steps_selection(tabname: str) -> tuple[Any, Any, Any]:
    """Sampling method (dropdown, or radio when samplers_in_dropdown is off), Schedule type, Sampling steps."""
    names = sampler_names()
    default = names[0] if names else None
    if shared.opts.samplers_in_dropdown:
        with FormRow(elem_id=f"sampler_selection_{tabname}"):
            sampler = gr.Dropdown(label="Sampling method", elem_id=f"{tabname}_sampling", choices=names,
                                  value=default)
            scheduler = gr.Dropdown(label="Schedule type", elem_id=f"{tabname}_scheduler",
                                    choices=scheduler_labels(), value=scheduler_labels()[0])
            steps = gr.Slider(minimum=1, maximum=150, step=1, elem_id=f"{tabname}_steps", label="Sampling steps",
                              value=20)
    else:
        with gr.Group(elem_id=f"sampler_selection_{tabname}"):
            steps = gr.Slider(minimum=1, maximum=150, step=1, elem_id=f"{tabname}_steps", label="Sampling steps",
                              value=20)
            sampler = gr.Radio(label="Sampling method", elem_id=f"{tabname}_sampling", choices=names, value=default)
            scheduler = gr.Dropdown(label="Schedule type", elem_id=f"{tabname}_scheduler",
                                    choices=scheduler_labels(), value=scheduler_labels()[0])
    return sampler, scheduler, steps


@dataclass
class SeedInputs:
    seed: Any
    seed_checkbox: Any
    subseed: Any
    subseed_strength: Any
    seed_resize_from_w: Any
    seed_resize_from_h: Any
    reuse_seed: Any
    reuse_subseed: Any

    def components(self) -> list:
        return [self.seed, self.seed_checkbox, self.subseed, self.subseed_strength, self.seed_resize_from_w,
                self.seed_resize_from_h]

    def paste_fields(self) -> list:
        return [
            (self.seed, "Seed"),
            (self.seed_checkbox, lambda d: "Variation seed" in d or "Seed resize from-1" in d),
            (self.subseed, "Variation seed"),
            (self.subseed_strength, "Variation seed strength"),
            (self.seed_resize_from_w, "Seed resize from-1"),
            (self.seed_resize_from_h, "Seed resize from-2"),
        ]

    def connect_reuse(self, generation_info, selected_index) -> None:
        private = {"api_visibility": "private", "show_progress": "hidden"}
        self.reuse_seed.click(fn=lambda j, i: reuse_seed(j, i, False), inputs=[generation_info, selected_index],
                              outputs=[self.seed], **private)
        self.reuse_subseed.click(fn=lambda j, i: reuse_seed(j, i, True), inputs=[generation_info, selected_index],
                                 outputs=[self.subseed], **private)


def create_seed_inputs(tabname: str) -> SeedInputs:
    """Seed (a text box with --use-textbox-seed), 🎲 ♻️, and behind "Extra" the variation seed and resize-from."""
    with gr.Row(elem_id=f"{tabname}_seed_row"):
        if shared.cmd_opts.use_textbox_seed:
            seed = gr.Textbox(label="Seed", value="-1", elem_id=f"{tabname}_seed", min_width=100)
        else:
            seed = gr.Number(label="Seed", value=-1, elem_id=f"{tabname}_seed", min_width=100, precision=0)
        random_seed = ToolButton(random_symbol, elem_id=f"{tabname}_random_seed",
                                 tooltip="Set seed to -1, which will cause a new random number to be used every time")
        reuse = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_seed",
                           tooltip="Reuse seed from last generation, mostly useful if it was randomized")
        seed_checkbox = gr.Checkbox(label="Extra", elem_id=f"{tabname}_subseed_show", value=False, scale=0,
                                    min_width=60)
    with gr.Group(visible=False, elem_id=f"{tabname}_seed_extras") as seed_extras:
        with gr.Row(elem_id=f"{tabname}_subseed_row"):
            subseed = gr.Number(label="Variation seed", value=-1, elem_id=f"{tabname}_subseed", precision=0)
            random_subseed = ToolButton(random_symbol, elem_id=f"{tabname}_random_subseed")
            reuse_subseed = ToolButton(reuse_symbol, elem_id=f"{tabname}_reuse_subseed")
            subseed_strength = gr.Slider(label="Variation strength", value=0.0, minimum=0, maximum=1, step=0.01,
                                         elem_id=f"{tabname}_subseed_strength")
        with gr.Row(elem_id=f"{tabname}_seed_resize_from_row"):
            seed_resize_from_w = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from width", value=0,
                                           elem_id=f"{tabname}_seed_resize_from_w")
            seed_resize_from_h = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from height", value=0,
                                           elem_id=f"{tabname}_seed_resize_from_h")
    private = {"api_visibility": "private", "show_progress": "hidden"}
    random_seed.click(fn=lambda: -1, outputs=[seed], **private)
    random_subseed.click(fn=lambda: -1, outputs=[subseed], **private)
    seed_checkbox.change(fn=lambda x: gr.update(visible=bool(x)), inputs=[seed_checkbox], outputs=[seed_extras],
                         **private)
    return SeedInputs(seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h, reuse,
                      reuse_subseed)


def seed_arguments(seed: Any, seed_checkbox: bool, subseed: Any, subseed_strength: float, seed_resize_from_w: Any,
                   seed_resize_from_h: Any) -> dict[str, Any]:
    """Processing arguments of the seed block: the variation seed and resize-from count only with "Extra" on."""
    try:
        seed = int(float(seed)) if seed not in (None, "") else -1
    except ValueError:
        raise UserError(f"Seed must be a whole number (or -1 for a random one), not {seed!r}.") from None
    args: dict[str, Any] = {"seed": seed}
    if seed_checkbox and subseed_strength and float(subseed_strength) > 0:
        args["subseed"] = int(subseed if subseed not in (None, "") else -1)
        args["subseed_strength"] = float(subseed_strength)
    if seed_checkbox and seed_resize_from_w and seed_resize_from_h and seed_resize_from_w > 0 \
            and seed_resize_from_h > 0:
        args["seed_resize_from_w"] = int(seed_resize_from_w)
        args["seed_resize_from_h"] = int(seed_resize_from_h)
    return args


def create_override_settings_dropdown(tabname: str) -> Any:
    """Hidden until a pasted infotext carries settings that differ from the current ones ("Clip skip: 2")."""
    with FormRow(elem_id=f"{tabname}_override_settings_row"):
        return gr.Dropdown([], value=[], label="Override settings", visible=False,
                           elem_id=f"{tabname}_override_settings", multiselect=True, allow_custom_value=True)


def override_settings(texts: list[str] | None) -> dict[str, Any]:
    return infotext_paste.create_override_settings_dict(texts or [], shared.opts)


def core_paste_fields(components: dict[str, Any]) -> list:
    """(component, infotext label or function) for each processing argument the core knows how to read from an
    infotext (infotext_paste.PROCESSING_ARGS_FROM_INFOTEXT), for the components given by argument name.

    Hires. fix is the exception: the core leaves it alone for an infotext without hires keys, A1111's paste turns
    it off (so pasting a plain infotext after a hires one gives the plain image)."""
    fields = []
    for name, source, _convert in infotext_paste.PROCESSING_ARGS_FROM_INFOTEXT:
        if name not in components:
            continue
        if name == "enable_hr":
            fields.append((components[name], lambda d, source=source: bool(source(d))))
        else:
            fields.append((components[name], source))
    return fields


def run_as_task(task_type: str, id_task: str, func: Callable[[], tuple], n_outputs: int) -> tuple:
    """Run a generation in the shared queue as a task the page can follow and re-attach to.

    Returns func()'s outputs; a UserError (or any failure) becomes a message in the last output (html_log) and
    leaves the other outputs unchanged, so the server keeps serving.
    """
    id_task = id_task or progress.create_task_id(task_type)
    progress.add_task_to_queue(id_task)

    def job():
        progress.start_task(id_task)
        return func()

    try:
        result = call_queue.run_job(task_type, job)
    except UserError as e:
        result = (*[gr.update()] * (n_outputs - 1), error_html(str(e)))
    except Exception as e:  # keep serving; the traceback goes to the console
        log.exception("%s failed", task_type)
        result = (*[gr.update()] * (n_outputs - 1), error_html(f"{type(e).__name__}: {e}"))
    finally:
        progress.finish_task(id_task)
    progress.record_results(id_task, result)
    return result


def restore_progress(id_task: str, n_outputs: int) -> tuple:
    """🌀: wait for the task to finish and return what it produced (nothing changes when it is unknown)."""
    result = progress.restore_progress(id_task) if id_task else None
    if result is None:
        return tuple([gr.update()] * n_outputs)
    return result
