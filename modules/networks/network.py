"""A network read from its file: layers grouped by name, each with its type, ready to be applied to a model.

Reading refuses damaged files with one message (a truncated or malformed file, tensors with NaN/inf), tells the
base model the network was made for (from its metadata and key names), and keeps the layers whose tensors make no
known type, so that nothing in the file is silently dropped.
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from modules import model_files, shared
from modules.errors import NotFoundError, UserError
from modules.networks import types
from modules.networks.keys import LayerMap, Target
from modules.networks.ondisk import NetworkOnDisk, SdVersion

log = logging.getLogger(__name__)

BUNDLE_PREFIX = "bundle_emb."


class NetworkLoadError(UserError):
    """A network file that cannot be used (damaged, truncated, not finite, gone); `short` says which for the
    infotext."""

    def __init__(self, message: str, short: str = "file damaged"):
        super().__init__(message)
        self.short = short


def base_version(metadata: dict[str, Any], keys: list[str]) -> SdVersion:
    """The model family a network was trained for when the file says so clearly, else Unknown."""
    base = str(metadata.get("ss_base_model_version", ""))
    arch = str(metadata.get("modelspec.architecture", ""))
    if base.startswith("sdxl_") or arch.startswith("stable-diffusion-xl"):
        return SdVersion.SDXL
    # lora_te1_ alone proves nothing: some SD1 files use it too (A1111 accepts them)
    if any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in keys):
        return SdVersion.SDXL
    if str(metadata.get("ss_v2", "")) == "True" or arch.startswith("stable-diffusion-v2"):
        return SdVersion.SD2
    if base.startswith("sd_v1") or str(metadata.get("ss_v2", "")) == "False" or arch.startswith("stable-diffusion-v1"):
        return SdVersion.SD1
    return SdVersion.Unknown


@dataclass
class Binding:
    """A network's layers matched to one model's modules."""

    targets: dict[str, tuple[Target, types.NetworkModule, str]] = field(default_factory=dict)  # + file layer name
    unmatched: list[str] = field(default_factory=list)  # file layer names that name no module of the model
    failed: set[str] = field(default_factory=set)  # target keys whose change did not fit


class Network:
    """A1111's Network: the parsed file plus how it is used in the current prompt (multipliers, dyn)."""

    def __init__(self, name: str, network_on_disk: NetworkOnDisk):
        self.name = name
        self.network_on_disk = network_on_disk
        self.te_multiplier = 1.0
        self.unet_multiplier = 1.0
        self.dyn_dim: int | None = None
        self.mtime: float | None = None
        self.mentioned_name: str | None = None
        self.modules: dict[str, types.NetworkModule] = {}  # file layer name → layer
        self.unsupported: dict[str, list[str]] = {}  # file layer name → its tensors, of no known type
        self.bundle_embeddings: dict[str, dict[str, torch.Tensor]] = {}
        self.base_version = SdVersion.Unknown
        self._bindings: weakref.WeakKeyDictionary[LayerMap, Binding] = weakref.WeakKeyDictionary()

    @property
    def identity(self) -> tuple[str, float | None]:
        """What the weights of a patched module depend on besides the multipliers: the file and its version."""
        return self.network_on_disk.filename, self.mtime

    def bind(self, layer_map: LayerMap) -> Binding:
        """The layers matched to `layer_map`'s modules (computed once per model)."""
        binding = self._bindings.get(layer_map)
        if binding is None:
            binding = Binding()
            for layer, module in self.modules.items():
                target = layer_map.find(layer)
                if target is None:
                    binding.unmatched.append(layer)
                elif target.key in binding.targets:
                    log.warning(
                        "Network %s: layers %s and %s both name %s; using the first",
                        self.name,
                        binding.targets[target.key][2],
                        layer,
                        target.key,
                    )
                    binding.unmatched.append(layer)
                else:
                    binding.targets[target.key] = (target, module, layer)
                    if not module.fits(target.module.weight.shape):
                        binding.failed.add(target.key)
            if binding.failed:
                key = sorted(binding.failed)[0]
                log.warning(
                    "Network %s: %d layers do not fit the shape of their module (e.g. %s for %s, shaped %s)",
                    self.name,
                    len(binding.failed),
                    binding.targets[key][2],
                    key,
                    tuple(binding.targets[key][0].module.weight.shape),
                )
            if binding.unmatched:
                log.warning(
                    "Network %s: %d of %d layers match no module of the model (e.g. %s)",
                    self.name,
                    len(binding.unmatched),
                    len(self.modules),
                    ", ".join(binding.unmatched[:3]),
                )
            self._bindings[layer_map] = binding
        return binding

    def error_count(self, layer_map: LayerMap) -> int:
        """Layers that could not be applied: unknown type, no matching module, or a change that did not fit."""
        binding = self.bind(layer_map)
        return len(self.unsupported) + len(binding.unmatched) + len(binding.failed)

    def multiplier_for(self, target: Target) -> float:
        return self.te_multiplier if target.is_text_encoder else self.unet_multiplier


def _check_finite(filename: str, sd: dict[str, torch.Tensor]) -> None:
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NetworkLoadError(
            f"{filename}: {len(bad)} tensors contain NaN or infinite values (e.g. {bad[0]}); the file is damaged — "
            "download it again"
        )


def load_network(name: str, network_on_disk: NetworkOnDisk) -> Network:
    """Read and check the file, group its tensors by layer, and give each layer its type."""
    filename = network_on_disk.filename
    net = Network(name, network_on_disk)
    try:
        net.mtime = os.path.getmtime(filename)
        sd = model_files.read_state_dict(filename, allow_unsafe=bool(shared.cmd_opts.disable_safe_unpickle))
    except NotFoundError as e:
        raise NetworkLoadError(str(e), "file missing") from e
    except UserError as e:
        raise NetworkLoadError(str(e)) from e
    except OSError as e:
        raise NetworkLoadError(f"{filename}: cannot be read ({e.strerror or e})", "file unreadable") from e
    _check_finite(filename, sd)
    net.base_version = base_version(network_on_disk.metadata, list(sd))

    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, weight in sd.items():
        if key.startswith(BUNDLE_PREFIX):
            emb_name, _, rest = key[len(BUNDLE_PREFIX) :].partition(".")
            net.bundle_embeddings.setdefault(emb_name, {})[rest] = weight
            continue
        split = types.split_key(key)
        if split is None:
            net.unsupported[key] = [key]
            continue
        layer, part = split
        grouped.setdefault(layer, {})[part] = weight

    for layer, weights in grouped.items():
        module = types.create_module(weights)
        if module is None:
            net.unsupported[layer] = sorted(weights)
            continue
        unused = module.unused_parts()
        if unused:
            net.unsupported[layer] = unused
        net.modules[layer] = module

    if net.unsupported:
        examples = "; ".join(f"{layer} ({', '.join(parts)})" for layer, parts in list(net.unsupported.items())[:3])
        log.warning(
            "Network %s: %d layers hold tensors of no supported network type: %s", name, len(net.unsupported), examples
        )
    if net.bundle_embeddings:
        log.info(
            "Network %s bundles the embeddings %s (they are not loaded by the network patcher)",
            name,
            ", ".join(net.bundle_embeddings),
        )
    return net
