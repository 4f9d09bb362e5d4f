"""Restarting the program (A1111's modules.restart): webui.sh / webui.bat start it again while tmp/restart exists."""

from __future__ import annotations

import logging
import os

from modules import paths_internal

log = logging.getLogger(__name__)


def is_restartable() -> bool:
    """True when started by webui.sh / webui.bat, which set SD_WEBUI_RESTART and loop on tmp/restart."""
    return bool(os.environ.get("SD_WEBUI_RESTART"))


def restart_file() -> str:
    return os.path.join(paths_internal.script_path, os.environ.get("SD_WEBUI_RESTART") or os.path.join("tmp", "restart"))


def restart_program() -> None:
    """Create tmp/restart and stop at once; the launcher script starts the program again."""
    from modules import script_callbacks

    path = restart_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8"):
        pass
    script_callbacks.app_reload_callback()
    stop_program()


def stop_program() -> None:
    """Let extensions clean up (on_script_unloaded), then end the process without waiting for the server."""
    from modules import script_callbacks

    script_callbacks.script_unloaded_callback()
    log.info("Stopping")
    logging.shutdown()
    os._exit(0)
