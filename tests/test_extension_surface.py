"""The module surface A1111 extensions import (clients-and-security §C.3, a1111-spec §9) exists with its names."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE = {
    "modules.scripts": ["Script", "AlwaysVisible", "basedir", "scripts_current", "scripts_txt2img", "scripts_img2img",
                        "scripts_postproc", "ScriptRunner", "PostprocessImageArgs", "PostSampleArgs",
                        "PostprocessBatchListArgs", "PostProcessMaskOverlayArgs", "MaskBlendArgs", "OnComponent",
                        "ScriptFile", "ScriptClassData", "scripts_data", "list_scripts", "list_files_with_name",
                        "load_scripts", "reload_scripts", "wrap_call", "ScriptBuiltinUI", "reload_script_body_only"],
    "modules.scripts_postprocessing": ["ScriptPostprocessing", "PostprocessedImage", "ScriptPostprocessingRunner"],
    "modules.shared": ["opts", "cmd_opts", "state", "prompt_styles", "OptionInfo", "OptionHTML", "options_section",
                       "options_templates", "sd_upscalers", "demo", "listfiles"],
    "modules.paths": ["script_path", "models_path", "extensions_dir", "extensions_builtin_dir", "data_path"],
    "modules.sd_models": ["checkpoints_list", "checkpoint_tiles", "list_models", "model_data",
                          "get_closet_checkpoint_match", "reload_model_weights"],
    "modules.sd_vae": ["vae_dict", "load_vae_dict", "refresh_vae_list"],
    "modules.hashes": ["sha256_from_cache", "sha256", "calculate_sha256"],
    "modules.sd_hijack": ["model_hijack"],
    "modules.processing": ["fix_seed", "process_images", "Processed", "StableDiffusionProcessing",
                           "StableDiffusionProcessingTxt2Img", "create_infotext"],
    "modules.images": ["save_image", "image_grid", "read_info_from_image"],
    "modules.devices": ["device", "dtype", "torch_gc", "cpu"],
    "modules.infotext_utils": ["parse_generation_parameters", "register_paste_params_button", "ParamBinding",
                               "PasteField", "add_paste_fields"],
    "modules.generation_parameters_copypaste": ["parse_generation_parameters", "register_paste_params_button"],
    "modules.sd_samplers_compvis": [],
    "modules.ui": ["create_refresh_button"],
    "modules.ui_common": ["create_refresh_button"],
    "modules.ui_components": ["FormRow", "FormColumn", "FormGroup", "FormHTML", "ToolButton", "InputAccordion",
                              "DropdownMulti", "DropdownEditable", "ResizeHandleRow"],
    "modules.script_loading": ["load_module"],
    "modules.extensions": ["extensions", "active", "list_extensions", "Extension", "ExtensionMetadata"],
    "modules.errors": ["report", "display"],
    "launch": ["is_installed", "run_pip", "run", "git", "python", "run_extension_installer"],
    "k_diffusion.sampling": ["sample_euler", "get_sigmas_karras", "to_d"],
}

CALLBACKS = ["on_app_started", "on_before_reload", "on_model_loaded", "on_ui_tabs", "on_ui_train_tabs",
             "on_ui_settings", "on_before_image_saved", "on_image_saved", "on_extra_noise", "on_cfg_denoiser",
             "on_cfg_denoised", "on_cfg_after_cfg", "on_before_component", "on_after_component", "on_image_grid",
             "on_infotext_pasted", "on_script_unloaded", "on_before_ui", "on_list_optimizers", "on_list_unets",
             "on_before_token_counter", "remove_current_script_callbacks", "remove_callbacks_for_function"]


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_module_has_a1111_names(module):
    if module.startswith("k_diffusion"):
        importlib.import_module("modules.paths")  # registers k_diffusion
    mod = importlib.import_module(module)
    missing = [name for name in SURFACE[module] if not hasattr(mod, name)]
    assert missing == []


def test_script_callbacks_and_option_info_chain():
    from modules import script_callbacks, shared

    assert [name for name in CALLBACKS if not callable(getattr(script_callbacks, name, None))] == []
    for name in CALLBACKS[:-2]:
        assert list(inspect.signature(getattr(script_callbacks, name)).parameters) == ["callback", "name"], name
    info = shared.OptionInfo(1, "x").info("i").needs_restart().html("<b>h</b>").link("l", "https://x").js("j", "f")
    assert isinstance(info, shared.OptionInfo) and info.needs_restart_flag
    assert "(i)" in info.comment_after and "<b>h</b>" in info.comment_after and "https://x" in info.comment_before
    assert hasattr(type(shared), "sd_model")  # loaded on first access


def test_script_hooks_have_a1111_signatures():
    from modules import scripts

    expected = {
        "title": [], "ui": ["is_img2img"], "show": ["is_img2img"], "run": ["p", "args"], "setup": ["p", "args"],
        "before_process": ["p", "args"], "process": ["p", "args"],
        "before_process_batch": ["p", "args", "kwargs"], "after_extra_networks_activate": ["p", "args", "kwargs"],
        "process_batch": ["p", "args", "kwargs"], "process_before_every_sampling": ["p", "args", "kwargs"],
        "postprocess_batch": ["p", "args", "kwargs"], "postprocess_batch_list": ["p", "pp", "args", "kwargs"],
        "on_mask_blend": ["p", "mba", "args"], "post_sample": ["p", "ps", "args"],
        "postprocess_image": ["p", "pp", "args"], "postprocess_maskoverlay": ["p", "ppmo", "args"],
        "postprocess_image_after_composite": ["p", "pp", "args"], "postprocess": ["p", "processed", "args"],
        "before_component": ["component", "kwargs"], "after_component": ["component", "kwargs"],
        "on_before_component": ["callback", "elem_id"], "on_after_component": ["callback", "elem_id"],
        "describe": [], "elem_id": ["item_id"], "before_hr": ["p", "args"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(scripts.Script, name)).parameters)[1:] == params, name
    for attr in ("name", "section", "filename", "args_from", "args_to", "alwayson", "is_txt2img", "is_img2img",
                 "tabname", "group", "create_group", "infotext_fields", "paste_field_names", "api_info",
                 "setup_for_ui_only", "controls"):
        assert hasattr(scripts.Script, attr), attr
