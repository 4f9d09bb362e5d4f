"""UI translations (A1111's modules.localization): localizations/*.json of --localizations-dir and of every
active extension, merged by file name; the chosen one goes into the page as `window.localization`."""

from __future__ import annotations

import json
import logging
import os

log = logging.getLogger(__name__)

localizations: dict[str, list[str]] = {}


def list_localizations(dirname: str | None) -> None:
    """Find every localization: name (file stem) → the files that provide it (extensions' files add to them)."""
    from modules import extensions

    localizations.clear()
    sources = []
    if dirname and os.path.isdir(dirname):
        sources += [os.path.join(dirname, f) for f in sorted(os.listdir(dirname))]
    for ext in extensions.active():
        sources += [f.path for f in ext.list_files("localizations", ".json")]
    for path in sources:
        name, suffix = os.path.splitext(os.path.basename(path))
        if suffix.lower() == ".json" and os.path.isfile(path):
            localizations.setdefault(name, []).append(path)


def localization_data(name: str | None) -> dict[str, str]:
    """The merged translation map for `name` (later files win); unreadable files are reported and skipped."""
    data: dict[str, str] = {}
    for path in localizations.get(name or "", []):
        try:
            with open(path, encoding="utf8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            log.error("Error loading localization %s: %s", path, e)
            continue
        if isinstance(loaded, dict):
            data.update({str(k): str(v) for k, v in loaded.items()})
    return data


def localization_js(name: str | None) -> str:
    """`window.localization = {...}` for the page head (an empty map when none is chosen)."""
    text = json.dumps(localization_data(name), ensure_ascii=False)
    return "window.localization = " + text.replace("</", "<\\/") + ";"
