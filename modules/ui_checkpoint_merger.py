"""The Checkpoint Merger tab (A1111's controls and element ids, a1111-spec §1.7) plus block weights; the work is
modules/extras_merge.py.

Wiring (as A1111's ui.py does it)::

    merger = ui_checkpoint_merger.UiCheckpointMerger()      # builds merger.blocks
    ... (merger.blocks, "Checkpoint Merger", "modelmerger") among the tabs ...
    merger.setup_ui(dummy_component=..., sd_model_checkpoint_component=<the quicksettings checkpoint dropdown>)

modules/ui.py does the same inside the tab through create_ui().
"""

from __future__ import annotations

import html
import logging

import gradio as gr

from modules import call_queue, extras_merge, merge_blocks, progress, sd_models, sd_vae
from modules.errors import UserError
from modules.ui_common import create_refresh_button
from modules.ui_components import FormRow

log = logging.getLogger(__name__)

INTERP_DESCRIPTIONS = {
    "No interpolation": "No interpolation will be used. Requires one model; A. Allows for format conversion and VAE "
                        "baking.",
    "Weighted sum": "A weighted sum will be used for interpolation. Requires two models; A and B. The result is "
                    "calculated as A * (1 - M) + B * M",
    "Add difference": "The difference between the last two models will be added to the first. Requires three models; "
                      "A, B and C. The result is calculated as A + (B - C) * M",
}
BLOCK_WEIGHTS_HELP = (
    "Optional: one multiplier per UNet block instead of M, comma-separated: 25 values for SD 1.x/2.x (IN00–IN11, "
    "M00, OUT00–OUT11), 19 for SDXL (IN00–IN08, M00, OUT00–OUT08); or a preset name. M is then the base alpha for "
    "everything outside the blocks (text encoder, VAE, time embedding, output layers)."
)


def update_interp_description(value: str) -> str:
    return f"<p style='margin-bottom: 2.5em'>{INTERP_DESCRIPTIONS.get(value, '')}</p>"


def modelmerger(*args):
    """The Merge button: merge in the generation queue; new checkpoint lists for the four dropdowns and a message.
    The first argument is the page's task id (or None): the page follows the merge's progress under that id."""
    id_task = args[0] if args and args[0] else None
    if id_task:
        progress.add_task_to_queue(id_task)

    def job(*job_args):
        if id_task:
            progress.start_task(id_task)
        return extras_merge.run_modelmerger(*job_args)

    try:
        message = call_queue.wrap_queued_call(job)(*args)
    except UserError as e:
        message = str(e) if str(e).startswith("Failed") else f"Failed: {e}"
    except Exception as e:  # keep serving; the traceback goes to the console
        log.exception("Checkpoint merge failed")
        message = f"Error merging checkpoints: {type(e).__name__}: {e}"
    finally:
        if id_task:
            progress.finish_task(id_task)
    tiles = sd_models.checkpoint_tiles()
    return [*[gr.update(choices=tiles) for _ in range(4)], html.escape(message)]


