"""The Checkpoint Merger tab (a1111-spec §1.7) with A1111's controls.

The merge itself belongs to the core merger (modules/extras_merge.py, A1111's `run_modelmerger` arguments);
until that module is present the Merge button says so instead of merging.
"""

from __future__ import annotations

import html
import importlib
import json
import logging
import os

import gradio as gr

from modules import sd_models, sd_vae, ui_generation
from modules.ui_common import create_refresh_button
from modules.ui_components import FormRow

log = logging.getLogger(__name__)

MERGER_MODULE = "modules.extras_merge"
DESCRIPTIONS = {
    "No interpolation": "<p>No interpolation will be used. Requires one model; A. Allows for format conversion "
                        "and VAE baking.</p>",
    "Weighted sum": "<p>A weighted sum will be used for interpolation. Requires two models; A and B. The result "
                    "is calculated as <code>A * (1 - M) + B * M</code></p>",
    "Add difference": "<p>The difference between the last two models will be added to the first. Requires three "
                      "models; A, B and C. The result is calculated as <code>A + (B - C) * M</code></p>",
}


def merger():
    """The core merger module, or None while it is not part of this build."""
    try:
        return importlib.import_module(MERGER_MODULE)
    except ModuleNotFoundError as e:
        if e.name != MERGER_MODULE:
            raise
        return None


def read_metadata(*names: str) -> str:
    """The safetensors metadata of the selected checkpoints, merged (later ones win), as JSON text."""
    metadata: dict = {}
    for name in names:
        info = sd_models.get_closet_checkpoint_match(name) if name else None
        if info is not None:
            metadata.update(info.metadata or {})
    return json.dumps(metadata, indent=4, ensure_ascii=False)


def merge_message(result) -> str:
    """The result line of the core merger's answer (a message, a written path, or A1111's list of updates)."""
    if isinstance(result, (list, tuple)):
        result = result[-1] if result else ""
    text = str(result or "")
    if os.path.isfile(text):
        text = f"Checkpoint saved to {text}"
    return html.escape(text)


def run_merge(id_task: str, *args) -> tuple:
    module = merger()
    if module is None:
        return (*[gr.update()] * 4, "<div class='error'>Checkpoint merging is not available yet in this build (the "
                                    "merger core, modules/extras_merge.py, is not installed).</div>")

    def job():
        result = module.run_modelmerger(id_task, *args)
        sd_models.list_models()
        choices = sd_models.checkpoint_tiles()
        return (*[gr.update(choices=choices)] * 4, merge_message(result))

    return ui_generation.run_as_task("model-merge", id_task, job, 5)


def create_ui(quicksettings_checkpoint=None) -> None:
    private = {"api_visibility": "private", "show_progress": "hidden"}
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            interp_description = gr.HTML(value=DESCRIPTIONS["Weighted sum"], elem_id="modelmerger_interp_description")
            with FormRow(elem_id="modelmerger_models"):
                tiles = sd_models.checkpoint_tiles()
                primary = gr.Dropdown(tiles, elem_id="modelmerger_primary_model_name", label="Primary model (A)")
                create_refresh_button(primary, sd_models.list_models, lambda: {"choices": sd_models.checkpoint_tiles()},
                                      "refresh_checkpoint_A")
                secondary = gr.Dropdown(tiles, elem_id="modelmerger_secondary_model_name",
                                        label="Secondary model (B)")
                create_refresh_button(secondary, sd_models.list_models,
                                      lambda: {"choices": sd_models.checkpoint_tiles()}, "refresh_checkpoint_B")
                tertiary = gr.Dropdown(tiles, elem_id="modelmerger_tertiary_model_name", label="Tertiary model (C)")
                create_refresh_button(tertiary, sd_models.list_models,
                                      lambda: {"choices": sd_models.checkpoint_tiles()}, "refresh_checkpoint_C")
            custom_name = gr.Textbox(value="", label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            interp_amount = gr.Slider(minimum=0.0, maximum=1.0, step=0.05, value=0.3,
                                      label="Multiplier (M) - set to 0 to get model A",
                                      elem_id="modelmerger_interp_amount")
            interp_method = gr.Radio(choices=list(DESCRIPTIONS), value="Weighted sum", label="Interpolation Method",
                                     elem_id="modelmerger_interp_method")
            with FormRow():
                checkpoint_format = gr.Radio(choices=["ckpt", "safetensors"], value="safetensors",
                                             label="Checkpoint format", elem_id="modelmerger_checkpoint_format")
                save_as_half = gr.Checkbox(value=False, label="Save as float16", elem_id="modelmerger_save_as_half")
            with FormRow():
                with gr.Column():
                    config_source = gr.Radio(choices=["A, B or C", "B", "C", "Don't"], value="A, B or C",
                                             label="Copy config from", type="index",
                                             elem_id="modelmerger_config_method")
                with gr.Column():
                    with FormRow():
                        vae_choices = lambda: ["None", *sd_vae.vae_dict]  # noqa: E731
                        bake_in_vae = gr.Dropdown(choices=vae_choices(), value="None", label="Bake in VAE",
                                                  elem_id="modelmerger_bake_in_vae")
                        create_refresh_button(bake_in_vae, sd_vae.refresh_vae_list, lambda: {"choices": vae_choices()},
                                              "modelmerger_refresh_bake_in_vae")
            with FormRow():
                discard_weights = gr.Textbox(value="", label="Discard weights with matching name",
                                             elem_id="modelmerger_discard_weights")
            with gr.Accordion("Metadata", open=False):
                with FormRow():
                    save_metadata = gr.Checkbox(value=True, label="Save metadata", elem_id="modelmerger_save_metadata")
                    add_merge_recipe = gr.Checkbox(value=True, label="Add merge recipe metadata",
                                                   elem_id="modelmerger_add_recipe")
                    copy_metadata_fields = gr.Checkbox(value=True, label="Copy metadata from merged models",
                                                       elem_id="modelmerger_copy_metadata")
                metadata_json = gr.TextArea("{}", label="Metadata in JSON format", elem_id="modelmerger_metadata_json")
                read_metadata_button = gr.Button("Read metadata from selected checkpoints",
                                                 elem_id="modelmerger_read_metadata")
            with FormRow():
                merge = gr.Button(value="Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
            with gr.Group(elem_id="modelmerger_results_panel"):
                result = gr.HTML(elem_id="modelmerger_result", show_label=False)

    id_task = gr.Textbox(value="", visible="hidden", label="id_task", elem_id="modelmerger_id_task")
    id_task.do_not_save_to_config = True
    interp_method.change(fn=lambda m: DESCRIPTIONS.get(m, ""), inputs=[interp_method], outputs=[interp_description],
                         **private)
    read_metadata_button.click(fn=read_metadata, inputs=[primary, secondary, tertiary], outputs=[metadata_json],
                               **private)
    checkpoint_output = quicksettings_checkpoint if quicksettings_checkpoint is not None else gr.State()
    merge.click(fn=run_merge, js="(...args) => submit_generation('modelmerger', args, 0)",
                inputs=[id_task, primary, secondary, tertiary, interp_method, interp_amount, save_as_half, custom_name,
                        checkpoint_format, config_source, bake_in_vae, discard_weights, save_metadata,
                        add_merge_recipe, copy_metadata_fields, metadata_json],
                outputs=[primary, secondary, tertiary, checkpoint_output, result], concurrency_limit=None, **private)
