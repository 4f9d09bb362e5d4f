"""A stand-in for the settings object: A1111 v1.10.1 defaults of the settings images/infotext/styles read."""

from __future__ import annotations

from types import SimpleNamespace

A1111_DEFAULTS = {
    # infotext
    "enable_pnginfo": True,
    "save_txt": False,
    "add_model_name_to_info": True,
    "add_model_hash_to_info": True,
    "add_vae_name_to_info": True,
    "add_vae_hash_to_info": True,
    "add_user_name_to_info": False,
    "add_version_to_infotext": True,
    "disable_weights_auto_swap": True,
    "infotext_skip_pasting": [],
    "infotext_styles": "Apply if any",
    "auto_backcompat": True,
    "use_old_hires_fix_width_height": False,
    # generation settings that infotext writes or overrides
    "CLIP_stop_at_last_layers": 1,
    "eta_noise_seed_delta": 0,
    "randn_source": "GPU",
    "face_restoration": False,
    "face_restoration_model": "CodeFormer",
    "inpainting_mask_weight": 1.0,
    "token_merging_ratio": 0.0,
    "token_merging_ratio_hr": 0.0,
    "fp8_storage": "Disable",
    "cache_fp16_weight": False,
    "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
    "sd_vae": "Automatic",
    "emphasis": "Original",
    "tiling": False,
    "eta_ancestral": 1.0,
    "eta_ddim": 0.0,
    "s_churn": 0.0,
    "pad_cond_uncond": False,
    # saving images
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "save_images_replace_action": "Replace",
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "directories_filename_pattern": "[date]",
    "directories_max_prompt_words": 8,
    "jpeg_quality": 80,
    "webp_lossless": False,
    "export_for_4chan": True,
    "img_downscale_threshold": 4.0,
    "target_side_length": 4000.0,
    # grids
    "n_rows": -1,
    "grid_prevent_empty_spots": False,
    "grid_background_color": "#ffffff",
    "grid_text_active_color": "#000000",
    "grid_text_inactive_color": "#999999",
    "font": "",
}


def make_opts(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{**A1111_DEFAULTS, **overrides})
