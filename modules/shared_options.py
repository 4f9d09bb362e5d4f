"""The settings of A1111 v1.10 (a1111-spec §3): keys, defaults, labels, sections and infotext labels.

Components are named by string ("slider", "dropdown", "radio", "checkboxgroup", "textbox", "number", "color",
"checkbox") so the core needs no gradio import; the Settings tab turns them into widgets. Choices that depend on
what is on disk are callables, evaluated when the UI is built.
"""

from __future__ import annotations

from modules.options import OptionHTML, OptionInfo, categories, options_section

categories.register_category("saving", "Saving images")
categories.register_category("sd", "Stable Diffusion")
categories.register_category("ui", "User Interface")
categories.register_category("system", "System")
categories.register_category("postprocessing", "Postprocessing")
categories.register_category("training", "Training")


def _slider(minimum, maximum, step):
    return {"minimum": minimum, "maximum": maximum, "step": step}


def _choices(values):
    return lambda: {"choices": list(values() if callable(values) else values)}


def _sd_checkpoint_choices():
    from modules import sd_models

    return sd_models.checkpoint_tiles()


def _reapply_speed_options():
    from modules import sd_speed

    sd_speed.reapply_to_loaded()


def _localization_choices():
    from modules import localization

    return {"choices": ["None", *localization.localizations]}


def _sd_vae_choices():
    from modules import sd_vae

    return ["Automatic", "None", *sd_vae.vae_dict]


def _sampler_names():
    from modules import sd_samplers

    return [s.name for s in sd_samplers.all_samplers]


def _postprocessing_script_names():
    from modules import scripts

    return [s.name for s in scripts.scripts_postproc.scripts or [] if s.name]


def _upscaler_names():
    from modules import shared

    return [u.name for u in getattr(shared, "sd_upscalers", [])]


def _lora_names():
    from modules import networks

    return ["None", *networks.available_networks]


def _refresh_loras():
    from modules import networks

    networks.list_available_networks()


def _hypernetwork_names():
    from modules import hypernetworks

    return ["None", *hypernetworks.hypernetworks]


def _refresh_hypernetworks():
    from modules import hypernetworks

    hypernetworks.refresh_hypernetworks()


options_templates: dict[str, OptionInfo] = {}

options_templates.update(options_section(("saving-images", "Saving images/grids", "saving"), {
    "samples_save": OptionInfo(True, "Always save all generated images"),
    "samples_format": OptionInfo("png", "File format for images"),
    "samples_filename_pattern": OptionInfo("", "Images filename pattern"),
    "save_images_add_number": OptionInfo(True, "Add number to filename when saving"),
    "save_images_replace_action": OptionInfo("Replace", "Saving the image to an existing file", "radio",
                                             {"choices": ["Replace", "Add number suffix"]}),
    "grid_save": OptionInfo(True, "Always save all generated image grids"),
    "grid_format": OptionInfo("png", "File format for grids"),
    "grid_extended_filename": OptionInfo(False, "Add extended info (seed, prompt) to filename when saving grid"),
    "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
    "grid_prevent_empty_spots": OptionInfo(False, "Prevent empty spots in grid (when set to autodetect)"),
    "grid_zip_filename_pattern": OptionInfo("", "Archive filename pattern"),
    "n_rows": OptionInfo(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as batch size", "slider",
                         _slider(-1, 16, 1)),
    "font": OptionInfo("", "Font for image grids that have text"),
    "grid_text_active_color": OptionInfo("#000000", "Text color for image grids", "color"),
    "grid_text_inactive_color": OptionInfo("#999999", "Inactive text color for image grids", "color"),
    "grid_background_color": OptionInfo("#ffffff", "Background color for image grids", "color"),
    "save_images_before_face_restoration": OptionInfo(False, "Save a copy of image before doing face restoration."),
    "save_images_before_highres_fix": OptionInfo(False, "Save a copy of image before applying highres fix."),
    "save_images_before_color_correction": OptionInfo(False, "Save a copy of image before applying color correction."),
    "save_mask": OptionInfo(False, "For inpainting, save a copy of the greyscale mask"),
    "save_mask_composite": OptionInfo(False, "For inpainting, save a masked composite"),
    "jpeg_quality": OptionInfo(80, "Quality for saved jpeg and avif images", "slider", _slider(1, 100, 1)),
    "webp_lossless": OptionInfo(False, "Use lossless compression for webp images"),
    "export_for_4chan": OptionInfo(True, "Save copy of large images as JPG"),
    "img_downscale_threshold": OptionInfo(4.0, "File size limit for the above option, MB"),
    "target_side_length": OptionInfo(4000, "Width/height limit for the above option, in pixels"),
    "img_max_size_mp": OptionInfo(200, "Maximum grid size (in megapixels)"),
    "use_original_name_batch": OptionInfo(True, "Use original name for output filename during batch process"),
    "use_upscaler_name_as_suffix": OptionInfo(False, "Use upscaler name as filename suffix in the extras tab"),
    "save_selected_only": OptionInfo(True, "When using 'Save' button, only save a single selected image"),
    "save_write_log_csv": OptionInfo(True, "Write log.csv when saving images using 'Save' button"),
    "save_init_img": OptionInfo(False, "Save init images when using img2img"),
    "temp_dir": OptionInfo("", "Directory for temporary images; leave empty for default"),
    "clean_temp_dir_at_start": OptionInfo(False, "Cleanup non-default temporary directory when starting webui"),
    "save_incomplete_images": OptionInfo(False, "Save incomplete images"),
    "notification_audio": OptionInfo(True, "Play notification sound after image generation"),
    "notification_volume": OptionInfo(100, "Notification sound volume", "slider", _slider(0, 100, 1)),
}))

