"""What the Lora page of the extra-networks UI shows: one card per file, filtered by the loaded model's version.

Card data comes from the file (metadata `ss_*`, alias, hash), from the user's side-car `<stem>.json` (description,
activation text, preferred weight, negative text, sd version, notes) and `<stem>.txt`/`<stem>.description.txt`,
and from preview images beside the file — as A1111 reads them.
"""

from __future__ import annotations

import os
from typing import Any

from modules import extra_networks, shared
from modules.networks import library
from modules.networks.ondisk import NetworkOnDisk, SdVersion, model_version

PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")


def find_preview(path_without_extension: str) -> str | None:
    extensions = [*PREVIEW_EXTENSIONS, shared.opts.samples_format]
    for candidate in [f"{path_without_extension}.{e}" for e in extensions] + [
        f"{path_without_extension}.preview.{e}" for e in extensions
    ]:
        if os.path.isfile(candidate):
            return candidate
    return None


def find_description(path_without_extension: str) -> str | None:
    for candidate in (f"{path_without_extension}.txt", f"{path_without_extension}.description.txt"):
        try:
            with open(candidate, encoding="utf8", errors="replace") as file:
                return file.read()
        except OSError:
            continue
    return None


def card_version(entry: NetworkOnDisk, user_metadata: dict[str, Any]) -> SdVersion:
    """The version the user set in the side-car, else the one the file's metadata gives."""
    chosen = user_metadata.get("sd version")
    return SdVersion[chosen] if chosen in SdVersion.__members__ else entry.sd_version


def is_shown(version: SdVersion, model: Any) -> bool:
    """A1111's filter: cards for other versions are hidden unless lora_show_all; unknown ones only for the model
    versions not listed in lora_hide_unknown_for_versions."""
    if shared.opts.lora_show_all or model is None:
        return True
    current = model_version(model)
    if version == SdVersion.Unknown:
        return current.name not in shared.opts.lora_hide_unknown_for_versions
    return version == current


def prompt_text(entry: NetworkOnDisk, user_metadata: dict[str, Any]) -> str:
    """What clicking the card adds to the prompt: the tag with the preferred weight (or the default multiplier)
    and the activation text."""
    weight = user_metadata.get("preferred weight") or shared.opts.extra_networks_default_multiplier
    text = f"<lora:{entry.get_alias()}:{weight}>"
    activation = user_metadata.get("activation text")
    return f"{text} {activation}" if activation else text


def lora_card(name: str, model: Any = None, enable_filter: bool = True) -> dict[str, Any] | None:
    """The card of the network called `name`, or None when it is unknown or filtered out for `model`."""
    entry = library.available_networks.get(name)
    if entry is None:
        return None
    base = os.path.splitext(entry.filename)[0]
    user_metadata = extra_networks.get_user_metadata(entry.filename)
    version = card_version(entry, user_metadata)
    if enable_filter and not is_shown(version, model):
        return None
    description = user_metadata.get("description")
    return {
        "name": name,
        "alias": entry.get_alias(),
        "filename": entry.filename,
        "shorthash": entry.shorthash,
        "preview": find_preview(base),
        "description": description if description is not None else find_description(base),
        "search_terms": [t for t in (os.path.basename(entry.filename), entry.hash) if t],
        "metadata": entry.metadata,
        "user_metadata": user_metadata,
        "sd_version": version.name,
        "prompt": prompt_text(entry, user_metadata),
        "negative_prompt": user_metadata.get("negative text", ""),
        "activation_text": user_metadata.get("activation text", ""),
        "preferred_weight": user_metadata.get("preferred weight", 0.0),
        "notes": user_metadata.get("notes", ""),
    }


def lora_cards(model: Any = None, enable_filter: bool = True) -> list[dict[str, Any]]:
    cards = (lora_card(name, model, enable_filter) for name in library.available_networks)
    return [card for card in cards if card is not None]
