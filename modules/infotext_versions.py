"""Infotext back-compatibility: settings that older web UI versions implied, keyed on the ``Version`` field."""

from __future__ import annotations

import re
from typing import Any

from packaging.version import InvalidVersion, Version

v160 = Version("1.6.0")
v170_tsnr = Version("v1.7.0-225")
v180 = Version("1.8.0")
v180_hr_styles = Version("1.8.0-139")

# "v1.7.0-225-g1234567" -> "v1.7.0-225": git describe's hash part is not a version.
_re_first_two_parts = re.compile(r"([^-]+-[^-]+)-.*")


def parse_version(text: str | None) -> Version | None:
    """A ``Version`` infotext value as a comparable version, or None if absent or unparsable."""
    if text is None:
        return None
    m = _re_first_two_parts.match(text)
    if m:
        text = m.group(1)
    try:
        return Version(text)
    except InvalidVersion:
        return None


def backcompat(params: dict[str, Any], *, auto_backcompat: bool = True) -> None:
    """Add the compatibility settings an infotext from an older version implies (in place)."""
    if not auto_backcompat:
        return

    ver = parse_version(params.get("Version"))
    if ver is None:
        return

    if ver < v160 and "[" in params.get("Prompt", ""):
        params["Old prompt editing timelines"] = True

    if ver < v160 and params.get("Sampler", "") in ("DDIM", "PLMS"):
        params["Pad conds v0"] = True

    if ver < v170_tsnr:
        params["Downcast alphas_cumprod"] = True

    if ver < v180 and params.get("Refiner"):
        params["Refiner switch by sampling steps"] = True