options_templates.update(options_section(("saving-paths", "Paths for saving", "saving"), {
    "outdir_samples": OptionInfo("", "Output directory for images; if empty, defaults to three directories below"),
    "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images", "Output directory for txt2img images"),
    "outdir_img2img_samples": OptionInfo("outputs/img2img-images", "Output directory for img2img images"),
    "outdir_extras_samples": OptionInfo("outputs/extras-images", "Output directory for images from extras tab"),
    "outdir_grids": OptionInfo("", "Output directory for grids; if empty, defaults to two directories below"),
    "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids", "Output directory for txt2img grids"),
    "outdir_img2img_grids": OptionInfo("outputs/img2img-grids", "Output directory for img2img grids"),
    "outdir_save": OptionInfo("log/images", "Directory for saving images using the Save button"),
    "outdir_init_images": OptionInfo("outputs/init-images", "Directory for saving init images when using img2img"),
}))

options_templates.update(options_section(("saving-to-dirs", "Saving to a directory", "saving"), {
    "save_to_dirs": OptionInfo(True, "Save images to a subdirectory"),
    "grid_save_to_dirs": OptionInfo(True, "Save grids to a subdirectory"),
    "use_save_to_dirs_for_ui": OptionInfo(False, "When using \"Save\" button, save images to a subdirectory"),
    "directories_filename_pattern": OptionInfo("[date]", "Directory name pattern"),
    "directories_max_prompt_words": OptionInfo(8, "Max prompt words for [prompt_words] pattern", "slider",
                                               _slider(1, 20, 1)),
}))

options_templates.update(options_section(("upscaling", "Upscaling", "postprocessing"), {
    "ESRGAN_tile": OptionInfo(192, "Tile size for ESRGAN upscalers.", "slider", _slider(0, 512, 16)),
    "ESRGAN_tile_overlap": OptionInfo(8, "Tile overlap for ESRGAN upscalers.", "slider", _slider(0, 48, 1)),
    "realesrgan_enabled_models": OptionInfo(["R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B"], "Select which Real-ESRGAN models to show in the web UI.", "checkboxgroup"),
    "dat_enabled_models": OptionInfo(["DAT x2", "DAT x3", "DAT x4"], "Select which DAT models to show in the web UI.", "checkboxgroup"),
    "DAT_tile": OptionInfo(192, "Tile size for DAT upscalers.", "slider", _slider(0, 512, 16)),
    "DAT_tile_overlap": OptionInfo(8, "Tile overlap for DAT upscalers.", "slider", _slider(0, 48, 1)),
    "upscaler_for_img2img": OptionInfo(None, "Upscaler for img2img", "dropdown", lambda: {"choices": _upscaler_names()}),
    "set_scale_by_when_changing_upscaler": OptionInfo(False, "Automatically set the Scale by factor based on the name of the selected Upscaler."),
}))

options_templates.update(options_section(("face-restoration", "Face restoration", "postprocessing"), {
    "face_restoration": OptionInfo(False, "Restore faces", infotext="Face restoration"),
    "face_restoration_model": OptionInfo("CodeFormer", "Face restoration model", "radio",
                                         {"choices": ["CodeFormer", "GFPGAN"]}),
    "code_former_weight": OptionInfo(0.5, "CodeFormer weight", "slider", _slider(0, 1, 0.01)),
    "face_restoration_unload": OptionInfo(False, "Move face restoration model from VRAM into RAM after processing"),
}))

options_templates.update(options_section(("system", "System", "system"), {
    "auto_launch_browser": OptionInfo("Local", "Automatically open webui in browser on startup", "radio",
                                      {"choices": ["Disable", "Local", "Remote"]}),
    "enable_console_prompts": OptionInfo(False, "Print prompts to console when generating with txt2img and img2img."),
    "show_warnings": OptionInfo(False, "Show warnings in console."),
    "show_gradio_deprecation_warnings": OptionInfo(True, "Show gradio deprecation warnings in console."),
    "memmon_poll_rate": OptionInfo(8, "VRAM usage polls per second during generation.", "slider", _slider(0, 40, 1)),
    "samples_log_stdout": OptionInfo(False, "Always print all generation info to standard output"),
    "multiple_tqdm": OptionInfo(True, "Add a second progress bar to the console that shows progress for an entire job."),
    "enable_upscale_progressbar": OptionInfo(True, "Show a progress bar in the console for tiled upscaling."),
    "print_hypernet_extra": OptionInfo(False, "Print extra hypernetwork information to console."),
    "list_hidden_files": OptionInfo(True, "Load models/files in hidden directories"),
    "disable_mmap_load_safetensors": OptionInfo(False, "Disable memmapping for loading .safetensors files."),
    "hide_ldm_prints": OptionInfo(True, "Prevent Stability-AI's ldm/sgm modules from printing noise to console."),
    "dump_stacks_on_signal": OptionInfo(False, "Print stack traces before exiting the program with ctrl+c."),
}))

