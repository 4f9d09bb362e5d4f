"""The web UI without a browser: the page built in-process (every A1111 element id, paste of parity infotexts
into every field of a1111-spec §6.4), tasks and progress, Save/Zip, ui-config.json, extra-network cards and
their routes, settings, styles, one login for every route, the share tunnel, and the live preview methods."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import threading
import zipfile

import gradio as gr
import pytest
import torch
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from modules import (
    gradio_compat,
    infotext_paste,
    infotext_utils,
    live_preview,
    progress,
    save_outputs,
    sd_models,
    sd_vae_approx,
    sd_vae_taesd,
    shared,
    styles,
    ui_checkpoint_merger,
    ui_extra_networks,
    ui_generation,
    ui_img2img,
    ui_infotext,
    ui_loadsave,
    ui_prompt_styles,
    ui_server,
    ui_settings,
    ui_txt2img,
)
from modules.errors import UserError
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def opts_restored():
    saved = dict(shared.opts.data)
    yield shared.opts
    shared.opts.data.clear()
    shared.opts.data.update(saved)


@pytest.fixture(scope="module")
def page(tiny_checkpoints, tmp_path_factory):
    """The whole page, built in-process as webui.py builds it (model files listed, no model loaded)."""
    from modules import extra_networks, networks, sd_vae, ui, upscaler

    gradio_compat.install()
    shared.prompt_styles = styles.StyleDatabase(str(tmp_path_factory.mktemp("styles") / "styles.csv"))
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    upscaler.load_upscalers()
    extra_networks.register_default_extra_networks()
    networks.list_available_networks()
    return ui.create_ui()


def blocks_by_elem_id(demo) -> dict[str, object]:
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


# A1111's element ids (a1111-spec §1, reference/a1111-elem-ids.md) for the controls of features that exist here.
A1111_IDS = """
tabs tab_txt2img tab_img2img tab_extras tab_pnginfo tab_modelmerger tab_settings tab_extensions quicksettings
setting_sd_model_checkpoint setting_sd_vae setting_CLIP_stop_at_last_layers
txt2img_toprow txt2img_prompt_container txt2img_prompt_row txt2img_prompt txt2img_prompt_image txt2img_neg_prompt_row
txt2img_neg_prompt txt2img_actions_column txt2img_generate_box txt2img_interrupt txt2img_skip txt2img_interrupting
txt2img_generate txt2img_tools paste txt2img_clear_prompt txt2img_style_apply txt2img_restore_progress
txt2img_token_counter txt2img_token_button txt2img_negative_token_counter txt2img_negative_token_button
txt2img_styles_row txt2img_styles txt2img_styles_edit_button txt2img_styles_dialog txt2img_styles_edit_select
txt2img_style_apply_dialog txt2img_style_copy txt2img_edit_style_prompt txt2img_edit_style_neg_prompt
txt2img_edit_style_save txt2img_edit_style_delete txt2img_edit_style_close
txt2img_extra_tabs txt2img_settings sampler_selection_txt2img txt2img_sampling txt2img_scheduler txt2img_steps
txt2img_column_size txt2img_width txt2img_height txt2img_dimensions_row txt2img_res_switch_btn txt2img_column_batch
txt2img_batch_count txt2img_batch_size txt2img_cfg_scale txt2img_accordions txt2img_hr txtimg_hr_finalres
txt2img_hires_fix_row1 txt2img_hr_upscaler txt2img_hires_steps txt2img_denoising_strength txt2img_hires_fix_row2
txt2img_hr_scale txt2img_hr_resize_x txt2img_hr_resize_y txt2img_hires_fix_row3 hr_checkpoint hr_sampler hr_scheduler
txt2img_hires_fix_row4 hires_prompt hires_neg_prompt txt2img_override_settings_row txt2img_override_settings
txt2img_script_container txt2img_seed_row txt2img_seed txt2img_random_seed txt2img_reuse_seed txt2img_subseed_show
txt2img_seed_extras txt2img_subseed_row txt2img_subseed txt2img_random_subseed txt2img_reuse_subseed
txt2img_subseed_strength txt2img_seed_resize_from_row txt2img_seed_resize_from_w txt2img_seed_resize_from_h
txt2img_results txt2img_results_panel txt2img_gallery_container txt2img_gallery image_buttons_txt2img
txt2img_open_folder save_txt2img save_zip_txt2img txt2img_send_to_img2img txt2img_send_to_inpaint
txt2img_send_to_extras txt2img_upscale download_files_txt2img html_info_txt2img html_log_txt2img
generation_info_txt2img
txt2img_textual_inversion txt2img_hypernetworks txt2img_checkpoints txt2img_lora
img2img_prompt img2img_neg_prompt img2img_generate img2img_extra_tabs img2img_settings mode_img2img
img2img_img2img_tab img2img_image img2img_img2img_sketch_tab img2img_sketch img2img_inpaint_tab img2maskimg
img2img_inpaint_sketch_tab inpaint_sketch img2img_inpaint_upload_tab img_inpaint_base img_inpaint_mask
img2img_batch_tab img2img_batch_source img2img_batch_upload_tab img2img_batch_upload img2img_batch_from_dir_tab
img2img_batch_input_dir img2img_batch_output_dir img2img_batch_inpaint_mask_dir img2img_batch_use_png_info
img2img_batch_png_info_dir resize_mode img2img_column_size img2img_tabs_resize img2img_tab_resize_to img2img_width
img2img_height img2img_dimensions_row img2img_res_switch_btn img2img_detect_image_size_btn img2img_tab_resize_by
img2img_scale img2img_scale_resolution_preview img2img_column_batch img2img_batch_count img2img_batch_size
img2img_denoising_strength img2img_cfg_scale img2img_image_cfg_scale img2img_accordions
img2img_override_settings_row img2img_script_container inpaint_controls img2img_mask_blur img2img_mask_alpha
img2img_mask_mode img2img_inpainting_fill img2img_inpaint_full_res img2img_inpaint_full_res_padding
img2img_copy_to_img2img img2img_label_copy_to_img2img html_info_img2img img2img_gallery
mode_extras extras_single_tab extras_image extras_batch_process_tab extras_image_batch extras_batch_directory_tab
extras_batch_input_dir extras_batch_output_dir extras_show_extras_results extras_gallery html_info_extras
pnginfo_image pnginfo_generation_info txt2img_tab img2img_tab inpaint_tab extras_tab
modelmerger_interp_description modelmerger_models modelmerger_primary_model_name modelmerger_secondary_model_name
modelmerger_tertiary_model_name modelmerger_custom_name modelmerger_interp_amount modelmerger_interp_method
modelmerger_checkpoint_format modelmerger_save_as_half modelmerger_config_method modelmerger_bake_in_vae
modelmerger_discard_weights modelmerger_save_metadata modelmerger_add_recipe modelmerger_copy_metadata
modelmerger_merge modelmerger_results_container modelmerger_results_panel modelmerger_result
settings_submit settings_restart_gradio settings_result settings settings_search settings_json settings_tab_defaults
ui_defaults_view ui_defaults_apply settings_tab_actions sett_unload_sd_model sett_reload_sd_model
calculate_all_checkpoint_hash change_checkpoint footer
tabs_extensions extensions_installed_top extensions_disable_all extensions_installed_html extension_to_install
install_extension_button extension_install_result extensions_backup_top_row extension_backup_saved_configs
extension_backup_restore_type extension_backup_restore extensions_backup_top_row2
""".split()


def test_every_a1111_element_id_of_built_features_is_on_the_page(page):
    ids = blocks_by_elem_id(page)
    missing = [x for x in A1111_IDS if x not in ids]
    assert missing == []
    # settings pages and their controls are `settings_<section>` / `setting_<key>`
    assert "settings_sd" in ids and "setting_samples_format" in ids and "setting_show_progress_every_n_steps" in ids


def test_generate_events_have_stable_api_names_with_defaults(page):
    config = page.get_config_file()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"txt2img", "img2img", "extras", "pnginfo"} <= names


def paste(tab: str, text: str) -> dict[str, object]:
    """What ↙️ puts into each field of a tab for an infotext: {elem_id: value} for the fields it sets."""
    fields = infotext_paste.paste_fields[tab]["fields"]
    updates = ui_infotext.field_updates(fields, ui_infotext.parse(text))
    res = {}
    for (component, _), update in zip(fields, updates, strict=True):
        if "value" in update and getattr(component, "elem_id", None):
            res[component.elem_id] = update["value"]
    return res


def parity_cases():
    data = json.loads((FIXTURES / "infotext.json").read_text(encoding="utf-8"))
    # cases with styles need their style database; the parse itself is tested in test_infotext.py
    return [c for c in data["cases"] if "expected" in c and not c["skip_fields"] and not c.get("styles")]


@pytest.mark.parametrize("case", parity_cases(), ids=lambda c: c["infotext"][:30])
def test_paste_puts_every_parity_field_into_txt2img(page, case):
    expected = case["expected"]
    got = paste("txt2img", case["infotext"])
    simple = {"txt2img_prompt": ("Prompt", str), "txt2img_neg_prompt": ("Negative prompt", str),
              "txt2img_steps": ("Steps", int), "txt2img_cfg_scale": ("CFG scale", float),
              "txt2img_seed": ("Seed", int), "txt2img_width": ("Size-1", int), "txt2img_height": ("Size-2", int),
              "txt2img_subseed": ("Variation seed", int), "txt2img_subseed_strength": ("Variation seed strength", float),
              "txt2img_hires_steps": ("Hires steps", int), "txt2img_hr_scale": ("Hires upscale", float),
              "txt2img_hr_resize_x": ("Hires resize-1", int), "txt2img_hr_resize_y": ("Hires resize-2", int),
              "hires_prompt": ("Hires prompt", str), "hires_neg_prompt": ("Hires negative prompt", str),
              "txt2img_seed_resize_from_w": ("Seed resize from-1", int),
              "txt2img_seed_resize_from_h": ("Seed resize from-2", int)}
    for elem_id, (label, cast) in simple.items():
        if label in expected:
            assert got[elem_id] == cast(expected[label]), (elem_id, label)
        else:
            assert elem_id not in got, elem_id
    if "Denoising strength" in expected:
        assert got["txt2img_denoising_strength"] == float(expected["Denoising strength"])
    hires = "Denoising strength" in expected and ({"Hires upscale", "Hires upscaler"} & set(expected) or
                                                   str(expected.get("Hires resize-1", 0)) != "0")
    assert got["txt2img_hr-checkbox"] is bool(hires)
    assert got["txt2img_subseed_show"] is ("Variation seed" in expected or "Seed resize from-1" in expected)


def test_paste_maps_sampler_scheduler_styles_and_override_settings(page, opts_restored):
    text = ("a cat\nNegative prompt: dog\nSteps: 12, Sampler: DPM++ 2M Karras, CFG scale: 4.5, Seed: 9, Size: 64x96, "
            "Clip skip: 2, ENSD: 31337, Hires upscaler: Latent (nearest), Denoising strength: 0.4, Hires upscale: 1.5")
    got = paste("txt2img", text)
    # legacy name split; Karras is DPM++ 2M's own schedule, which A1111 shows as Automatic
    assert got["txt2img_sampling"] == "DPM++ 2M" and got["txt2img_scheduler"] == "Automatic"
    assert got["txt2img_hr_upscaler"] == "Latent (nearest)" and got["txt2img_hr-checkbox"] is True
    other = paste("txt2img", "x\nSteps: 5, Sampler: Euler, Schedule type: Exponential, Seed: 1")
    assert other["txt2img_sampling"] == "Euler" and other["txt2img_scheduler"] == "Exponential"
    override = ui_infotext.override_settings_update(ui_infotext.parse(text), "txt2img")
    assert sorted(override["value"]) == ["Clip skip: 2", "ENSD: 31337"] and override["visible"] is True
    assert ui_generation.override_settings(override["value"]) == {"CLIP_stop_at_last_layers": 2,
                                                                   "eta_noise_seed_delta": 31337}


def test_model_hash_switches_checkpoint_only_when_auto_swap_is_on(page, opts_restored, tiny_checkpoints):
    info = sd_models.get_closet_checkpoint_match(tiny_checkpoints["sd2v"].name)
    info.calculate_shorthash()
    text = f"a cat\nSteps: 5, Sampler: Euler, Seed: 1, Size: 64x64, Model hash: {info.shorthash}"
    opts_restored.sd_model_checkpoint = sd_models.get_closet_checkpoint_match(tiny_checkpoints["sd1"].name).title
    opts_restored.disable_weights_auto_swap = True
    assert ui_infotext.override_settings_update(ui_infotext.parse(text), "txt2img")["value"] == []
    opts_restored.disable_weights_auto_swap = False
    entries = ui_infotext.override_settings_update(ui_infotext.parse(text), "txt2img")["value"]
    assert entries == [f"Model hash: {info.shorthash}"]
    assert sd_models.get_closet_checkpoint_match(
        ui_generation.override_settings(entries)["sd_model_checkpoint"]) is info


def test_paste_into_img2img_sets_the_inpaint_fields(page):
    text = ("fox\nSteps: 8, Sampler: Euler a, CFG scale: 6, Seed: 3, Size: 96x64, Denoising strength: 0.35, "
            "Image CFG scale: 1.25, Mask blur: 7, Mask mode: Inpaint not masked, Masked content: latent noise, "
            "Inpaint area: Only masked, Masked area padding: 48")
    got = paste("img2img", text)
    assert got["img2img_denoising_strength"] == 0.35 and got["img2img_image_cfg_scale"] == 1.25
    assert got["img2img_mask_blur"] == 7 and got["img2img_inpaint_full_res_padding"] == 48
    # the radios take A1111's choice indices
    assert got["img2img_mask_mode"] == 1 and got["img2img_inpainting_fill"] == 2 and got["img2img_inpaint_full_res"] == 1
    assert got["img2img_width"] == 96 and got["img2img_height"] == 64
    assert infotext_paste.paste_fields["inpaint"]["init_img"].elem_id == "img2maskimg"


def test_paste_with_empty_prompt_reads_params_txt(page, data_dir, monkeypatch):
    (data_dir / "params.txt").write_text("from params\nSteps: 7, Seed: 4, Size: 64x64", encoding="utf8")
    assert ui_infotext.read_params_txt().startswith("from params")
    monkeypatch.setattr(shared.cmd_opts, "no_prompt_history", True)
    assert ui_infotext.read_params_txt() == ""


def test_convert_value_follows_each_control(page):
    with gr.Blocks():
        steps = gr.Slider(1, 150, step=1)
        cfg = gr.Slider(1, 30, step=0.5)
        seed = gr.Number(precision=0)
        check = gr.Checkbox()
        sampler = gr.Dropdown(["Euler", "DDIM"])
        mode = gr.Radio(["a", "b"], type="index")
    assert ui_infotext.convert_value(steps, "20") == 20 and isinstance(ui_infotext.convert_value(steps, "20"), int)
    assert ui_infotext.convert_value(cfg, "7.5") == 7.5
    assert ui_infotext.convert_value(seed, "123") == 123
    assert ui_infotext.convert_value(check, "False") is False and ui_infotext.convert_value(check, "True") is True
    assert ui_infotext.convert_value(mode, "b") == 1
    with pytest.raises(ValueError):
        ui_infotext.convert_value(sampler, "Unknown sampler")
    with pytest.raises(ValueError):
        ui_infotext.convert_value(steps, "twenty")


def test_pnginfo_lists_parameters_escaped_and_reads_jpeg_exif(tmp_path):
    from modules import images

    text = "a <b>bold</b> cat\nSteps: 3, Seed: 1"
    png = tmp_path / "x.png"
    images.save_image_with_geninfo(Image.new("RGB", (8, 8)), text, str(png))
    _, geninfo, html_items = ui_pnginfo_run(png)
    assert geninfo == text and "&lt;b&gt;bold&lt;/b&gt;" in html_items and "<b>bold" not in html_items
    jpg = tmp_path / "x.jpg"
    images.save_image_with_geninfo(Image.new("RGB", (8, 8)), text, str(jpg))
    assert ui_pnginfo_run(jpg)[1] == text
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert "Nothing found in the image." in ui_pnginfo_run(plain)[2]
    assert ui_infotext.image_info(str(png)) == text and ui_infotext.image_info(str(tmp_path / "none.txt")) == ""


def ui_pnginfo_run(path):
    from modules import ui_pnginfo

    return ui_pnginfo.run_pnginfo(str(path))


# ---- tasks and progress ----

def test_progress_of_queued_running_and_finished_tasks(opts_restored):
    state = shared.state
    a, b = progress.create_task_id("txt2img"), progress.create_task_id("txt2img")
    assert re.fullmatch(r"task\(txt2img-[A-Z0-9]{7}\)", a)
    progress.add_task_to_queue(a)
    progress.add_task_to_queue(b)
    assert progress.progress(b)["textinfo"] == "In queue: 2/2" and progress.pending()["size"] == 2
    opts_restored.live_previews_enable = False
    state.begin(job="test")
    progress.start_task(a)
    try:
        state.job_count, state.job_no, state.sampling_steps, state.sampling_step = 2, 1, 10, 5
        answer = progress.progress(a)
        assert answer["active"] and answer["progress"] == pytest.approx(0.75)
        assert answer["sampling_step"] == 5 and answer["job_count"] == 2 and answer["eta"] is not None
        assert progress.progress(b)["textinfo"] == "In queue: 1/1"
    finally:
        state.end()
        progress.finish_task(a)
    progress.record_results(a, ("images", "info"))
    assert progress.progress(a)["completed"] and progress.restore_progress(a) == ("images", "info")
    progress.finish_task(b)
    for i in range(3):
        progress.record_results(f"x{i}", i)
    assert progress.restore_progress(a) is None  # only the last two results are kept


def test_progress_sends_each_live_preview_once(opts_restored):
    state = shared.state
    opts_restored.live_previews_enable = True
    opts_restored.show_progress_every_n_steps = 5
    opts_restored.show_progress_type = "Approx cheap"
    opts_restored.live_previews_image_format = "png"
    task = progress.create_task_id("txt2img")
    state.begin(job="test")
    progress.start_task(task)
    try:
        state.job_count, state.sampling_steps, state.sampling_step = 1, 20, 5
        state.current_latent = torch.randn(1, 4, 8, 8)
        first = progress.progress(task, -1, True)
        assert first["live_preview"].startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(first["live_preview"].split(",", 1)[1])))
        assert picture.size == (8, 8)
        again = progress.progress(task, first["id_live_preview"], True)
        assert again["live_preview"] is None  # nothing new since
        state.sampling_step = 7  # fewer than 5 steps since the last preview: no new one
        assert progress.progress(task, first["id_live_preview"], True)["live_preview"] is None
        state.sampling_step = 10
        assert progress.progress(task, first["id_live_preview"], True)["live_preview"] is not None
    finally:
        state.end()
        progress.finish_task(task)


def test_run_as_task_records_results_and_turns_errors_into_messages():
    ok = ui_generation.run_as_task("txt2img", "task(ok)", lambda: ("g", "i", "h", ""), 4)
    assert ok == ("g", "i", "h", "") and progress.restore_progress("task(ok)") == ok

    def fail():
        raise UserError("Give a <prompt>")

    failed = ui_generation.run_as_task("txt2img", "task(fail)", fail, 4)
    assert failed[-1] == "<div class='error'>Give a &lt;prompt&gt;</div>" and "task(fail)" in progress.finished_tasks
    assert shared.state.current_task is None


# ---- output panel ----

def generation_json(n_images: int, grid: bool) -> str:
    seeds = list(range(100, 100 + n_images))
    infotexts = [f"cat {i}\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: {s}, Size: 8x8" for i, s in enumerate(seeds)]
    if grid:
        infotexts.insert(0, infotexts[0])
    return json.dumps({"prompt": "cat", "all_prompts": ["cat"] * n_images, "all_seeds": seeds, "seed": seeds[0],
                       "width": 8, "height": 8, "sampler_name": "Euler", "cfg_scale": 7, "steps": 3,
                       "batch_size": n_images, "sd_model_name": "tiny", "sd_model_hash": "abc", "styles": [],
                       "index_of_first_image": 1 if grid else 0, "infotexts": infotexts, "job_timestamp": "0"})


def test_save_writes_the_selected_image_with_infotext_and_log_csv(data_dir, opts_restored):
    pictures = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]  # grid, image 1, image 2
    files, message = save_outputs.save_files(generation_json(2, True), pictures, False, 2, opts_restored)
    assert len(files) == 1 and message == f"Saved: {os.path.basename(files[0])}"
    saved = Image.open(files[0])
    assert saved.info["parameters"].startswith("cat 1\n") and "Seed: 101" in saved.info["parameters"]
    assert os.path.dirname(files[0]) == str(data_dir / "log" / "images")
    with open(data_dir / "log" / "images" / "log.csv", encoding="utf8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == save_outputs.LOG_FIELDS
    assert rows[-1][:8] == ["cat 1", "101", "8", "8", "Euler", "7", "3", os.path.basename(files[0])]

    files, _ = save_outputs.save_files(generation_json(2, True), pictures, True, -1, opts_restored)
    assert files[0].endswith(".zip") and len(files) == 4
    with zipfile.ZipFile(files[0]) as z:
        assert sorted(z.namelist()) == sorted(os.path.basename(f) for f in files[1:])
    with pytest.raises(UserError):
        save_outputs.save_files("", pictures, False, 0, opts_restored)


# ---- ui-config.json ----

def build_small_ui(loadsave):
    with gr.Blocks():
        with gr.Tab("t", id="t") as tab:
            steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps")
            sampler = gr.Dropdown(["Euler", "DDIM"], value="Euler", label="Sampling method")
            prompt = gr.Textbox(value="", label="Prompt")
            with gr.Tabs(elem_id="mode"):
                with gr.Tab("A", id="a"):
                    pass
                with gr.Tab("B", id="b"):
                    pass
        loadsave.add_block(tab, "txt2img")
        loadsave.ui_defaults_view = gr.Button()
        loadsave.ui_defaults_apply = gr.Button()
        loadsave.ui_defaults_review = gr.HTML()
        loadsave.setup_ui()
    return steps, sampler, prompt


def test_ui_config_written_at_first_start_and_applied_next_time(tmp_path):
    path = tmp_path / "ui-config.json"
    first = ui_loadsave.UiLoadsave(str(path))
    build_small_ui(first)
    first.dump_defaults()
    saved = json.loads(path.read_text(encoding="utf8"))
    assert saved["txt2img/Sampling steps/value"] == 20 and saved["txt2img/Sampling steps/maximum"] == 150
    assert saved["txt2img/Sampling method/value"] == "Euler" and saved["txt2img/Tabs@mode/selected"] is None

    saved.update({"txt2img/Sampling steps/value": 30, "txt2img/Sampling method/value": "DDIM",
                  "txt2img/Tabs@mode/selected": "b", "txt2img/Prompt/value": "hello"})
    path.write_text(json.dumps(saved), encoding="utf8")
    second = ui_loadsave.UiLoadsave(str(path))
    steps, sampler, prompt = build_small_ui(second)
    assert (steps.value, sampler.value, prompt.value) == (30, "DDIM", "hello")

    # Defaults page: the controls' current values against the file
    assert second.ui_view(30, "DDIM", "hello") == "No changes"
    assert "txt2img/Sampling steps/value" in second.ui_view(42, "DDIM", "hello")
    assert second.ui_apply(42.0, "DDIM", "hello") == "Wrote 1 changes."
    assert json.loads(path.read_text(encoding="utf8"))["txt2img/Sampling steps/value"] == 42


def test_unreadable_ui_config_is_kept_and_not_overwritten(tmp_path):
    path = tmp_path / "ui-config.json"
    path.write_text("{broken", encoding="utf8")
    loadsave = ui_loadsave.UiLoadsave(str(path))
    build_small_ui(loadsave)
    loadsave.dump_defaults()
    assert path.read_text(encoding="utf8") == "{broken"


# ---- extra networks ----

@pytest.fixture
def lora_files(data_dir):
    from safetensors.torch import save_file

    from modules import networks

    folder = data_dir / "models" / "Lora"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evil<b>name.safetensors"
    save_file({"lora_unet_x.lora_up.weight": torch.zeros(2, 2)}, str(path),
              metadata={"note": "<img src=x onerror=alert(1)>"})
    Image.new("RGB", (4, 4)).save(folder / "evil<b>name.preview.png")
    (folder / "evil<b>name.json").write_text(json.dumps({"activation text": "shiny <i>", "preferred weight": 0.6}))
    networks.list_available_networks()
    yield folder
    for f in folder.glob("evil*"):
        f.unlink()
    networks.list_available_networks()


def test_lora_card_is_escaped_and_carries_the_tag(page, lora_files, opts_restored):
    opts_restored.lora_show_all = True
    lora = ui_extra_networks.page_by_tabname("lora")
    html = ui_extra_networks.page_html("txt2img", lora)
    assert "<b>name" not in html and "evil&lt;b&gt;name" in html
    assert "data-prompt='&lt;lora:evil&lt;b&gt;name:0.6&gt; shiny &lt;i&gt;'" in html
    assert "./sd_extra_networks/thumb?filename=" in html and "metadata-button" in html
    metadata = ui_extra_networks.metadata_html(lora.metadata("evil<b>name"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in metadata and "<img" not in metadata


def test_cards_of_every_page_and_their_prompt_text(page, opts_restored, tiny_checkpoints):
    opts_restored.extra_networks_default_multiplier = 0.8
    saved = dict(shared.hypernetworks)  # other tests may have listed hypernetworks of their own
    shared.hypernetworks.clear()
    shared.hypernetworks["hn"] = str(tiny_checkpoints["sd1"])  # only its name and path are shown
    try:
        hyper = ui_extra_networks.page_by_tabname("hypernetworks").list_items()
    finally:
        shared.hypernetworks.clear()
        shared.hypernetworks.update(saved)
    assert [(i.name, i.prompt) for i in hyper] == [("hn", "<hypernet:hn:0.8>")]
    checkpoints = ui_extra_networks.page_by_tabname("checkpoints").list_items()
    assert {i.checkpoint for i in checkpoints} == set(sd_models.checkpoints_list)
    titles = [p.title for p in ui_extra_networks.ordered_pages()]
    assert titles == ["Textual Inversion", "Hypernetworks", "Checkpoints", "Lora"]
    opts_restored.ui_extra_networks_tab_reorder = "Lora, Checkpoints"
    assert [p.title for p in ui_extra_networks.ordered_pages()][:2] == ["Lora", "Checkpoints"]


def test_thumbnail_route_serves_only_pictures_inside_model_folders(page, lora_files, tmp_path):
    app = FastAPI()
    ui_extra_networks.add_routes(app)
    client = TestClient(app)
    picture = lora_files / "evil<b>name.preview.png"
    assert client.get("/sd_extra_networks/thumb", params={"filename": str(picture)}).status_code == 200
    outside = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(outside)
    link = lora_files / "link.png"
    link.symlink_to(outside)
    try:
        for bad in (str(outside), str(link), str(lora_files / "evil<b>name.safetensors"),
                    str(lora_files / ".." / ".." / "config.json"), str(lora_files / "../Lora/../../secret.png")):
            assert client.get("/sd_extra_networks/thumb", params={"filename": bad}).status_code == 403, bad
    finally:
        link.unlink()
    answer = client.get("/sd_extra_networks/metadata", params={"page": "lora", "item": "evil<b>name"}).json()
    assert "&lt;img src=x" in answer["html"]
    assert client.get("/sd_extra_networks/metadata", params={"page": "nope", "item": "x"}).status_code == 404


# ---- settings ----

def test_apply_settings_converts_rejects_and_respects_frozen(opts_restored, monkeypatch, tmp_path):
    monkeypatch.setattr(shared, "config_filename", str(tmp_path / "config.json"))
    try:
        opts_restored.frozen_keys.add("jpeg_quality")
        text = ui_settings.apply_settings(["show_progress_every_n_steps", "samples_format", "jpeg_quality",
                                           "quicksettings_list", "live_previews_enable"],
                                          [5.0, "webp", 10, "sd_vae, sd_model_checkpoint", "yes"])
        assert opts_restored.show_progress_every_n_steps == 5 and isinstance(opts_restored.show_progress_every_n_steps,
                                                                             int)
        assert opts_restored.samples_format == "webp" and opts_restored.jpeg_quality == 80
        assert opts_restored.quicksettings_list == ["sd_vae", "sd_model_checkpoint"]
        assert opts_restored.live_previews_enable is True and "&#x27;yes&#x27; is not a valid value" in text
        assert text.startswith("3 settings changed: ")
        saved = json.loads(open(shared.config_filename, encoding="utf8").read())
        assert saved["samples_format"] == "webp"
    finally:
        opts_restored.frozen_keys.discard("jpeg_quality")


def test_saved_values_outside_the_choices_do_not_break_apply(opts_restored):
    opts_restored.realesrgan_enabled_models = ["R-ESRGAN 4x+", "gone"]
    with gr.Blocks():
        box = ui_settings.create_setting_component("realesrgan_enabled_models",
                                                   shared.opts.data_labels["realesrgan_enabled_models"])
    assert box.preprocess(["R-ESRGAN 4x+", "gone"]) == ["R-ESRGAN 4x+", "gone"]
    assert ui_settings.with_saved_values([("Label", "v")], "v") == [("Label", "v")]
    assert ui_settings.with_saved_values(["a"], "b") == ["a", "b"]


def test_freeze_settings_in_sections(opts_restored):
    before = set(opts_restored.frozen_keys)
    try:
        opts_restored.freeze_sections("saving-paths, ui_gallery")
        assert {"outdir_txt2img_samples", "gallery_height", "js_modal_lightbox"} <= opts_restored.frozen_keys
        assert "samples_format" not in opts_restored.frozen_keys
        with pytest.raises(UserError):
            opts_restored.set("outdir_txt2img_samples", "elsewhere")
    finally:
        opts_restored.frozen_keys.clear()
        opts_restored.frozen_keys.update(before)


def test_settings_search_shows_matching_pages_and_settings(page):
    sections = ui_settings.visible_sections()
    components = {key: object() for _, items in sections for key, _ in items}
    updates = ui_settings.search_updates("live preview", sections, components)
    tabs, settings, selection = updates[:len(sections)], updates[len(sections):-1], updates[-1]
    assert selection["selected"] == "settings_ui"  # the first page with a match opens
    shown_tabs = [label for ((_, label), _), u in zip(sections, tabs, strict=True) if u["visible"]]
    assert "Live previews" in shown_tabs and "Saving images/grids" not in shown_tabs
    keys = [k for _, items in sections for k, _ in items]
    shown = {k for k, u in zip(keys, settings, strict=True) if u["visible"]}
    assert "show_progress_every_n_steps" in shown and "samples_format" not in shown
    assert all(u["visible"] for u in ui_settings.search_updates("", sections, components)[:len(sections)])
    assert "selected" not in ui_settings.search_updates("", sections, components)[-1]


def test_quicksetting_applies_at_once_and_saves(opts_restored, monkeypatch, tmp_path):
    monkeypatch.setattr(shared, "config_filename", str(tmp_path / "config.json"))
    update, settings_json, message = ui_settings.apply_single("CLIP_stop_at_last_layers", 3.0)
    assert opts_restored.CLIP_stop_at_last_layers == 3 and update["value"] == 3 and message == ""
    assert json.loads(settings_json)["CLIP_stop_at_last_layers"] == 3
    assert json.loads((tmp_path / "config.json").read_text())["CLIP_stop_at_last_layers"] == 3
    update, _, _ = ui_settings.apply_single("CLIP_stop_at_last_layers", "two")  # wrong type: unchanged
    assert update["value"] == 3


# ---- styles ----

def test_style_editor_saves_applies_and_deletes(tmp_path, monkeypatch):
    db = styles.StyleDatabase(str(tmp_path / "styles.csv"))
    monkeypatch.setattr(shared, "prompt_styles", db)
    _, message = ui_prompt_styles.save_style("Shiny", "{prompt}, shiny", "dull")
    assert message == "Style Shiny saved."
    with open(tmp_path / "styles.csv", encoding="utf-8-sig", newline="") as f:
        assert list(csv.reader(f)) == [["name", "prompt", "negative_prompt"], ["Shiny", "{prompt}, shiny", "dull"]]
    assert ui_prompt_styles.materialize_styles("a cat", "", ["Shiny"]) == ("a cat, shiny", "dull", [])
    assert ui_prompt_styles.select_style("Shiny")[:2] == ("{prompt}, shiny", "dull")
    assert ui_prompt_styles.save_style("", "x", "")[1].startswith("<span class='error'>")
    assert ui_prompt_styles.delete_style("Shiny")[3] == "Style Shiny deleted."
    assert "Shiny" not in db.styles and (tmp_path / "styles.csv.bak").exists()


# ---- tabs' own logic ----

def test_hires_resolution_line():
    assert ui_txt2img.hires_resolution(False, 512, 512, 2, 0, 0) == ""
    line = ui_txt2img.hires_resolution(True, 512, 768, 1.5, 0, 0)
    assert re.sub("<[^>]+>", "", line) == "from 512x768 to 768x1152"
    assert re.sub("<[^>]+>", "", ui_txt2img.hires_resolution(True, 512, 512, 2, 1024, 0)) == "from 512x512 to 1024x1024"


def test_inpaint_mask_comes_from_the_editor_strokes():
    background = Image.new("RGBA", (16, 16), (0, 128, 0, 255))
    strokes = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    strokes.paste((255, 255, 255, 255), (4, 4, 8, 8))
    values = {"init_img_with_mask": {"background": background, "layers": [strokes], "composite": background},
              "mask_blur": 0, "mask_alpha": 0}
    image, mask = ui_img2img.image_and_mask(2, values)
    assert image.size == (16, 16) and mask.getpixel((5, 5)) == 255 and mask.getpixel((12, 12)) == 0
    values["init_img_with_mask"] = {"background": background, "layers": [], "composite": background}
    with pytest.raises(UserError, match="Draw a mask"):
        ui_img2img.image_and_mask(2, values)


def test_merge_tab_is_wired_to_the_merger_and_followed_as_a_task(page, monkeypatch):
    ids = blocks_by_elem_id(page)
    merge = next(d for d in page.get_config_file()["dependencies"]
                 if any(t[0] == ids["modelmerger_merge"]._id for t in d["targets"]) and d["js"])
    assert "submit_generation('modelmerger'" in merge["js"]
    # the page's task id is the first input; the task is pending, then running, then finished
    seen = []

    def fake_merge(id_task, *args):
        seen.append((id_task, shared.state.current_task, id_task in progress.pending_tasks))
        return "Checkpoint saved to /x/merged.safetensors"

    monkeypatch.setattr(ui_checkpoint_merger.extras_merge, "run_modelmerger", fake_merge)
    *updates, message = ui_checkpoint_merger.modelmerger("task(merge-1)", "a", "b", "", "Weighted sum", 0.3)
    assert seen == [("task(merge-1)", "task(merge-1)", False)]
    assert message == "Checkpoint saved to /x/merged.safetensors" and len(updates) == 4
    assert "task(merge-1)" in progress.finished_tasks and shared.state.current_task is None


def test_tab_order_and_hidden_tabs(opts_restored):
    from modules import ui

    tabs = [(name, name.lower(), None) for name in ("txt2img", "img2img", "Extras", "Settings")]
    opts_restored.ui_tab_order = ["Extras"]
    opts_restored.hidden_tabs = ["img2img", "Settings"]
    assert [t[0] for t in ui.ordered_tabs(tabs)] == ["Extras", "txt2img", "Settings"]


# ---- one login for every route; the share tunnel; the theme ----

@pytest.fixture(scope="module")
def secured_app():
    gradio_compat.install()
    creds = {"alice": "s3cret:x"}
    app = FastAPI()
    app.add_api_route("/internal/ping2", lambda: {"ok": True})
    ui_server.add_routes(app)
    with gr.Blocks() as demo:
        gr.Textbox(label="x")
    app = gr.mount_gradio_app(app, demo, path="/", auth=ui_server.gradio_auth(creds))
    ui_server.install_auth(app, creds)
    # An extension's route added after the mount (on_app_started) is guarded too.
    app.add_api_route("/ext/hello", lambda: {"hello": 1})
    app.router.routes.insert(0, app.router.routes.pop())

    async def socket(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app.add_api_websocket_route("/ext/socket", socket)
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def test_ui_routes_extension_routes_and_gradio_share_one_login(secured_app):
    with TestClient(secured_app) as client:
        for path in ("/internal/ping2", "/internal/pending-tasks", "/ext/hello"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, auth=("alice", "wrong")).status_code == 401
            assert client.get(path, auth=("alice", "s3cret:x")).status_code == 200
        assert client.post("/internal/progress", json={"id_task": "x"}).status_code == 401
        # Gradio's routes, also those Gradio itself leaves open (heartbeat, reset, cancel, startup events)
        for method, path in (("GET", "/config"), ("POST", "/gradio_api/queue/join"), ("GET", "/gradio_api/info"),
                             ("GET", "/gradio_api/queue/data?session_hash=x"), ("POST", "/gradio_api/upload"),
                             ("GET", f"/gradio_api/file={__file__}"), ("GET", "/gradio_api/heartbeat/x"),
                             ("POST", "/gradio_api/reset"), ("POST", "/gradio_api/cancel"),
                             ("GET", "/gradio_api/startup-events"), ("GET", "/monitoring/x")):
            answer = client.request(method, path)
            assert answer.status_code == 401, path
            assert "www-authenticate" not in answer.headers  # the page shows its login form, not a dialog
        assert client.get("/config").json()["detail"]["error"] == "Not authenticated"
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ext/socket"):
                pass
        # the login page itself loads without a login
        assert client.get("/").status_code == 200 and client.get("/theme.css").status_code == 200
        login = client.post("/login", data={"username": "alice", "password": "s3cret:x"})
        assert login.status_code == 200
        # the browser's login cookie opens the app's own routes as well
        assert client.get("/internal/ping2").json() == {"ok": True}
        assert client.get("/ext/hello").status_code == 200
        assert client.get("/config").status_code == 200
        with client.websocket_connect("/ext/socket") as socket:
            assert socket.receive_text() == "hi"


def test_login_page_paths_under_a_subpath():
    assert ui_server.is_public("/sd/assets/index.js", "/sd") and ui_server.is_public("/sd", "/sd/")
    assert not ui_server.is_public("/assets/index.js", "/sd")  # outside the subpath: not the page's files
    assert not ui_server.is_public("/sd/internal/progress", "/sd") and not ui_server.is_public("/sd/config", "/sd")


def test_token_count_route():
    app = FastAPI()
    ui_server.add_routes(app)
    client = TestClient(app)
    assert client.post("/internal/token-count", json={"text": "a photo of a cat", "steps": 20}).json() == {
        "tokens": 5, "limit": 75}
    long = ", ".join(["cat"] * 40)  # 79 tokens: a second chunk
    assert client.post("/internal/token-count", json={"text": long}).json()["limit"] == 150
    assert client.get("/internal/quicksettings-hint").json()[0].keys() == {"name", "label"}


def test_failed_share_tunnel_is_a_warning(monkeypatch, caplog):
    from gradio import networking

    def offline(**kwargs):
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(networking, "setup_tunnel", offline)
    assert ui_server.start_share_tunnel("0.0.0.0", 7860) is None
    assert "Could not create a share link" in caplog.text
    seen = {}
    monkeypatch.setattr(networking, "setup_tunnel", lambda **kw: seen.update(kw) or "https://x.gradio.live")
    assert ui_server.start_share_tunnel("0.0.0.0", 7860) == "https://x.gradio.live"
    assert seen["local_host"] == "127.0.0.1" and seen["local_port"] == 7860 and len(seen["share_token"]) > 20


def test_theme_flag_and_setting(opts_restored, caplog):
    assert "__theme','dark'" in ui_server.theme_head("dark") and ui_server.theme_head(None) == ""
    opts_restored.gradio_theme = "soft"
    assert isinstance(ui_server.theme(), gr.themes.Soft)
    opts_restored.gradio_theme = "someone/remote-theme"
    assert isinstance(ui_server.theme(), gr.themes.Default) and "built-in" in caplog.text


# ---- live preview methods ----

def test_approx_nn_preview_uses_its_weights_when_present(opts_restored, data_dir):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    path = sd_vae_approx.weights_path(False)
    assert not os.path.exists(path)
    cheap = live_preview.latents_to_images(latents, "Approx NN")[0]
    assert cheap.size == (8, 8)  # no weights: Approx cheap at latent size
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(1)
    net = sd_vae_approx.VAEApprox()
    torch.save(net.state_dict(), path)
    try:
        picture = live_preview.latents_to_images(latents, "Approx NN")[0]
        assert picture.size == (16, 16)  # the network doubles the latent size
        expected = live_preview.to_pil(net(latents)[0].detach())
        assert picture.tobytes() == expected.tobytes() and picture.size == expected.size
    finally:
        os.remove(path)


def test_taesd_offline_is_one_clear_message(monkeypatch, opts_restored):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    opts_restored.show_progress_type = "TAESD"
    with pytest.raises(UserError) as e:
        sd_vae_taesd.on_preview_type_change()
    message = str(e.value)
    assert "Could not download the TAESD preview decoder" in message
    assert "VAE-taesd" in message and "Approx cheap" in message


def test_taesd_preview_with_local_weights(data_dir, monkeypatch):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    path = sd_vae_taesd.weights_path(False)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(2)
    reference = AutoencoderTiny()
    save_file(reference.state_dict(), path)
    started = []
    monkeypatch.setattr(sd_vae_taesd, "download_in_background", lambda is_sdxl: started.append(is_sdxl))
    try:
        latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))
        picture = live_preview.latents_to_images(latents, "TAESD")[0]
        assert picture.size == (32, 32) and started == []
        with torch.no_grad():
            expected = live_preview.to_pil(reference.decode(latents).sample[0])
        assert picture.tobytes() == expected.tobytes() and picture.size == expected.size
        assert live_preview.latents_to_images(latents, "TAESD", model=type("M", (), {"is_sdxl": True})())[0].size == (
            4, 4)  # SDXL decoder missing: cheap preview meanwhile, its download started
        assert started == [True]
    finally:
        os.remove(path)
        sd_vae_taesd._decoders.clear()


def test_progress_answers_while_a_preview_is_made_elsewhere(opts_restored):
    """Two pages asking at once get one preview each without errors (previews are made under the state's
    values, not shared mutable ones)."""
    opts_restored.live_previews_enable = True
    opts_restored.show_progress_type = "Approx cheap"
    task = progress.create_task_id("txt2img")
    shared.state.begin(job="test")
    progress.start_task(task)
    answers = []
    try:
        shared.state.job_count, shared.state.sampling_steps, shared.state.sampling_step = 1, 10, 1
        shared.state.current_latent = torch.randn(2, 4, 8, 8)
        threads = [threading.Thread(target=lambda: answers.append(progress.progress(task, -1, True)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        shared.state.end()
        progress.finish_task(task)
    assert len(answers) == 4 and all(a["live_preview"] for a in answers)


def test_extensions_can_add_send_to_buttons_through_infotext_utils(page):
    before = len(infotext_paste.registered_param_bindings)
    with gr.Blocks():
        image = gr.Image()
        info = gr.Textbox()
        buttons = infotext_utils.create_buttons(["txt2img", "img2img"])
        infotext_utils.bind_buttons(buttons, image, info)
    assert [b.elem_id for b in buttons.values()] == ["txt2img_tab", "img2img_tab"]
    added = infotext_paste.registered_param_bindings[before:]
    assert [(b.tabname, b.source_image_component, b.source_text_component) for b in added] == [
        ("txt2img", image, info), ("img2img", image, info)]
    del infotext_paste.registered_param_bindings[before:]
