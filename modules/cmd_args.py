"""Command-line flags: every flag of A1111 v1.10 with its name and default.

A flag is in one of three states, listed in docs/flags.md (checked by a test):
- active: it does what A1111's does (or better, where A1111's behaviour is a security hole);
- no-op: it does nothing in A1111 either;
- pending: accepted so that launch scripts keep working, but not acted on yet; using it prints one warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from modules.paths_internal import data_path, models_path, script_path, sd_default_config, sd_model_file

log = logging.getLogger(__name__)

parser = argparse.ArgumentParser(prog="webui.py", description="Stable Diffusion web UI")

add = parser.add_argument

# launcher / environment
add("-f", action="store_true", help=argparse.SUPPRESS)
add("--update-all-extensions", action="store_true", help="git pull every extension at start")
add("--skip-python-version-check", action="store_true", help="skip the Python version warning")
add("--skip-torch-cuda-test", action="store_true", help="do not check that torch can use a CUDA GPU")
add("--reinstall-xformers", action="store_true", help="force reinstall of xformers")
add("--reinstall-torch", action="store_true", help="force reinstall of torch")
add("--update-check", action="store_true", help="compare the version with the latest release at start")
add("--test-server", action="store_true", help="configure the server for tests")
add("--log-startup", action="store_true", help="detailed start-up log")
add("--skip-prepare-environment", action="store_true", help="skip environment preparation")
add("--skip-install", action="store_true", help="skip pip installs and extension installers")
add("--dump-sysinfo", action="store_true", help="write a sysinfo file and exit")
add("--loglevel", type=str, default=None, help="CRITICAL, ERROR, WARNING, INFO, DEBUG")
add("--do-not-download-clip", action="store_true", help="do not download CLIP (nothing is ever downloaded at start)")
add("--exit", action="store_true", help="prepare the environment and exit")

# paths
add("--data-dir", type=str, default=data_path, help="base path for user data")
add("--models-dir", type=str, default=None, help="base path for models (default: DATA_DIR/models)")
add("--config", type=str, default=sd_default_config, help="model config yaml for checkpoints without one")
add("--ckpt", type=str, default=sd_model_file, help="checkpoint to add to the list and load")
add("--ckpt-dir", type=str, default=None, help="extra directory with checkpoints")
add("--vae-dir", type=str, default=None, help="extra directory with VAEs")
add("--gfpgan-dir", type=str, default=None, help="GFPGAN directory")
add("--gfpgan-model", type=str, default=None, help="GFPGAN model file")
add("--embeddings-dir", type=str, default=os.path.join(data_path, "embeddings"), help="textual inversion directory")
add("--textual-inversion-templates-dir", type=str, default=os.path.join(script_path, "textual_inversion_templates"))
add("--hypernetwork-dir", type=str, default=os.path.join(models_path, "hypernetworks"), help="hypernetworks")
add("--localizations-dir", type=str, default=os.path.join(script_path, "localizations"), help="localizations")
add("--codeformer-models-path", type=str, default=os.path.join(models_path, "Codeformer"))
add("--gfpgan-models-path", type=str, default=os.path.join(models_path, "GFPGAN"))
add("--esrgan-models-path", type=str, default=os.path.join(models_path, "ESRGAN"))
add("--bsrgan-models-path", type=str, default=os.path.join(models_path, "BSRGAN"))
add("--realesrgan-models-path", type=str, default=os.path.join(models_path, "RealESRGAN"))
add("--dat-models-path", type=str, default=os.path.join(models_path, "DAT"))
add("--clip-models-path", type=str, default=None)
add("--ldsr-models-path", type=str, default=os.path.join(models_path, "LDSR"))
add("--swinir-models-path", type=str, default=os.path.join(models_path, "SwinIR"))
add("--scunet-models-path", type=str, default=os.path.join(models_path, "ScuNET"))
add("--lora-dir", type=str, default=os.path.join(models_path, "Lora"), help="LoRA directory")
add("--lyco-dir-backcompat", type=str, default=os.path.join(models_path, "LyCORIS"), help="LyCORIS directory")
add("--styles-file", type=str, action="append", help="styles CSV file (repeatable; wildcards allowed)")
add("--ui-config-file", type=str, default=os.path.join(data_path, "ui-config.json"))
add("--ui-settings-file", type=str, default=os.path.join(data_path, "config.json"))

# precision, devices, memory
add("--no-half", action="store_true", help="keep the model in fp32")
add("--no-half-vae", action="store_true", help="keep the VAE in fp32")
add("--precision", type=str, choices=["full", "half", "autocast"], default="autocast", help="evaluation precision")
add("--upcast-sampling", action="store_true", help="upcast sampling (no effect with --no-half)")
add("--use-cpu", nargs="+", default=[], type=str.lower, help="modules to run on the CPU: all, sd, ...")
add("--use-ipex", action="store_true", help="Intel XPU")
add("--device-id", type=str, default=None, help="CUDA device to use")
add("--medvram", action="store_true", help="keep one model part on the GPU at a time")
add("--medvram-sdxl", action="store_true", help="--medvram for SDXL models only")
add("--lowvram", action="store_true", help="also split the UNet into blocks")
add("--lowram", action="store_true", help="load checkpoint weights straight to VRAM")
add("--disable-model-loading-ram-optimization", action="store_true")
add("--disable-nan-check", action="store_true", help="do not check outputs for NaNs")
add("--opt-channelslast", action="store_true", help="channels_last memory format for the UNet")
add("--bf16", action="store_true", help="bfloat16 instead of float16 for the half-precision model (Ampere or newer)")
add("--torch-compile", type=str, default=None, nargs="?", const="default",
    choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
    help="compile the UNet with torch.compile in this mode (overrides the setting)")
add("--torch-compile-regional", action="store_true", help="torch.compile only the repeated transformer blocks")

# attention
add("--xformers", action="store_true", help="use xformers attention")
add("--force-enable-xformers", action="store_true", help="use xformers regardless of checks")
add("--xformers-flash-attention", action="store_true", help="xformers with flash attention")
add("--opt-split-attention", action="store_true", help="prefer Doggettx split attention")
add("--opt-sub-quad-attention", action="store_true", help="prefer sub-quadratic attention")
add("--sub-quad-q-chunk-size", type=int, default=1024)
add("--sub-quad-kv-chunk-size", type=int, default=None)
add("--sub-quad-chunk-threshold", type=int, default=None)
add("--opt-split-attention-invokeai", action="store_true")
add("--opt-split-attention-v1", action="store_true")
add("--opt-sdp-attention", action="store_true", help="prefer scaled-dot-product attention")
add("--opt-sdp-no-mem-attention", action="store_true", help="SDP without memory-efficient kernels")
add("--disable-opt-split-attention", action="store_true", help="prefer no attention optimisation")
add("--upcast-attn", action="store_true", help=argparse.SUPPRESS)

# server
add("--listen", action="store_true", help="bind 0.0.0.0 so the UI is reachable from the network")
add("--port", type=int, default=None, help="port (7860; 7861 with --nowebui)")
add("--server-name", type=str, default=None, help="host name to bind")
add("--autolaunch", action="store_true", help="open the UI in the browser")
add("--theme", type=str, default=None, help="light or dark")
add("--share", action="store_true", help="create a public share link")
add("--ngrok", type=str, default=None, help="ngrok auth token")
add("--ngrok-region", type=str, default="", help="does nothing")
add("--ngrok-options", type=json.loads, default=None, help="JSON options for ngrok")
add("--gradio-auth", type=str, default=None, help="user:pass[,user2:pass2]")
add("--gradio-auth-path", type=str, default=None, help="file with user:pass entries")
add("--gradio-debug", action="store_true")
add("--gradio-allowed-path", action="append", default=[], help="extra paths the UI may serve")
add("--gradio-img2img-tool", type=str, default=None, help="does nothing")
add("--gradio-inpaint-tool", type=str, default=None, help="does nothing")
add("--gradio-queue", action="store_true", help="does nothing")
add("--no-gradio-queue", action="store_true", help="disable the Gradio queue")
add("--subpath", type=str, default=None, help="root path when behind a reverse proxy")
add("--tls-keyfile", type=str, default=None)
add("--tls-certfile", type=str, default=None)
add("--disable-tls-verify", action="store_false", help="allow self-signed certificates")
add("--cors-allow-origins", type=str, default=None)
add("--cors-allow-origins-regex", type=str, default=None)
add("--timeout-keep-alive", type=int, default=30)
add("--api", action="store_true", help="enable the HTTP API")
add("--api-auth", type=str, default=None, help="HTTP Basic credentials for the API: user:pass[,...]")
add("--api-log", action="store_true", help="log every API request")
add("--nowebui", action="store_true", help="serve the API alone")
add("--api-server-stop", action="store_true", help="enable server-kill/-restart/-stop API routes")
add("--add-stop-route", action="store_true", help="does nothing")
add("--skip-load-model-at-start", action="store_true", help="with --nowebui: load the model on first use")

# UI
add("--ui-debug-mode", action="store_true", help="do not load a model")
add("--hide-ui-dir-config", action="store_true", help="hide directory settings")
add("--freeze-settings", action="store_true", help="settings cannot be changed")
add("--freeze-settings-in-sections", type=str, default=None)
add("--freeze-specific-settings", type=str, default=None)
add("--use-textbox-seed", action="store_true")
add("--disable-console-progressbars", action="store_true")
add("--enable-console-prompts", action="store_true", help="does nothing")
add("--show-negative-prompt", action="store_true", help="does nothing")
add("--no-progressbar-hiding", action="store_true")
add("--max-batch-count", type=int, default=16, help="does nothing")
add("--allow-code", action="store_true", help="enable the Custom code script")
add("--administrator", action="store_true")
add("--no-prompt-history", action="store_true", help="do not read or write params.txt")
add("--unix-filenames-sanitization", action="store_true")
add("--filenames-max-length", type=int, default=128)

# models
add("--vae-path", type=str, default=None, help="use this VAE; disables the VAE setting")
add("--disable-safe-unpickle", action="store_true", help="skip the allow-list check of pickled files")
add("--no-hashing", action="store_true", help="do not compute sha256 of models")
add("--no-download-sd-model", action="store_true", help="do not offer to download SD 1.5")
add("--always-batch-cond-uncond", action="store_true", help="does nothing")
add("--unload-gfpgan", action="store_true", help="does nothing")
add("--deepdanbooru", action="store_true", help="does nothing")

# extensions
add("--enable-insecure-extension-access", action="store_true",
    help="allow the Extensions tab to install/update/enable extensions on a server reachable from other machines")
add("--disable-all-extensions", action="store_true", help="load no extensions (not even built-in ones)")
add("--disable-extra-extensions", action="store_true", help="load only built-in extensions")
add("--skip-version-check", action="store_true")

# Flags that act. Everything not listed here or in NOOP is "pending".
ACTIVE = {
    "f", "data_dir", "models_dir", "ckpt", "ckpt_dir", "vae_dir", "embeddings_dir", "lora_dir", "lyco_dir_backcompat",
    "ui_settings_file", "styles_file", "port", "listen", "server_name", "autolaunch", "no_half", "no_half_vae",
    "precision", "upcast_sampling", "use_cpu", "device_id", "skip_torch_cuda_test", "disable_nan_check", "xformers",
    "force_enable_xformers", "xformers_flash_attention", "opt_split_attention", "opt_sub_quad_attention",
    "opt_split_attention_invokeai", "opt_split_attention_v1", "opt_sdp_attention", "opt_sdp_no_mem_attention",
    "disable_opt_split_attention", "medvram", "medvram_sdxl", "lowvram", "config", "disable_safe_unpickle",
    "no_hashing", "no_download_sd_model", "vae_path", "loglevel", "skip_prepare_environment", "skip_install",
    "reinstall_torch", "reinstall_xformers", "exit", "do_not_download_clip", "filenames_max_length",
    "unix_filenames_sanitization", "no_prompt_history", "test_server", "skip_python_version_check",
    "freeze_settings", "freeze_specific_settings", "nowebui", "skip_load_model_at_start", "ui_debug_mode",
    "timeout_keep_alive", "tls_keyfile", "tls_certfile", "subpath", "gradio_allowed_path", "api", "api_auth",
    "api_log", "api_server_stop", "cors_allow_origins", "cors_allow_origins_regex", "hypernetwork_dir",
    "enable_insecure_extension_access", "disable_all_extensions", "disable_extra_extensions", "update_all_extensions",
    "allow_code", "localizations_dir",
    "esrgan_models_path", "realesrgan_models_path", "dat_models_path", "swinir_models_path",
    "opt_channelslast", "bf16", "torch_compile", "torch_compile_regional",
    "share", "gradio_auth", "gradio_auth_path", "theme", "hide_ui_dir_config", "freeze_settings_in_sections",
    "use_textbox_seed", "ui_config_file",
}
NOOP = {
    "max_batch_count", "always_batch_cond_uncond", "unload_gfpgan", "deepdanbooru", "show_negative_prompt",
    "gradio_img2img_tool", "gradio_inpaint_tool", "gradio_queue", "ngrok_region", "add_stop_route",
    "enable_console_prompts", "bsrgan_models_path",
}
# dest → what the flag is waiting for (shown in docs/flags.md)
PENDING_REASON: dict[str, str] = {}
for _dest in ("gradio_debug", "no_gradio_queue", "disable_tls_verify"):
    PENDING_REASON[_dest] = "options of Gradio's launch(); the app is mounted on FastAPI and served by uvicorn"
for _dest in ("ngrok", "ngrok_options"):
    PENDING_REASON[_dest] = "ngrok tunnels are not provided (--share makes a gradio.live link)"
for _dest in ("scunet_models_path", "ldsr_models_path"):
    PENDING_REASON[_dest] = "ScuNET and LDSR upscalers are not provided"
for _dest in ("gfpgan_dir", "gfpgan_model", "gfpgan_models_path", "codeformer_models_path"):
    PENDING_REASON[_dest] = "face restoration is not provided"
for _dest in ("textual_inversion_templates_dir", "clip_models_path"):
    PENDING_REASON[_dest] = "training/interrogation are not provided"
for _dest in ("lowram", "disable_model_loading_ram_optimization", "use_ipex",
              "sub_quad_q_chunk_size", "sub_quad_kv_chunk_size", "sub_quad_chunk_threshold", "upcast_attn"):
    PENDING_REASON[_dest] = "performance work"


def flag_status(dest: str) -> str:
    if dest in ACTIVE:
        return "active"
    if dest in NOOP:
        return "no-op"
    return "pending"


def all_flags() -> list[tuple[str, str, str]]:
    """(option string, dest, status) for every flag, in declaration order."""
    rows = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        rows.append((max(action.option_strings, key=len), action.dest, flag_status(action.dest)))
    return rows


def warn_pending(cmd_opts: argparse.Namespace) -> list[str]:
    """Log one line naming the given flags that are accepted but not acted on yet; return their names."""
    used = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help" or flag_status(action.dest) != "pending":
            continue
        if getattr(cmd_opts, action.dest, action.default) != action.default:
            used.append(max(action.option_strings, key=len))
    if used:
        log.warning("Accepted but not active yet (see docs/flags.md): %s", ", ".join(used))
    return used


def flags_markdown() -> str:
    """docs/flags.md: every flag, its default and its status (a test keeps the file in sync)."""
    lines = [
        "# Command-line flags",
        "",
        "Every flag of A1111 v1.10 is accepted with its name and default, so existing launch scripts keep working.",
        "**active**: acts as in A1111 (or safer); **no-op**: does nothing in A1111 either; **pending**: accepted but",
        "not acted on yet — using it prints one warning line at start.",
        "Regenerate with `python -c \"from modules import cmd_args; print(cmd_args.flags_markdown(), end='')\" > docs/flags.md`.",
        "",
        "| flag | default | status | meaning |",
        "|---|---|---|---|",
    ]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = max(action.option_strings, key=len)
        default = action.default
        if isinstance(default, str) and os.path.isabs(default):
            for root, label in ((models_path, "models"), (data_path, "."), (script_path, ".")):
                if default == root or default.startswith(root + os.sep):
                    default = os.path.normpath(os.path.join(label, os.path.relpath(default, root)))
                    break
        help_text = "" if action.help in (None, argparse.SUPPRESS) else action.help
        status = flag_status(action.dest)
        if status == "pending" and action.dest in PENDING_REASON:
            status += f" ({PENDING_REASON[action.dest]})"
        lines.append(f"| `{name}` | `{default}` | {status} | {help_text} |")
    return "\n".join(lines) + "\n"