options_templates.update(options_section(("profiler", "Profiler", "system"), {
    "profiling_enable": OptionInfo(False, "Enable profiling"),
    "profiling_activities": OptionInfo(["CPU"], "Activities", "checkboxgroup", {"choices": ["CPU", "CUDA"]}),
    "profiling_record_shapes": OptionInfo(True, "Record shapes"),
    "profiling_profile_memory": OptionInfo(True, "Profile memory"),
    "profiling_with_stack": OptionInfo(True, "Include python stack"),
    "profiling_filename": OptionInfo("trace.json", "Profile filename"),
}))

options_templates.update(options_section(("API", "API", "system"), {
    "api_enable_requests": OptionInfo(True, "Allow http:// and https:// URLs for input images in API", restrict_api=True),
    "api_forbid_local_requests": OptionInfo(True, "Forbid URLs to local resources", restrict_api=True),
    "api_useragent": OptionInfo("", "User agent for requests", restrict_api=True),
}))

options_templates.update(options_section(("training", "Training", "training"), {
    "unload_models_when_training": OptionInfo(False, "Move VAE and CLIP to RAM when training if possible."),
    "pin_memory": OptionInfo(False, "Turn on pin_memory for DataLoader."),
    "save_optimizer_state": OptionInfo(False, "Saves Optimizer state as separate *.optim file."),
    "save_training_settings_to_txt": OptionInfo(True, "Save textual inversion and hypernet settings to a text file whenever training starts."),
    "dataset_filename_word_regex": OptionInfo("", "Filename word regex"),
    "dataset_filename_join_string": OptionInfo(" ", "Filename join string"),
    "training_image_repeats_per_epoch": OptionInfo(1, "Number of repeats for a single input image per epoch", "number"),
    "training_write_csv_every": OptionInfo(500, "Save an csv containing the loss to log directory every N steps, 0 to disable"),
    "training_xattention_optimizations": OptionInfo(False, "Use cross attention optimizations while training"),
    "training_enable_tensorboard": OptionInfo(False, "Enable tensorboard logging."),
    "training_tensorboard_save_images": OptionInfo(False, "Save generated images within tensorboard."),
    "training_tensorboard_flush_every": OptionInfo(120, "How often, in seconds, to flush the pending tensorboard events and summaries to disk."),
}))

options_templates.update(options_section(("sd", "Stable Diffusion", "sd"), {
    "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", "dropdown",
                                      lambda: {"choices": _sd_checkpoint_choices()}, infotext="Model hash"),
    "sd_checkpoints_limit": OptionInfo(1, "Maximum number of checkpoints loaded at the same time", "slider",
                                       _slider(1, 10, 1)),
    "sd_checkpoints_keep_in_cpu": OptionInfo(True, "Only keep one model on device"),
    "sd_checkpoint_cache": OptionInfo(0, "Checkpoints to cache in RAM (obsolete)", "slider", _slider(0, 10, 1)),
    "sd_unet": OptionInfo("Automatic", "SD Unet", "dropdown", {"choices": ["Automatic", "None"]}),
    # A1111 has no infotext key for this setting; ours lets an image made with it be reproduced.
    "enable_quantization": OptionInfo(False, "Enable quantization in K samplers for sharper and cleaner results. This may change existing seeds",
                                      infotext="Enable quantization"),
    "emphasis": OptionInfo("Original", "Emphasis mode", "radio",
                           {"choices": ["None", "Ignore", "Original", "No norm"]}, infotext="Emphasis"),
    "enable_batch_seeds": OptionInfo(True, "Make K-diffusion samplers produce same images in a batch as when making a single image"),
    "comma_padding_backtrack": OptionInfo(20, "Prompt word wrap length limit", "slider", _slider(0, 74, 1)),
    "sdxl_clip_l_skip": OptionInfo(False, "Clip skip SDXL", infotext="Clip skip SDXL"),
    "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip", "slider", _slider(1, 12, 1), infotext="Clip skip"),
    "upcast_attn": OptionInfo(False, "Upcast cross attention layer to float32"),
    "randn_source": OptionInfo("GPU", "Random number generator source.", "radio", {"choices": ["GPU", "CPU", "NV"]},
                               infotext="RNG"),
    "tiling": OptionInfo(False, "Tiling", infotext="Tiling"),
    "hires_fix_refiner_pass": OptionInfo("second pass", "Hires fix: which pass to enable refiner for", "radio",
                                         {"choices": ["first pass", "second pass", "both passes"]},
                                         infotext="Hires refiner"),
    "enable_prompt_comments": OptionInfo(True, "Enable comments"),
}))

