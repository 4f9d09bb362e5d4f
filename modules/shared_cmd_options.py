"""Parse the command line once (A1111's modules.shared_cmd_options)."""

from __future__ import annotations

import os
import sys

from modules import cmd_args

parser = cmd_args.parser

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
