"""The networks on disk: models/Lora (--lora-dir) and models/LyCORIS (--lyco-dir-backcompat), recursively.

Names are file stems; a file may also be called by its metadata alias (`ss_output_name`) unless that alias is
forbidden: "none", or an alias (or stem) that two files share — those are found by stem only (A1111's rules).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from modules import shared
from modules.networks.ondisk import NetworkOnDisk

log = logging.getLogger(__name__)

NETWORK_EXTENSIONS = (".pt", ".ckpt", ".safetensors")

available_networks: dict[str, NetworkOnDisk] = {}
available_network_aliases: dict[str, NetworkOnDisk] = {}
available_network_hash_lookup: dict[str, NetworkOnDisk] = {}
forbidden_network_aliases: dict[str, int] = {}

_re_digits = re.compile(r"(\d+)")


def natural_sort_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in _re_digits.split(text)]


def network_dirs() -> list[str]:
    return [shared.cmd_opts.lora_dir, shared.cmd_opts.lyco_dir_backcompat]


def walk_files(path: str, extensions: tuple[str, ...]) -> list[str]:
    """Files under `path` with one of `extensions`, in natural order; hidden folders unless list_hidden_files."""
    if not path or not os.path.isdir(path):
        return []
    found = []
    for root, _, files in sorted(os.walk(path, followlinks=True), key=lambda item: natural_sort_key(item[0])):
        hidden = any(part.startswith(".") for part in os.path.relpath(root, path).split(os.sep) if part != ".")
        if hidden and not shared.opts.list_hidden_files:
            continue
        for filename in sorted(files, key=natural_sort_key):
            if os.path.splitext(filename)[1].lower() in extensions:
                found.append(os.path.join(root, filename))
    return found


def list_available_networks() -> None:
    """Rescan the network folders (the refresh button and /sdapi/v1/refresh-loras)."""
    os.makedirs(shared.cmd_opts.lora_dir, exist_ok=True)
    entries = []
    for folder in network_dirs():
        for filename in walk_files(folder, NETWORK_EXTENSIONS):
            name = os.path.splitext(os.path.basename(filename))[0]
            try:
                entries.append(NetworkOnDisk(name, filename))
            except OSError as e:
                log.error("Failed to read network %s from %s: %s", name, filename, e)
    # the files are read first and the tables swapped at once, so a lookup meanwhile sees the old list
    available_networks.clear()
    available_network_aliases.clear()
    forbidden_network_aliases.clear()
    available_network_hash_lookup.clear()
    forbidden_network_aliases.update({"none": 1})
    for entry in entries:
        available_networks[entry.name] = entry
        if entry.alias in available_network_aliases:
            forbidden_network_aliases[entry.alias.lower()] = 1
        available_network_aliases[entry.name] = entry
        available_network_aliases[entry.alias] = entry
        if entry.shorthash:
            available_network_hash_lookup[entry.shorthash] = entry
    log.info("Found %d networks (LoRA/LyCORIS)", len(available_networks))


def lookup(name: str) -> NetworkOnDisk | None:
    """The file a prompt's name means: by stem when the name is a forbidden alias, else by stem or alias."""
    if name.lower() in forbidden_network_aliases:
        return available_networks.get(name)
    return available_network_aliases.get(name)


def find_networks(names: list[str]) -> list[NetworkOnDisk | None]:
    """Look each name up; if any is missing, rescan the folders once and look again."""
    found = [lookup(name) for name in names]
    if any(entry is None for entry in found):
        list_available_networks()
        found = [lookup(name) for name in names]
    return found


def api_loras() -> list[dict[str, Any]]:
    """The body of GET /sdapi/v1/loras: [{name, alias, path, metadata}]."""
    return [entry.to_api() for entry in available_networks.values()]


re_lora = re.compile("<lora:([^:]+):")


def infotext_pasted(infotext: str, params: dict[str, Any]) -> None:
    """on_infotext_pasted: rename `<lora:alias:` in the pasted prompt to the local name of the file with the
    hash that `Lora hashes` gives for that alias (so a prompt written elsewhere finds the same file here)."""
    text = params.get("Lora hashes")
    if not text or not isinstance(text, str):
        return
    pairs = [x.strip().split(":", 1) for x in text.split(",")]
    by_alias = {x[0].strip().replace(",", ""): x[1].strip() for x in pairs if len(x) == 2}

    def replacement(m: re.Match) -> str:
        shorthash = by_alias.get(m.group(1))
        entry = available_network_hash_lookup.get(shorthash) if shorthash else None
        return m.group(0) if entry is None else f"<lora:{entry.get_alias()}:"

    if isinstance(params.get("Prompt"), str):
        params["Prompt"] = re.sub(re_lora, replacement, params["Prompt"])