options_templates.update(options_section(("sdxl", "Stable Diffusion XL", "sd"), {
    "sdxl_crop_top": OptionInfo(0, "crop top coordinate"),
    "sdxl_crop_left": OptionInfo(0, "crop left coordinate"),
    "sdxl_refiner_low_aesthetic_score": OptionInfo(2.5, "SDXL low aesthetic score", "number"),
    "sdxl_refiner_high_aesthetic_score": OptionInfo(6.0, "SDXL high aesthetic score", "number"),
}))

options_templates.update(options_section(("sd3", "Stable Diffusion 3", "sd"), {
    "sd3_enable_t5": OptionInfo(False, "Enable T5"),
}))

options_templates.update(options_section(("vae", "VAE", "sd"), {
    "sd_vae_checkpoint_cache": OptionInfo(0, "VAE Checkpoints to cache in RAM", "slider", _slider(0, 10, 1)),
    "sd_vae": OptionInfo("Automatic", "SD VAE", "dropdown", lambda: {"choices": _sd_vae_choices()}, infotext="VAE"),
    "sd_vae_overrides_per_model_preferences": OptionInfo(True, "Selected VAE overrides per-model preferences"),
    "auto_vae_precision_bfloat16": OptionInfo(False, "Automatically convert VAE to bfloat16"),
    "auto_vae_precision": OptionInfo(True, "Automatically revert VAE to 32-bit floats"),
    "sd_vae_encode_method": OptionInfo("Full", "VAE type for encode", "radio", {"choices": ["Full", "TAESD"]},
                                       infotext="VAE Encoder"),
    "sd_vae_decode_method": OptionInfo("Full", "VAE type for decode", "radio", {"choices": ["Full", "TAESD"]},
                                       infotext="VAE Decoder"),
    "sd_vae_tiled_decode": OptionInfo(False, "Decode large images in tiles").info(
        "less VRAM for big images; tiles overlap and are blended; without it, a decode that runs out of memory "
        "is retried in tiles"),
    "sd_vae_tile_size": OptionInfo(512, "Tile size for tiled VAE decode (pixels)", "slider", _slider(256, 2048, 64)),
}))

options_templates.update(options_section(("img2img", "img2img", "sd"), {
    "inpainting_mask_weight": OptionInfo(1.0, "Inpainting conditioning mask strength", "slider", _slider(0, 1, 0.01),
                                         infotext="Conditional mask weight"),
    "initial_noise_multiplier": OptionInfo(1.0, "Noise multiplier for img2img", "slider", _slider(0, 1.5, 0.001),
                                           infotext="Noise multiplier"),
    "img2img_extra_noise": OptionInfo(0.0, "Extra noise multiplier for img2img and hires fix", "slider",
                                      _slider(0, 1, 0.01), infotext="Extra noise"),
    "img2img_color_correction": OptionInfo(False, "Apply color correction to img2img results to match original colors."),
    "img2img_fix_steps": OptionInfo(False, "With img2img, do exactly the amount of steps the slider specifies."),
    "img2img_background_color": OptionInfo("#ffffff", "With img2img, fill transparent parts of the input image with this color.", "color"),
    "img2img_editor_height": OptionInfo(720, "Height of the image editor", "slider", _slider(80, 1600, 1)),
    "img2img_sketch_default_brush_color": OptionInfo("#ffffff", "Sketch initial brush color", "color"),
    "img2img_inpaint_mask_brush_color": OptionInfo("#ffffff", "Inpaint mask brush color", "color"),
    "img2img_inpaint_sketch_default_brush_color": OptionInfo("#ffffff", "Inpaint sketch initial brush color", "color"),
    "return_mask": OptionInfo(False, "For inpainting, include the greyscale mask in results for web"),
    "return_mask_composite": OptionInfo(False, "For inpainting, include masked composite in results for web"),
    "img2img_batch_show_results_limit": OptionInfo(32, "Show the first N batch img2img results in UI", "slider",
                                                   _slider(-1, 1000, 1)),
    "overlay_inpaint": OptionInfo(True, "Overlay original for inpaint"),
}))

