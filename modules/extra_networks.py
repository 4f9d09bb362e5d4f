"""Extra-network tags in prompts: `<lora:name:0.8>`, `<hypernet:name:1>`, ... (A1111's modules.extra_networks).

Every `<word:args>` tag is removed from the positive prompts of a batch and collected per network type; only the
first prompt's tags count for the batch (as A1111). Negative prompts are not parsed: A1111 encodes a tag there as
plain text and activates nothing, and so do we. Each registered `ExtraNetwork` is activated once per batch, before
the conditioning is computed, with the parameters its tags gave (or none); types nobody registered are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from typing import Any

from modules import errors

log = logging.getLogger(__name__)

re_extra_net = re.compile(r"<(\w+):([^>]+)>")

extra_network_registry: dict[str, ExtraNetwork] = {}
extra_network_aliases: dict[str, ExtraNetwork] = {}


class ExtraNetworkParams:
    """The `:`-separated arguments of one tag; `key=value` arguments are named, the others positional."""

    def __init__(self, items: list[Any] | None = None):
        self.items = items or []
        self.positional: list[Any] = []
        self.named: dict[str, str] = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    def __repr__(self) -> str:
        return f"ExtraNetworkParams({self.items!r})"


class ExtraNetwork:
    """One kind of extra network (the word before the first `:` of a tag)."""

    def __init__(self, name: str):
        self.name = name

    def activate(self, p: Any, params_list: list[ExtraNetworkParams]) -> None:
        """Make the networks in `params_list` active for the batch (an empty list: make none active)."""
        raise NotImplementedError

    def deactivate(self, p: Any) -> None:
        """Called once when the job ends; report problems on `p`."""
        raise NotImplementedError


def initialize() -> None:
    extra_network_registry.clear()
    extra_network_aliases.clear()


def register_extra_network(extra_network: ExtraNetwork) -> None:
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network: ExtraNetwork, alias: str) -> None:
    extra_network_aliases[alias] = extra_network


def register_default_extra_networks() -> None:
    """The built-in kinds: hypernet, lora and its alias lyco. Idempotent."""
    from modules import networks
    from modules.extra_networks_hypernet import ExtraNetworkHypernet

    if not isinstance(extra_network_registry.get("hypernet"), ExtraNetworkHypernet):
        register_extra_network(ExtraNetworkHypernet())
    networks.register_extra_network_lora()


def lookup_extra_networks(extra_network_data: dict[str, list[ExtraNetworkParams]]) -> dict[ExtraNetwork, list]:
    """Map tag words to registered networks (aliases included); unknown words are logged and skipped."""
    res: dict[ExtraNetwork, list[ExtraNetworkParams]] = {}
    for name, args in list(extra_network_data.items()):
        extra_network = extra_network_registry.get(name) or extra_network_aliases.get(name)
        if extra_network is None:
            log.info("Skipping unknown extra network: %s", name)
            continue
        res.setdefault(extra_network, []).extend(args)
    return res


def activate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """Activate the networks named in the batch's tags, in order, then every other registered kind with no
    arguments (so networks of the previous batch are turned off)."""
    if not extra_network_registry:
        register_default_extra_networks()
    activated = []
    for extra_network, args in lookup_extra_networks(extra_network_data).items():
        try:
            extra_network.activate(p, args)
            activated.append(extra_network)
        except errors.UserError:
            raise  # a bad tag argument: the job stops with the message
        except Exception as e:
            errors.display(
                e, f"activating extra network {extra_network.name} with arguments {args}", full_traceback=True
            )
    for name, extra_network in extra_network_registry.items():
        if extra_network in activated:
            continue
        try:
            extra_network.activate(p, [])
        except Exception as e:
            errors.display(e, f"activating extra network {name}", full_traceback=True)
    scripts = getattr(p, "scripts", None)
    if scripts is not None and hasattr(scripts, "after_extra_networks_activate"):
        scripts.after_extra_networks_activate(
            p,
            batch_number=p.iteration,
            prompts=p.prompts,
            seeds=p.seeds,
            subseeds=p.subseeds,
            extra_network_data=extra_network_data,
        )


def deactivate(p: Any, extra_network_data: dict[str, list[ExtraNetworkParams]]) -> None:
    """End of job: let each kind (mentioned ones first) report its problems on `p`."""
    data = lookup_extra_networks(extra_network_data)
    for extra_network in [*data, *(n for n in extra_network_registry.values() if n not in data)]:
        try:
            extra_network.deactivate(p)
        except Exception as e:
            errors.display(e, f"deactivating extra network {extra_network.name}", full_traceback=True)


def parse_prompt(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """Remove every `<word:args>` tag from the prompt; return the prompt and the tags' parameters by word."""
    res: dict[str, list[ExtraNetworkParams]] = defaultdict(list)

    def found(m: re.Match) -> str:
        res[m.group(1)].append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    return re.sub(re_extra_net, found, prompt), res


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict[str, list[ExtraNetworkParams]]]:
    """Strip the tags from every prompt; the networks of the batch are those of the first prompt (A1111)."""
    res = []
    extra_data = None
    for prompt in prompts:
        updated, parsed = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed
        res.append(updated)
    return res, extra_data if extra_data is not None else defaultdict(list)


def get_user_metadata(filename: str | None, lister: Any = None) -> dict[str, Any]:
    """The user's notes for a model file: `<stem>.json` beside it (description, activation text, preferred
    weight, negative text, sd version, notes); {} if there is none or it cannot be read."""
    if filename is None:
        return {}
    metadata_filename = os.path.splitext(filename)[0] + ".json"
    try:
        exists = lister.exists(metadata_filename) if lister else os.path.exists(metadata_filename)
        if not exists:
            return {}
        with open(metadata_filename, encoding="utf8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as e:
        log.warning("Could not read extra network user metadata from %s: %s", metadata_filename, e)
        return {}
    if not isinstance(metadata, dict):
        log.warning("Ignoring %s: it does not hold a JSON object", metadata_filename)
        return {}
    return metadata


def write_user_metadata(filename: str, metadata: dict[str, Any]) -> None:
    """Save the user's notes as `<stem>.json` beside the model file (atomically)."""
    from modules.fileio import atomic_write_text

    atomic_write_text(os.path.splitext(filename)[0] + ".json", json.dumps(metadata, indent=4, ensure_ascii=False))
