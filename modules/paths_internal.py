"""Where things are on disk, computed before anything heavy is imported.

`--data-dir` (default: env SD_WEBUI_DATA_DIR, else the repository) and `--models-dir` are pre-parsed here (as A1111 does) because every other module needs these
paths at import time. COMMANDLINE_ARGS from the environment is appended to the command line.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

script_path = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
modules_path = os.path.join(script_path, "modules")

# COMMANDLINE_ARGS (set by webui-user.sh/.bat) is part of the command line, as in A1111.
_extra = shlex.split(os.environ.get("COMMANDLINE_ARGS", ""))
if _extra and not os.environ.get("SD_WEBUI_COMMANDLINE_ARGS_APPLIED"):
    sys.argv += _extra
    os.environ["SD_WEBUI_COMMANDLINE_ARGS_APPLIED"] = "1"

_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--data-dir", type=str, default=os.environ.get("SD_WEBUI_DATA_DIR", script_path))
_pre.add_argument("--models-dir", type=str, default=None)
_known, _ = _pre.parse_known_args(sys.argv[1:])

data_path = os.path.abspath(_known.data_dir)
models_path = os.path.abspath(_known.models_dir) if _known.models_dir else os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
config_states_dir = os.path.join(data_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")
configs_path = os.path.join(script_path, "configs")
sd_configs_path = configs_path
sd_default_config = os.path.join(configs_path, "v1-inference.yaml")
sd_model_file = os.path.join(script_path, "model.ckpt")
default_sd_model_file = sd_model_file


def data_relative(path: str) -> str:
    """Settings hold folders relative to the data dir (outputs/..., log/images); absolute ones stay as they are."""
    return os.path.join(data_path, path)
