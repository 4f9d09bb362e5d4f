"""Paths (A1111's modules.paths surface); importing this also makes `k_diffusion` importable.

A1111 extensions do `import k_diffusion.sampling`; A1111 put k-diffusion's repository on sys.path here. Our own
implementation lives in modules/k_diffusion, and is registered under the top-level name `k_diffusion` (each
submodule too, so there is exactly one module object per file).
"""

from __future__ import annotations

import importlib
import sys

from modules.paths_internal import (  # noqa: F401
    config_states_dir,
    configs_path,
    data_path,
    default_output_dir,
    extensions_builtin_dir,
    extensions_dir,
    models_path,
    script_path,
    sd_configs_path,
    sd_default_config,
    sd_model_file,
)

if script_path not in sys.path:
    sys.path.insert(0, script_path)

paths: dict[str, str] = {}


def _register_k_diffusion() -> None:
    sys.modules.setdefault("k_diffusion", importlib.import_module("modules.k_diffusion"))
    for name in ("sampling", "external", "utils"):
        sys.modules.setdefault(f"k_diffusion.{name}", importlib.import_module(f"modules.k_diffusion.{name}"))


_register_k_diffusion()