options_templates.update(options_section(("optimizations", "Optimizations", "sd"), {
    "cross_attention_optimization": OptionInfo("Automatic", "Cross attention optimization", "dropdown",
                                               {"choices": ["Automatic", "xformers", "sdp-no-mem", "sdp", "Doggettx",
                                                            "sub-quadratic", "V1", "InvokeAI", "None"]}),
    "s_min_uncond": OptionInfo(0.0, "Negative Guidance minimum sigma", "slider", _slider(0, 15, 0.01), infotext="NGMS"),
    "s_min_uncond_all": OptionInfo(False, "Negative Guidance minimum sigma all steps", infotext="NGMS all steps"),
    "token_merging_ratio": OptionInfo(0.0, "Token merging ratio", "slider", _slider(0, 0.9, 0.1),
                                      infotext="Token merging ratio"),
    "token_merging_ratio_img2img": OptionInfo(0.0, "Token merging ratio for img2img", "slider", _slider(0, 0.9, 0.1)),
    "token_merging_ratio_hr": OptionInfo(0.0, "Token merging ratio for high-res pass", "slider", _slider(0, 0.9, 0.1),
                                         infotext="Token merging ratio hr"),
    "pad_cond_uncond": OptionInfo(False, "Pad prompt/negative prompt", infotext="Pad conds"),
    "pad_cond_uncond_v0": OptionInfo(False, "Pad prompt/negative prompt (v0)", infotext="Pad conds v0"),
    "persistent_cond_cache": OptionInfo(True, "Persistent cond cache"),
    "batch_cond_uncond": OptionInfo(True, "Batch cond/uncond"),
    "fp8_storage": OptionInfo("Disable", "FP8 weight", "radio", {"choices": ["Disable", "Enable for SDXL", "Enable"]}),
    "cache_fp16_weight": OptionInfo(False, "Cache FP16 weight for LoRA"),
    "unet_compile": OptionInfo("Disable", "Compile the UNet with torch.compile", "dropdown",
                               {"choices": ["Disable", "default", "reduce-overhead", "max-autotune",
                                            "max-autotune-no-cudagraphs"]},
                               onchange=_reapply_speed_options).info(
        "faster sampling on CUDA; the first image at each new size waits for the compile (cached on disk); "
        "max-autotune and reduce-overhead use CUDA graphs; --torch-compile overrides"),
    "unet_compile_regional": OptionInfo(False, "torch.compile only the repeated transformer blocks",
                                        onchange=_reapply_speed_options).info("compiles in seconds, smaller speed-up"),
}))

options_templates.update(options_section(("compatibility", "Compatibility", "sd"), {
    "auto_backcompat": OptionInfo(True, "Automatic backward compatibility"),
    "use_old_emphasis_implementation": OptionInfo(False, "Use old emphasis implementation. Can be useful to reproduce old seeds."),
    "use_old_karras_scheduler_sigmas": OptionInfo(False, "Use old karras scheduler sigmas (0.1 to 10)."),
    "no_dpmpp_sde_batch_determinism": OptionInfo(False, "Do not make DPM++ SDE deterministic across different batch sizes."),
    "use_old_hires_fix_width_height": OptionInfo(False, "For hires fix, use width/height sliders to set final resolution rather than first pass (disables Upscale by, Resize width/height to)."),
    "hires_fix_use_firstpass_conds": OptionInfo(False, "For hires fix, calculate conds of second pass using extra networks of first pass."),
    "use_old_scheduling": OptionInfo(False, "Use old prompt editing timelines.", infotext="Old prompt editing timelines"),
    "use_downcasted_alpha_bar": OptionInfo(False, "Downcast model alphas_cumprod to fp16 before sampling. For reproducing old seeds.", infotext="Downcast alphas_cumprod"),
    "refiner_switch_by_sample_steps": OptionInfo(False, "Switch to refiner by sampling steps instead of model timesteps.", infotext="Refiner switch by sampling steps"),
}))

options_templates.update(options_section(("interrogate", "Interrogate", "sd"), {
    "interrogate_keep_models_in_memory": OptionInfo(False, "Keep models in VRAM"),
    "interrogate_return_ranks": OptionInfo(False, "Include ranks of model tags matches in results."),
    "interrogate_clip_num_beams": OptionInfo(1, "BLIP: num_beams", "slider", _slider(1, 16, 1)),
    "interrogate_clip_min_length": OptionInfo(24, "BLIP: minimum description length", "slider", _slider(1, 128, 1)),
    "interrogate_clip_max_length": OptionInfo(48, "BLIP: maximum description length", "slider", _slider(1, 256, 1)),
    "interrogate_clip_dict_limit": OptionInfo(1500, "CLIP: maximum number of lines in text file"),
    "interrogate_clip_skip_categories": OptionInfo([], "CLIP: skip inquire categories", "checkboxgroup"),
    "interrogate_deepbooru_score_threshold": OptionInfo(0.5, "deepbooru: score threshold", "slider", _slider(0, 1, 0.01)),
    "deepbooru_sort_alpha": OptionInfo(True, "deepbooru: sort tags alphabetically"),
    "deepbooru_use_spaces": OptionInfo(True, "deepbooru: use spaces in tags"),
    "deepbooru_escape": OptionInfo(True, "deepbooru: escape (\\) brackets"),
    "deepbooru_filter_tags": OptionInfo("", "deepbooru: filter out those tags"),
}))

