"""LoRA and LyCORIS networks (A1111's `networks` module of its Lora extension, as a core package).

- library: the files on disk, names and aliases (`available_networks`, `list_available_networks()`, `api_loras()`);
- ondisk: one file's metadata, hash and version; network: a parsed file; types: the layer types and their math;
- keys: file layer names → our model's modules; patcher: in-place weight patching with exact restore;
- extra_network: the `<lora:...>` / `<lyco:...>` prompt tags; cards: data for the UI's cards.

`load_networks(names, te_multipliers, unet_multipliers, dyn_dims)` makes exactly those networks active on the
current model (weights patched at once); an empty list turns every network off.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field

from modules import shared
from modules.networks import library
from modules.networks.library import (  # noqa: F401  (A1111 surface)
    api_loras,
    available_network_aliases,
    available_network_hash_lookup,
    available_networks,
    forbidden_network_aliases,
    infotext_pasted,
    list_available_networks,
)
from modules.networks.network import Network, NetworkLoadError, load_network
from modules.networks.ondisk import NetworkOnDisk, SdVersion, model_version
from modules.networks.patcher import is_patched, patcher_for, restore_model  # noqa: F401

log = logging.getLogger(__name__)

loaded_networks: list[Network] = []
networks_in_memory: OrderedDict[str, Network] = OrderedDict()  # by file name, at most lora_in_memory_limit
extra_network_lora = None


@dataclass
class LoadReport:
    """What load_networks could not do, for the job's comments and infotext."""

    not_found: list[str] = field(default_factory=list)
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (short reason, full message)


def _cached(entry: NetworkOnDisk, previous: list[Network]) -> Network | None:
    """The parsed network of this file, if it is still in memory and the file has not changed since."""
    try:
        mtime = os.path.getmtime(entry.filename)
    except OSError:
        return None
    for net in [*previous, *networks_in_memory.values()]:
        if net.network_on_disk.filename == entry.filename and net.mtime == mtime:
            net.network_on_disk = entry  # the listing may have been refreshed since
            return net
    return None


def _compatibility_problem(net: Network, model) -> tuple[str, str] | None:
    """(short, full) reason why `net` cannot work on `model` when that is certain: it was made for another model
    family, or none of its layers names a module of the model."""
    version = model_version(model)
    if net.base_version not in (SdVersion.Unknown, version):
        return (
            f"{net.base_version.name} network, {version.name} model",
            f"it was made for {net.base_version.name} models and the loaded model is {version.name}; it is not applied",
        )
    binding = net.bind(patcher_for(model).layer_map)
    if net.modules and len(binding.targets) == len(binding.failed):
        return (
            f"no layer fits the {version.name} model",
            f"none of its {len(net.modules)} layers names a module of the loaded {version.name} model with its "
            "shape; it is not applied",
        )
    cross = [key for key in binding.targets if key.endswith((".attn2.to_k", ".attn2.to_v"))]
    if cross and all(key in binding.failed for key in cross):
        return (
            f"text width differs from the {version.name} model",
            f"its cross-attention layers expect another text encoder width than the loaded {version.name} model's "
            "(a network for another model family); it is not applied",
        )
    return None


def load_networks(
    names: list[str],
    te_multipliers: list[float] | None = None,
    unet_multipliers: list[float] | None = None,
    dyn_dims: list[int | None] | None = None,
) -> LoadReport:
    """Make `names` (stems or aliases) the active networks of the current model, in this order."""
    report = LoadReport()
    model = shared.sd_model
    entries = library.find_networks(names) if names else []
    previous = list(loaded_networks)
    loaded_networks.clear()
    used: set[int] = set()
    for i, (name, entry) in enumerate(zip(names, entries, strict=True)):
        if entry is None:
            report.not_found.append(name)
            continue
        net = _cached(entry, previous)
        if net is None:
            try:
                net = load_network(name, entry)
            except NetworkLoadError as e:
                log.error("Network %s not loaded: %s", name, e)
                report.skipped[name] = (e.short, str(e))
                continue
        if id(net) in used:
            net = copy.copy(net)  # the same file twice in one prompt: each occurrence keeps its multipliers
        used.add(id(net))
        networks_in_memory.pop(entry.filename, None)
        networks_in_memory[entry.filename] = net
        net.name = name
        net.mentioned_name = name
        entry.read_hash()
        net.te_multiplier = float(te_multipliers[i]) if te_multipliers else 1.0
        net.unet_multiplier = float(unet_multipliers[i]) if unet_multipliers else 1.0
        net.dyn_dim = dyn_dims[i] if dyn_dims else None
        problem = _compatibility_problem(net, model)
        if problem is not None:
            log.warning("Network %s skipped: %s", name, problem[1])
            report.skipped[name] = problem
            continue
        loaded_networks.append(net)
    purge_networks_from_memory()
    if loaded_networks or is_patched(model):
        patcher_for(model).apply(loaded_networks)
    if report.not_found:
        message = f"Lora not found: {', '.join(report.not_found)}"
        log.log(logging.WARNING if shared.opts.lora_not_found_warning_console else logging.INFO, message)
    return report


def purge_networks_from_memory() -> None:
    """Keep at most lora_in_memory_limit parsed networks besides the active ones."""
    active = {id(net) for net in loaded_networks}
    limit = max(0, int(shared.opts.lora_in_memory_limit or 0))
    idle = [key for key, net in networks_in_memory.items() if id(net) not in active]
    for key in idle[: max(0, len(idle) - limit)]:
        networks_in_memory.pop(key, None)


def error_counts(model) -> dict[str, int]:
    """Layers of the active networks that could not be applied to `model`, by network name (non-zero only)."""
    layer_map = patcher_for(model).layer_map
    counts = {net.name: net.error_count(layer_map) for net in loaded_networks}
    return {name: count for name, count in counts.items() if count}


def register_extra_network_lora() -> None:
    """Register the `lora` prompt tag (and its alias `lyco`) and the paste hook. Idempotent."""
    global extra_network_lora
    from modules import extra_networks, script_callbacks
    from modules.networks.extra_network import ExtraNetworkLora

    if extra_network_lora is None:
        extra_network_lora = ExtraNetworkLora()
    extra_networks.register_extra_network(extra_network_lora)
    extra_networks.register_extra_network_alias(extra_network_lora, "lyco")
    script_callbacks.remove_callbacks_for_function(infotext_pasted)
    script_callbacks.on_infotext_pasted(infotext_pasted)
