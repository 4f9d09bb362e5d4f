"""Networks applied by changing the model's weights in place, with a backup that restores them bit-exactly.

When the wanted networks (or a multiplier) change, every module whose set of contributions changed is first
restored from its backup (a CPU copy taken the first time it was touched), then each network's change, computed in
fp32 on the weight's device, is added in prompt order; the result is written back in the weight's dtype. A module
no network touches any more is restored and its backup dropped. Sampling then runs on plain weights: no cost per
step. Weights are patched on whatever device they are (offload modes move modules between devices; a patched
weight moves like any other).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from modules import devices
from modules.networks.keys import LayerMap, Target
from modules.networks.network import Network
from modules.networks.types import ShapeMismatch

log = logging.getLogger(__name__)

Signature = tuple[tuple[Any, float, int | None], ...]


@dataclass
class ModulePatch:
    backup_weight: torch.Tensor
    backup_bias: torch.Tensor | None
    signature: Signature = ()


class ModelPatcher:
    """The patch state of one loaded model."""

    def __init__(self, model: Any):
        self.layer_map = LayerMap(model)
        self.patches: dict[str, ModulePatch] = {}

    def apply(self, nets: list[Network]) -> None:
        """Make the model's weights equal to the original weights plus `nets` (with their multipliers)."""
        # activation runs inside the job's autocast, which would compute the changes in fp16
        with torch.no_grad(), devices.without_autocast():
            self._apply(nets)

    def _apply(self, nets: list[Network]) -> None:
        t0 = time.perf_counter()
        wanted: dict[str, list[tuple[Network, Any]]] = {}
        for net in nets:
            binding = net.bind(self.layer_map)
            for key, (target, module, _layer) in binding.targets.items():
                if net.multiplier_for(target) != 0 and key not in binding.failed:
                    wanted.setdefault(key, []).append((net, module))
        changed = 0
        for key in [*self.patches, *(k for k in wanted if k not in self.patches)]:
            contributions = wanted.get(key, [])
            target = self.layer_map.targets[key]
            signature = tuple((net.identity, net.multiplier_for(target), net.dyn_dim) for net, _ in contributions)
            patch = self.patches.get(key)
            if patch is not None and patch.signature == signature:
                continue
            changed += 1
            if patch is not None:
                _restore(target.module, patch)
            if not contributions:
                del self.patches[key]
                continue
            if patch is None:
                patch = _backup(target.module)
                self.patches[key] = patch
            self._patch(target, patch, contributions)
            patch.signature = signature
        if changed:
            log.info(
                "Networks applied to %d modules in %.2fs (%d modules patched)",
                changed,
                time.perf_counter() - t0,
                len(self.patches),
            )

    def _patch(self, target: Target, patch: ModulePatch, contributions: list[tuple[Network, Any]]) -> None:
        module = target.module
        weight = module.weight
        w = patch.backup_weight.to(weight.device, torch.float32)
        b = None if patch.backup_bias is None else patch.backup_bias.to(weight.device, torch.float32)
        for net, layer in contributions:
            try:
                dw, db = layer.delta(w, net.multiplier_for(target), net.dyn_dim)
                if db is not None and db.shape != (weight.shape[0],):
                    raise ShapeMismatch(
                        f"a bias change of shape {tuple(db.shape)} does not fit {weight.shape[0]} outputs"
                    )
            except (ShapeMismatch, RuntimeError) as e:
                net.bind(self.layer_map).failed.add(target.key)
                log.warning("Network %s: cannot apply to %s: %s", net.name, target.key, e)
                continue
            w = w + dw
            if db is not None:
                b = db if b is None else b + db
        weight.copy_(w)
        if b is not None:
            if module.bias is None:
                module.bias = torch.nn.Parameter(b.to(weight.dtype), requires_grad=False)
            else:
                module.bias.copy_(b)

    @torch.no_grad()
    def restore_all(self) -> None:
        """Put every patched module back to its original weights."""
        for key, patch in self.patches.items():
            _restore(self.layer_map.targets[key].module, patch)
        self.patches.clear()


def _backup(module: torch.nn.Module) -> ModulePatch:
    bias = module.bias if isinstance(getattr(module, "bias", None), torch.Tensor) else None
    return ModulePatch(
        backup_weight=module.weight.detach().to("cpu", copy=True),
        backup_bias=None if bias is None else bias.detach().to("cpu", copy=True),
    )


def _restore(module: torch.nn.Module, patch: ModulePatch) -> None:
    module.weight.copy_(patch.backup_weight)
    if patch.backup_bias is not None:
        module.bias.copy_(patch.backup_bias)
    elif module.bias is not None:
        module.bias = None  # a network added the bias; the module had none


_patchers: weakref.WeakKeyDictionary[Any, ModelPatcher] = weakref.WeakKeyDictionary()


def patcher_for(model: Any) -> ModelPatcher:
    patcher = _patchers.get(model)
    if patcher is None:
        patcher = ModelPatcher(model)
        _patchers[model] = patcher
    return patcher


def is_patched(model: Any) -> bool:
    patcher = _patchers.get(model)
    return patcher is not None and bool(patcher.patches)


def restore_model(model: Any) -> None:
    """Undo every network on `model` (before saving or merging its weights)."""
    patcher = _patchers.get(model)
    if patcher is not None:
        patcher.restore_all()