class UiCheckpointMerger:
    def __init__(self):
        with gr.Blocks(analytics_enabled=False) as modelmerger_interface:
            with gr.Row(equal_height=False):
                with gr.Column(variant="compact"):
                    self.interp_description = gr.HTML(value=update_interp_description("Weighted sum"),
                                                      elem_id="modelmerger_interp_description")
                    with FormRow(elem_id="modelmerger_models"):
                        tiles = sd_models.checkpoint_tiles()
                        self.primary_model_name = gr.Dropdown(tiles, elem_id="modelmerger_primary_model_name",
                                                              label="Primary model (A)")
                        create_refresh_button(self.primary_model_name, sd_models.list_models,
                                              lambda: {"choices": sd_models.checkpoint_tiles()},
                                              "refresh_checkpoint_A")
                        self.secondary_model_name = gr.Dropdown(tiles, elem_id="modelmerger_secondary_model_name",
                                                                label="Secondary model (B)")
                        create_refresh_button(self.secondary_model_name, sd_models.list_models,
                                              lambda: {"choices": sd_models.checkpoint_tiles()},
                                              "refresh_checkpoint_B")
                        self.tertiary_model_name = gr.Dropdown(tiles, elem_id="modelmerger_tertiary_model_name",
                                                               label="Tertiary model (C)")
                        create_refresh_button(self.tertiary_model_name, sd_models.list_models,
                                              lambda: {"choices": sd_models.checkpoint_tiles()},
                                              "refresh_checkpoint_C")

                    self.custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
                    self.interp_amount = gr.Slider(minimum=0.0, maximum=1.0, step=0.05,
                                                   label="Multiplier (M) - set to 0 to get model A", value=0.3,
                                                   elem_id="modelmerger_interp_amount")
                    self.interp_method = gr.Radio(choices=list(extras_merge.INTERP_METHODS), value="Weighted sum",
                                                  label="Interpolation Method", elem_id="modelmerger_interp_method")
                    self.interp_method.change(fn=update_interp_description, inputs=[self.interp_method],
                                              outputs=[self.interp_description], api_visibility="private")

                    with FormRow():
                        self.checkpoint_format = gr.Radio(choices=list(extras_merge.CHECKPOINT_FORMATS),
                                                          value="safetensors", label="Checkpoint format",
                                                          elem_id="modelmerger_checkpoint_format")
                        self.save_as_half = gr.Checkbox(value=False, label="Save as float16",
                                                        elem_id="modelmerger_save_as_half")

                    with FormRow():
                        with gr.Column():
                            self.config_source = gr.Radio(choices=list(extras_merge.CONFIG_SOURCES),
                                                          value="A, B or C", label="Copy config from", type="index",
                                                          elem_id="modelmerger_config_method")
                        with gr.Column():
                            with FormRow():
                                self.bake_in_vae = gr.Dropdown(choices=["None", *sd_vae.vae_dict], value="None",
                                                               label="Bake in VAE", elem_id="modelmerger_bake_in_vae")
                                create_refresh_button(self.bake_in_vae, sd_vae.refresh_vae_list,
                                                      lambda: {"choices": ["None", *sd_vae.vae_dict]},
                                                      "modelmerger_refresh_bake_in_vae")

                    with FormRow():
                        self.discard_weights = gr.Textbox(value="", label="Discard weights with matching name",
                                                          elem_id="modelmerger_discard_weights")
                        self.prune_ema = gr.Checkbox(value=False, label="Prune EMA weights (model_ema.*)",
                                                     elem_id="modelmerger_prune_ema")

                    with gr.Accordion("Block weights", open=False, elem_id="modelmerger_block_weights_accordion"):
                        with FormRow():
                            self.block_weights_preset = gr.Dropdown(choices=["", *merge_blocks.PRESETS], value="",
                                                                    label="Preset",
                                                                    elem_id="modelmerger_block_weights_preset")
                            self.block_weights = gr.Textbox(value="", label="Block weights", info=BLOCK_WEIGHTS_HELP,
                                                            elem_id="modelmerger_block_weights")
                        self.block_weights_preset.change(fn=lambda name: name, inputs=[self.block_weights_preset],
                                                         outputs=[self.block_weights], api_visibility="private")

                    with gr.Accordion("Metadata", open=False) as metadata_editor:
                        with FormRow():
                            self.save_metadata = gr.Checkbox(value=True, label="Save metadata",
                                                             elem_id="modelmerger_save_metadata")
                            self.add_merge_recipe = gr.Checkbox(value=True, label="Add merge recipe metadata",
                                                                elem_id="modelmerger_add_recipe")
                            self.copy_metadata_fields = gr.Checkbox(value=True,
                                                                    label="Copy metadata from merged models",
                                                                    elem_id="modelmerger_copy_metadata")
                        self.metadata_json = gr.TextArea("{}", label="Metadata in JSON format")
                        self.read_metadata = gr.Button("Read metadata from selected checkpoints")
                    self.metadata_editor = metadata_editor

                    with FormRow():
                        self.modelmerger_merge = gr.Button(elem_id="modelmerger_merge", value="Merge",
                                                           variant="primary")

                with gr.Column(variant="compact", elem_id="modelmerger_results_container"):
                    with gr.Group(elem_id="modelmerger_results_panel"):
                        self.modelmerger_result = gr.HTML(elem_id="modelmerger_result", show_label=False)

        self.blocks = modelmerger_interface

    def merge_inputs(self, dummy_component) -> list:
        """The Merge button's inputs, in run_modelmerger's order (the task id first)."""
        return [dummy_component, self.primary_model_name, self.secondary_model_name, self.tertiary_model_name,
                self.interp_method, self.interp_amount, self.save_as_half, self.custom_name, self.checkpoint_format,
                self.config_source, self.bake_in_vae, self.discard_weights, self.save_metadata,
                self.add_merge_recipe, self.copy_metadata_fields, self.metadata_json, self.block_weights,
                self.prune_ema]

    def setup_ui(self, dummy_component, sd_model_checkpoint_component) -> None:
        """Connect the buttons; after a merge the three model dropdowns and the quicksettings checkpoint list
        show the new file."""
        self.checkpoint_format.change(lambda fmt: gr.update(visible=fmt == "safetensors"),
                                      inputs=[self.checkpoint_format], outputs=[self.metadata_editor],
                                      show_progress=False, api_visibility="private")
        self.read_metadata.click(extras_merge.read_metadata,
                                 inputs=[self.primary_model_name, self.secondary_model_name, self.tertiary_model_name],
                                 outputs=[self.metadata_json], api_visibility="private")
        self.modelmerger_merge.click(fn=lambda: "", inputs=[], outputs=[self.modelmerger_result],
                                     api_visibility="private")
        self.modelmerger_merge.click(
            fn=modelmerger,
            js="(...args) => submit_generation('modelmerger', args, 0)",
            inputs=self.merge_inputs(dummy_component),
            outputs=[self.primary_model_name, self.secondary_model_name, self.tertiary_model_name,
                     sd_model_checkpoint_component, self.modelmerger_result],
            api_visibility="private",
        )
        # change() does not fire for values restored from ui-config.json
        self.interp_description.value = update_interp_description(self.interp_method.value)


def create_ui(quicksettings_checkpoint=None) -> UiCheckpointMerger:
    """The tab's content inside the page's current tab; the task-id box is the Merge button's first input."""
    merger = UiCheckpointMerger()
    merger.blocks.render()
    id_task = gr.Textbox(value="", visible="hidden", label="id_task", elem_id="modelmerger_id_task")
    id_task.do_not_save_to_config = True
    checkpoint = quicksettings_checkpoint if quicksettings_checkpoint is not None else gr.State()
    merger.setup_ui(dummy_component=id_task, sd_model_checkpoint_component=checkpoint)
    return merger
