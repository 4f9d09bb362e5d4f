"""Importing extension files by path (A1111's modules.script_loading), and running their preload.py.

Standard library only: preload runs before the command line is parsed, long before torch or gradio load.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time
import types

log = logging.getLogger(__name__)


def load_module(path: str) -> types.ModuleType:
    """Execute a .py file as a fresh module named after its file (not registered in sys.modules, as A1111)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    if spec is None or spec.loader is None:
        raise ImportError(f"Cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preload_extensions(extension_paths: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Call `preload(parser)` of each extension's preload.py (they add command-line flags).

    A failing preload is reported with its name and traceback; the others still run. Returns the folders whose
    preload ran.
    """
    done = []
    for path in extension_paths:
        preload_script = os.path.join(path, "preload.py")
        if not os.path.isfile(preload_script):
            continue
        started = time.perf_counter()
        try:
            module = load_module(preload_script)
            if hasattr(module, "preload"):
                module.preload(parser)
            done.append(path)
        except Exception:
            log.exception("Error running preload() for %s", preload_script)
        log.debug("preload.py of %s: %.3f s", os.path.basename(path), time.perf_counter() - started)
    return done