options_templates.update(options_section(("extra_networks", "Extra Networks", "sd"), {
    "extra_networks_show_hidden_directories": OptionInfo(True, "Show hidden directories"),
    "extra_networks_dir_button_function": OptionInfo(False, "Add a '/' to the beginning of directory buttons"),
    "extra_networks_hidden_models": OptionInfo("When searched", "Show cards for models in hidden directories", "radio",
                                               {"choices": ["Always", "When searched", "Never"]}),
    "extra_networks_default_multiplier": OptionInfo(1.0, "Default multiplier for extra networks", "slider",
                                                    _slider(0.0, 2.0, 0.01)),
    "extra_networks_card_width": OptionInfo(0, "Card width for Extra Networks"),
    "extra_networks_card_height": OptionInfo(0, "Card height for Extra Networks"),
    "extra_networks_card_text_scale": OptionInfo(1.0, "Card text scale", "slider", _slider(0.0, 2.0, 0.01)),
    "extra_networks_card_show_desc": OptionInfo(True, "Show description on card"),
    "extra_networks_card_description_is_html": OptionInfo(False, "Treat card description as HTML"),
    "extra_networks_card_order_field": OptionInfo("Path", "Default order field for Extra Networks cards", "dropdown",
                                                  {"choices": ["Path", "Name", "Date Created", "Date Modified"]}),
    "extra_networks_card_order": OptionInfo("Ascending", "Default order for Extra Networks cards", "dropdown",
                                            {"choices": ["Ascending", "Descending"]}),
    "extra_networks_tree_view_style": OptionInfo("Dirs", "Extra Networks directory view style", "radio",
                                                 {"choices": ["Tree", "Dirs"]}),
    "extra_networks_tree_view_default_enabled": OptionInfo(True, "Show the Extra Networks directory view by default"),
    "extra_networks_tree_view_default_width": OptionInfo(180, "Default width for the Extra Networks directory tree view", "number"),
    "extra_networks_add_text_separator": OptionInfo(" ", "Extra networks separator"),
    "ui_extra_networks_tab_reorder": OptionInfo("", "Extra networks tab order"),
    "textual_inversion_print_at_load": OptionInfo(False, "Print a list of Textual Inversion embeddings when loading model"),
    "textual_inversion_add_hashes_to_infotext": OptionInfo(True, "Add Textual Inversion hashes to infotext"),
    "sd_hypernetwork": OptionInfo("None", "Add hypernetwork to prompt", "dropdown", _choices(_hypernetwork_names),
                                  refresh=_refresh_hypernetworks),
    "sd_lora": OptionInfo("None", "Add network to prompt", "dropdown", _choices(_lora_names), refresh=_refresh_loras),
    "lora_preferred_name": OptionInfo("Alias from file", "When adding to prompt, refer to Lora by", "radio",
                                      {"choices": ["Alias from file", "Filename"]}),
    "lora_add_hashes_to_infotext": OptionInfo(True, "Add Lora hashes to infotext"),
    "lora_show_all": OptionInfo(False, "Always show all networks on the Lora page").info(
        "otherwise, those detected as for incompatible version of Stable Diffusion will be hidden"),
    "lora_hide_unknown_for_versions": OptionInfo([], "Hide networks of unknown versions for model versions",
                                                 "checkboxgroup", {"choices": ["SD1", "SD2", "SDXL"]}),
    "lora_in_memory_limit": OptionInfo(0, "Number of Lora networks to keep cached in memory", "number",
                                       {"precision": 0}),
    "lora_not_found_warning_console": OptionInfo(False, "Lora not found warning in console"),
    "lora_not_found_gradio_warning": OptionInfo(False, "Lora not found warning popup in webui"),
}))

options_templates.update(options_section(("ui_prompt_editing", "Prompt editing", "ui"), {
    "keyedit_precision_attention": OptionInfo(0.1, "Precision for (attention:1.1) when editing the prompt with Ctrl+up/down", "slider", _slider(0.01, 0.2, 0.001)),
    "keyedit_precision_extra": OptionInfo(0.05, "Precision for <extra networks:0.9> when editing the prompt with Ctrl+up/down", "slider", _slider(0.01, 0.2, 0.001)),
    "keyedit_delimiters": OptionInfo(r".,\/!?%^*;:{}=`~() ", "Word delimiters when editing the prompt with Ctrl+up/down"),
    "keyedit_delimiters_whitespace": OptionInfo(["Tab", "Carriage Return", "Line Feed"], "Ctrl+up/down whitespace delimiters", "checkboxgroup", {"choices": ["Tab", "Carriage Return", "Line Feed"]}),
    "keyedit_move": OptionInfo(True, "Alt+left/right moves prompt elements"),
    "disable_token_counters": OptionInfo(False, "Disable prompt token counters"),
    "include_styles_into_token_counters": OptionInfo(True, "Count tokens of enabled styles"),
}))

options_templates.update(options_section(("ui_gallery", "Gallery", "ui"), {
    "return_grid": OptionInfo(True, "Show grid in gallery"),
    "do_not_show_images": OptionInfo(False, "Do not show any images in gallery"),
    "js_modal_lightbox": OptionInfo(True, "Full page image viewer: enable"),
    "js_modal_lightbox_initially_zoomed": OptionInfo(True, "Full page image viewer: show images zoomed in by default"),
    "js_modal_lightbox_gamepad": OptionInfo(False, "Full page image viewer: navigate with gamepad"),
    "js_modal_lightbox_gamepad_repeat": OptionInfo(250, "Full page image viewer: gamepad repeat period"),
    "sd_webui_modal_lightbox_icon_opacity": OptionInfo(1, "Full page image viewer: control icon unfocused opacity", "slider", _slider(0, 1, 0.01)),
    "sd_webui_modal_lightbox_toolbar_opacity": OptionInfo(0.9, "Full page image viewer: tool bar opacity", "slider", _slider(0, 1, 0.01)),
    "gallery_height": OptionInfo("", "Gallery height"),
    "open_dir_button_choice": OptionInfo("Subdirectory", "What directory the [📂] button opens", "radio",
                                         {"choices": ["Output Root", "Subdirectory", "Subdirectory (even temp dir)"]}),
}))

