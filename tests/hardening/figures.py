"""Sizes of the hardening runs (CI or full) and the figures they measure."""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger(__name__)

FULL = os.environ.get("SD_WEBUI_HARDENING_FULL", "") == "1"
FIGURES_FILE = os.environ.get("SD_WEBUI_HARDENING_FIGURES", "")


def scaled(ci: int, full: int) -> int:
    """`full` with SD_WEBUI_HARDENING_FULL=1, else the CI size."""
    return full if FULL else ci


def record(section: str, **figures: object) -> None:
    """Log the figures of one test; with SD_WEBUI_HARDENING_FIGURES set, also append them to that file."""
    entry = {"section": section, "full": FULL, "time": time.strftime("%Y-%m-%d %H:%M:%S"), **figures}
    log.info("figures %s", json.dumps(entry))
    if FIGURES_FILE:
        with open(FIGURES_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
