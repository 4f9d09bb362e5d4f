"""Parse the command line once (A1111's modules.shared_cmd_options), after extensions' preload.py add flags."""

from __future__ import annotations

import argparse
import os
import sys

from modules import cmd_args, extensions, script_loading

parser = cmd_args.parser


def _preload_extensions() -> None:
    """Enabled extensions' preload.py may add flags; which ones are enabled is read from config.json directly."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--ui-settings-file", default=parser.get_default("ui_settings_file"))
    pre.add_argument("--disable-all-extensions", action="store_true")
    pre.add_argument("--disable-extra-extensions", action="store_true")
    known, _ = pre.parse_known_args(sys.argv[1:])
    paths = extensions.enabled_extension_paths(known.ui_settings_file, known.disable_all_extensions,
                                               known.disable_extra_extensions)
    script_loading.preload_extensions(paths, parser)


_preload_extensions()

# A1111 honours IGNORE_CMD_ARGS_ERRORS (its tests import the app under pytest's own argv).
if os.environ.get("IGNORE_CMD_ARGS_ERRORS"):
    cmd_opts, _unknown = parser.parse_known_args(sys.argv[1:])
else:
    cmd_opts = parser.parse_args(sys.argv[1:])

if cmd_opts.test_server:
    cmd_opts.api = True
    cmd_opts.skip_torch_cuda_test = True
    cmd_opts.disable_nan_check = True

cmd_opts.webui_is_non_local = bool(cmd_opts.share or cmd_opts.listen or cmd_opts.ngrok or cmd_opts.server_name)
cmd_opts.disable_extension_access = cmd_opts.webui_is_non_local and not cmd_opts.enable_insecure_extension_access
