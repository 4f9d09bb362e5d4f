"""Which module of the loaded model a layer name in a network file refers to.

Files name layers in many ways: kohya (`lora_unet_down_blocks_0_..._to_q`, SDXL `lora_unet_input_blocks_4_1_...`,
`lora_te_` / `lora_te1_` / `lora_te2_`), diffusers and PEFT (`unet.down_blocks.0....to_q`,
`text_encoder_2.text_model....`), and A1111/LDM/SGM module paths (`diffusion_model_input_blocks_...`,
`0_transformer_text_model_...`, `1_model_transformer_resblocks_...`). Each name is reduced to a part of the model
(UNet or text encoder i) and the rest with dots as underscores, then looked up among the names every module of our
diffusers UNet / transformers CLIP encoders is known by: its own path, its LDM/SGM path (for the UNet) and its
OpenCLIP path (for the text encoders).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from modules import ldm_layout
from modules.model_builder import text_model
from modules.model_detection import UNET_PREFIX

log = logging.getLogger(__name__)

PATCHABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)

# (prefix of the name with dots as underscores, part); longest-first where one prefix starts another.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lora_unet_", "unet"),
    ("lora_te1_", "te0"),
    ("lora_te2_", "te1"),
    ("lora_te_", "te0"),
    ("unet_", "unet"),
    ("text_encoder_2_", "te1"),
    ("text_encoder_", "te0"),
    ("model_diffusion_model_", "unet"),
    ("diffusion_model_", "unet"),
    ("cond_stage_model_", "te0"),
    ("conditioner_embedders_0_", "te0"),
    ("conditioner_embedders_1_", "te1"),
    ("0_", "te0"),
    ("1_", "te1"),
)
_WRAPPERS = ("base_model_model_",)  # PEFT's model wrapper

# transformers CLIP module paths → OpenCLIP's, for files that name text encoder layers the OpenCLIP way.
_OPENCLIP_PARTS = (
    ("self_attn.out_proj", "attn.out_proj"),
    ("self_attn.q_proj", "attn.q_proj"),
    ("self_attn.k_proj", "attn.k_proj"),
    ("self_attn.v_proj", "attn.v_proj"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
)


@dataclass(frozen=True)
class Target:
    """A patchable module: `key` is unique in the model ("unet:<path>" or "te<i>:<path>")."""

    key: str
    part: str  # "unet", "te0", "te1"
    name: str
    module: torch.nn.Module

    @property
    def is_text_encoder(self) -> bool:
        return self.part.startswith("te")


def _underscored(name: str) -> str:
    return name.replace(".", "_")


def _openclip_name(hf_name: str) -> str | None:
    """`text_model.encoder.layers.3.mlp.fc1` → `transformer.resblocks.3.mlp.c_fc` (None if it has no such name)."""
    if hf_name == "text_model.final_layer_norm":
        return "ln_final"
    prefix = "text_model.encoder.layers."
    if not hf_name.startswith(prefix):
        return None
    index, _, rest = hf_name[len(prefix) :].partition(".")
    for ours, theirs in _OPENCLIP_PARTS:
        if rest == ours:
            return f"transformer.resblocks.{index}.{theirs}"
    return None


def _ldm_module_names(unet: torch.nn.Module, config: dict[str, Any]) -> dict[str, str]:
    """diffusers UNet module path → LDM/SGM module path (`input_blocks.1.1.proj_in`)."""
    # The layout converter only renames keys; feeding it the keys as values gives the name pairs.
    keys = {k: k for k in unet.state_dict()}
    try:
        ldm = ldm_layout.unet_to_ldm(keys, config)
    except (KeyError, ValueError) as e:
        log.warning("UNet layer names in LDM/SGM form are not available for this model (%s)", e)
        return {}
    out = {}
    for ldm_key, key in ldm.items():
        if key.endswith(".weight") and ldm_key.endswith(".weight"):
            out[key[: -len(".weight")]] = ldm_key[len(UNET_PREFIX) : -len(".weight")]
    return out


class LayerMap:
    """Every patchable module of a model under every name a network file may use for it."""

    def __init__(self, model: Any):
        self.targets: dict[str, Target] = {}
        self.names: dict[str, dict[str, Target]] = {}
        self.part_names = ["unet"]
        unet = model.unet
        ldm = _ldm_module_names(unet, model.spec.unet_config)
        table = self.names.setdefault("unet", {})
        for name, module in unet.named_modules():
            if not isinstance(module, PATCHABLE):
                continue
            target = self._add(Target(f"unet:{name}", "unet", name, module))
            self._alias(table, name, target)
            if name in ldm:
                self._alias(table, ldm[name], target)
        for index, encoder in enumerate(model.cond_stage_model.encoders):
            part = f"te{index}"
            self.part_names.append(part)
            table = self.names.setdefault(part, {})
            transformer = encoder.transformer
            stack = text_model(transformer)
            modules = [("text_model." + n, m) for n, m in stack.named_modules()]
            projection = getattr(transformer, "text_projection", None)
            if projection is not None:
                modules.append(("text_projection", projection))
            for name, module in modules:
                if not isinstance(module, PATCHABLE):
                    continue
                target = self._add(Target(f"{part}:{name}", part, name, module))
                bare = name[len("text_model.") :] if name.startswith("text_model.") else name
                for alias in (name, bare, "transformer." + name):
                    self._alias(table, alias, target)
                openclip = _openclip_name(name)
                if openclip is not None:
                    self._alias(table, openclip, target)
                    self._alias(table, "model." + openclip, target)

    def _add(self, target: Target) -> Target:
        self.targets[target.key] = target
        return target

    @staticmethod
    def _alias(table: dict[str, Target], name: str, target: Target) -> None:
        key = _underscored(name)
        existing = table.setdefault(key, target)
        if existing is not target:
            log.debug("layer name %s is ambiguous (%s, %s); keeping the first", key, existing.key, target.key)

    def find(self, layer: str) -> Target | None:
        """The module a file's layer name (without the weight-part suffix) refers to, or None."""
        name = _underscored(layer)
        for wrapper in _WRAPPERS:
            if name.startswith(wrapper):
                name = name[len(wrapper) :]
        for prefix, part in _PREFIXES:
            if name.startswith(prefix):
                target = self.names.get(part, {}).get(name[len(prefix) :])
                if target is not None:
                    return target
        # Bare paths (a UNet saved on its own, or A1111's SD1 text encoder path "transformer_text_model_...").
        for part in self.part_names:
            target = self.names[part].get(name)
            if target is not None:
                return target
        return None
