"""Process-wide state, as A1111 extensions expect to find it (`modules.shared`).

Holds the parsed flags (`cmd_opts`), the settings (`opts`), the job state (`state`) and the loaded model
(`sd_model`, loaded on first access). The core reads from here; it does not keep other globals.
"""

from __future__ import annotations

import os
import sys
import types

from modules import paths_internal, shared_options, shared_state
from modules.options import OptionHTML, OptionInfo, Options, options_section  # noqa: F401 (A1111 surface)
from modules.shared_cmd_options import cmd_opts, parser  # noqa: F401

script_path = paths_internal.script_path
data_path = paths_internal.data_path
models_path = paths_internal.models_path

options_templates = shared_options.options_templates
restricted_opts = {
    "samples_filename_pattern", "directories_filename_pattern", "outdir_samples", "outdir_txt2img_samples",
    "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids", "outdir_txt2img_grids", "outdir_save",
    "outdir_init_images", "temp_dir", "clean_temp_dir_at_start",
}
opts = Options(options_templates, restricted_opts)
config_filename = cmd_opts.ui_settings_file
opts.load(config_filename)
if cmd_opts.freeze_settings:
    opts.frozen_keys.update(options_templates)
for key in (cmd_opts.freeze_specific_settings or "").split(","):
    if key.strip():
        opts.frozen_keys.add(key.strip())

state = shared_state.State()

hide_dirs = {"visible": not cmd_opts.hide_ui_dir_config}
demo = None
prompt_styles = None
sd_upscalers: list = []  # filled by modules.upscaler.load_upscalers()
# Hires fix's latent upscalers: torch interpolation mode and antialiasing of each (A1111's names)
latent_upscale_default_mode = "Latent"
latent_upscale_modes = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}
hypernetworks: dict = {}  # name → file (modules.hypernetworks keeps it current)
loaded_hypernetworks: list = []
face_restorers: list = []
total_tqdm = None
mem_mon = None
device = None  # set by devices.configure via refresh_device()


def refresh_device() -> None:
    from modules import devices

    global device
    device = devices.device


def reload_gradio_theme(theme_name: str | None = None) -> None:
    """The theme is chosen when the UI is built; kept for extensions that call it."""


def listfiles(dirname: str) -> list[str]:
    return sorted(os.path.join(dirname, x) for x in os.listdir(dirname) if not x.startswith("."))


class _Shared(types.ModuleType):
    @property
    def sd_model(self):
        from modules import sd_models

        return sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        from modules import sd_models

        sd_models.model_data.set_sd_model(value)


sys.modules[__name__].__class__ = _Shared