options_templates.update(options_section(("ui_alternatives", "UI alternatives", "ui"), {
    "compact_prompt_box": OptionInfo(False, "Compact prompt layout").needs_reload_ui(),
    "samplers_in_dropdown": OptionInfo(True, "Use dropdown for sampler selection instead of radio group").needs_reload_ui(),
    "dimensions_and_batch_together": OptionInfo(True, "Show Width/Height and Batch sliders in same row").needs_reload_ui(),
    "sd_checkpoint_dropdown_use_short": OptionInfo(False, "Checkpoint dropdown: use filenames without paths"),
    "hires_fix_show_sampler": OptionInfo(False, "Hires fix: show hires checkpoint and sampler selection").needs_reload_ui(),
    "hires_fix_show_prompts": OptionInfo(False, "Hires fix: show hires prompt and negative prompt").needs_reload_ui(),
    "txt2img_settings_accordion": OptionInfo(False, "Settings in txt2img hidden under Accordion").needs_reload_ui(),
    "img2img_settings_accordion": OptionInfo(False, "Settings in img2img hidden under Accordion").needs_reload_ui(),
    "interrupt_after_current": OptionInfo(True, "Don't Interrupt in the middle"),
}))

options_templates.update(options_section(("ui", "User interface", "ui"), {
    "localization": OptionInfo("None", "Localization", "dropdown", _localization_choices).needs_reload_ui(),
    "quicksettings_list": OptionInfo(["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"], "Quicksettings list", "multiselect").needs_reload_ui(),
    "ui_tab_order": OptionInfo([], "UI tab order", "multiselect").needs_reload_ui(),
    "hidden_tabs": OptionInfo([], "Hidden UI tabs", "multiselect").needs_reload_ui(),
    "ui_reorder_list": OptionInfo([], "UI item order for txt2img/img2img tabs", "multiselect").needs_reload_ui(),
    "gradio_theme": OptionInfo("Default", "Gradio theme").needs_reload_ui(),
    "gradio_themes_cache": OptionInfo(True, "Cache gradio themes locally"),
    "show_progress_in_title": OptionInfo(True, "Show generation progress in window title."),
    "send_seed": OptionInfo(True, "Send seed when sending prompt or image to other interface"),
    "send_size": OptionInfo(True, "Send size when sending prompt or image to another interface"),
    "enable_reloading_ui_scripts": OptionInfo(False, "Reload UI scripts when using Reload UI option"),
}))

options_templates.update(options_section(("infotext", "Infotext", "ui"), {
    "infotext_explanation": OptionHTML("Infotext is what this software calls the text that contains generation parameters and can be used to generate the same picture again."),
    "enable_pnginfo": OptionInfo(True, "Write infotext to metadata of the generated image"),
    "save_txt": OptionInfo(False, "Create a text file with infotext next to every generated image"),
    "add_model_name_to_info": OptionInfo(True, "Add model name to infotext"),
    "add_model_hash_to_info": OptionInfo(True, "Add model hash to infotext"),
    "add_vae_name_to_info": OptionInfo(True, "Add VAE name to infotext"),
    "add_vae_hash_to_info": OptionInfo(True, "Add VAE hash to infotext"),
    "add_user_name_to_info": OptionInfo(False, "Add user name to infotext when authenticated"),
    "add_version_to_infotext": OptionInfo(True, "Add program version to infotext"),
    "disable_weights_auto_swap": OptionInfo(True, "Disregard checkpoint information from pasted infotext"),
    "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext", "multiselect"),
    "infotext_styles": OptionInfo("Apply if any", "Infer styles from prompts of pasted infotext", "radio",
                                  {"choices": ["Ignore", "Apply", "Discard", "Apply if any"]}),
}))

options_templates.update(options_section(("ui", "Live previews", "ui"), {
    "show_progressbar": OptionInfo(True, "Show progressbar"),
    "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
    "live_previews_image_format": OptionInfo("png", "Live preview file format", "radio",
                                             {"choices": ["jpeg", "png", "webp"]}),
    "show_progress_grid": OptionInfo(True, "Show previews of all images generated in a batch as a grid"),
    "show_progress_every_n_steps": OptionInfo(10, "Live preview display period", "slider", _slider(-1, 32, 1)),
    "show_progress_type": OptionInfo("Approx NN", "Live preview method", "radio",
                                     {"choices": ["Full", "Approx NN", "Approx cheap", "TAESD"]}),
    "live_preview_allow_lowvram_full": OptionInfo(False, "Allow Full live preview method with lowvram/medvram"),
    "live_preview_content": OptionInfo("Prompt", "Live preview subject", "radio",
                                       {"choices": ["Combined", "Prompt", "Negative prompt"]}),
    "live_preview_refresh_period": OptionInfo(1000, "Progressbar and preview update period"),
    "live_preview_fast_interrupt": OptionInfo(False, "Return image with chosen live preview method on interrupt"),
    "js_live_preview_in_modal_lightbox": OptionInfo(False, "Show Live preview in full page image viewer"),
    "prevent_screen_sleep_during_generation": OptionInfo(True, "Prevent screen sleep during generation"),
}))

options_templates.update(options_section(("sampler-params", "Sampler parameters", "sd"), {
    "hide_samplers": OptionInfo([], "Hide samplers in user interface", "checkboxgroup",
                                lambda: {"choices": _sampler_names()}).needs_reload_ui(),
    "eta_ddim": OptionInfo(0.0, "Eta for DDIM", "slider", _slider(0, 1, 0.01), infotext="Eta DDIM"),
    "eta_ancestral": OptionInfo(1.0, "Eta for k-diffusion samplers", "slider", _slider(0, 1, 0.01), infotext="Eta"),
    "ddim_discretize": OptionInfo("uniform", "img2img DDIM discretize", "radio", {"choices": ["uniform", "quad"]}),
    "s_churn": OptionInfo(0.0, "sigma churn", "slider", _slider(0, 100, 0.01), infotext="Sigma churn"),
    "s_tmin": OptionInfo(0.0, "sigma tmin", "slider", _slider(0, 10, 0.01), infotext="Sigma tmin"),
    "s_tmax": OptionInfo(0.0, "sigma tmax", "slider", _slider(0, 999, 0.01), infotext="Sigma tmax"),
    "s_noise": OptionInfo(1.0, "sigma noise", "slider", _slider(0.0, 1.1, 0.001), infotext="Sigma noise"),
    "sigma_min": OptionInfo(0.0, "sigma min", "number", infotext="Schedule min sigma"),
    "sigma_max": OptionInfo(0.0, "sigma max", "number", infotext="Schedule max sigma"),
    "rho": OptionInfo(0.0, "rho", "number", infotext="Schedule rho"),
    "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", "number", {"precision": 0}, infotext="ENSD"),
    "always_discard_next_to_last_sigma": OptionInfo(False, "Always discard next-to-last sigma",
                                                    infotext="Discard penultimate sigma"),
    "sgm_noise_multiplier": OptionInfo(False, "SGM noise multiplier", infotext="SGM noise multiplier"),
    "uni_pc_variant": OptionInfo("bh1", "UniPC variant", "radio", {"choices": ["bh1", "bh2", "vary_coeff"]},
                                 infotext="UniPC variant"),
    "uni_pc_skip_type": OptionInfo("time_uniform", "UniPC skip type", "radio",
                                   {"choices": ["time_uniform", "time_quadratic", "logSNR"]},
                                   infotext="UniPC skip type"),
    "uni_pc_order": OptionInfo(3, "UniPC order", "slider", _slider(1, 50, 1), infotext="UniPC order"),
    "uni_pc_lower_order_final": OptionInfo(True, "UniPC lower order final", infotext="UniPC lower order final"),
    "sd_noise_schedule": OptionInfo("Default", "Noise schedule for sampling", "radio",
                                    {"choices": ["Default", "Zero Terminal SNR"]}, infotext="Noise Schedule"),
    "skip_early_cond": OptionInfo(0.0, "Ignore negative prompt during early sampling", "slider", _slider(0, 1, 0.01),
                                  infotext="Skip Early CFG"),
    "beta_dist_alpha": OptionInfo(0.6, "Beta scheduler - alpha", "slider", _slider(0.01, 1.0, 0.01),
                                  infotext="Beta scheduler alpha"),
    "beta_dist_beta": OptionInfo(0.6, "Beta scheduler - beta", "slider", _slider(0.01, 1.0, 0.01),
                                 infotext="Beta scheduler beta"),
}))

options_templates.update(options_section(("postprocessing", "Postprocessing", "postprocessing"), {
    "postprocessing_enable_in_main_ui": OptionInfo([], "Enable postprocessing operations in txt2img and img2img tabs", "multiselect",
        _choices(_postprocessing_script_names)),
    "postprocessing_disable_in_extras": OptionInfo([], "Disable postprocessing operations in extras tab", "multiselect",
        _choices(_postprocessing_script_names)),
    "postprocessing_operation_order": OptionInfo([], "Postprocessing operation order", "multiselect",
        _choices(_postprocessing_script_names)),
    "upscaling_max_images_in_cache": OptionInfo(5, "Maximum number of images in upscaling cache", "slider", _slider(0, 10, 1)),
    "postprocessing_existing_caption_action": OptionInfo("Ignore", "Action for existing captions", "radio",
                                                         {"choices": ["Ignore", "Keep", "Prepend", "Append"]}),
}))

options_templates.update(options_section((None, "Hidden options"), {
    "disabled_extensions": OptionInfo([], "Disable these extensions"),
    "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of disabled extensions)",
                                         "radio", {"choices": ["none", "extra", "all"]}),
    "restore_config_state_file": OptionInfo("", "Config state file to restore from, under 'config-states/' folder"),
    "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint"),
}))
