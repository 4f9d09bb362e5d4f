"""Hypernetworks (A1111's .pt format), applied to the keys and values of the UNet's attention layers.

A file holds, for each context width it was trained on (768/1024 for cross-attention on the text, 320/640/1280
for self-attention on the image features), two small MLPs — one for keys, one for values — plus the recipe they
were built from (layer structure, activation, layer norm, dropout). In every attention layer whose context width
has MLPs, the context seen by `to_k` / `to_v` becomes `x + mlp(x) · strength`. The attention processor that does
this wraps the one chosen in modules/attention and hands over to it when no hypernetwork applies.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import torch
import torch.nn.functional as F

from modules import devices, hashes, model_files, shared
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

hypernetworks: dict[str, str] = shared.hypernetworks  # name → file
loaded_hypernetworks: list[Hypernetwork] = shared.loaded_hypernetworks


class HypernetworkModule(torch.nn.Module):
    """One MLP: Linear layers sized dim·layer_structure[i], each optionally followed by activation, LayerNorm and
    dropout, with a residual connection scaled by the multiplier."""

    activation_dict: dict[str, type[torch.nn.Module]] = {
        name.lower(): cls
        for name, cls in inspect.getmembers(torch.nn.modules.activation, inspect.isclass)
        if cls.__module__ == "torch.nn.modules.activation"
    }
    activation_dict.update(
        {
            "linear": torch.nn.Identity,
            "relu": torch.nn.ReLU,
            "leakyrelu": torch.nn.LeakyReLU,
            "elu": torch.nn.ELU,
            "swish": torch.nn.Hardswish,
            "tanh": torch.nn.Tanh,
            "sigmoid": torch.nn.Sigmoid,
        }
    )

    def __init__(
        self,
        dim: int,
        state_dict: dict[str, torch.Tensor] | None = None,
        layer_structure: list[float] | None = None,
        activation_func: str | None = None,
        add_layer_norm: bool = False,
        activate_output: bool = False,
        dropout_structure: list[float] | None = None,
    ):
        super().__init__()
        self.multiplier = 1.0
        layer_structure = list(layer_structure or [1, 2, 1])
        if layer_structure[0] != 1 or layer_structure[-1] != 1:
            raise UserError(f"Hypernetwork layer structure {layer_structure} must start and end with 1.")
        layers: list[torch.nn.Module] = []
        for i in range(len(layer_structure) - 1):
            layers.append(torch.nn.Linear(int(dim * layer_structure[i]), int(dim * layer_structure[i + 1])))
            last = i >= len(layer_structure) - 2
            if activation_func not in (None, "linear") and not (last and not activate_output):
                if activation_func not in self.activation_dict:
                    raise UserError(f"Hypernetwork uses an unsupported activation function: {activation_func}")
                layers.append(self.activation_dict[activation_func]())
            if add_layer_norm:
                layers.append(torch.nn.LayerNorm(int(dim * layer_structure[i + 1])))
            if dropout_structure is not None and dropout_structure[i + 1] > 0:
                # kept only so that the saved layer indices line up; inference runs in eval mode
                layers.append(torch.nn.Dropout(p=dropout_structure[i + 1]))
        self.linear = torch.nn.Sequential(*layers)
        if state_dict is not None:
            self.load_state_dict(_fix_old_state_dict(state_dict))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(x) * (self.multiplier if not self.training else 1)


def _fix_old_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The first hypernetworks named their two layers linear1/linear2."""
    renames = {
        "linear1.bias": "linear.0.bias",
        "linear1.weight": "linear.0.weight",
        "linear2.bias": "linear.1.bias",
        "linear2.weight": "linear.1.weight",
    }
    return {renames.get(k, k): v for k, v in state_dict.items()}


def parse_dropout_structure(
    layer_structure: list[float] | None, use_dropout: bool, last_layer_dropout: bool
) -> list[float]:
    """A1111's dropout per layer for files that only say whether dropout was used."""
    layer_structure = layer_structure or [1, 2, 1]
    if not use_dropout:
        return [0] * len(layer_structure)
    values = [0] + [0.3] * (len(layer_structure) - 3)
    values.append(0.3 if last_layer_dropout else 0)
    values.append(0)
    return values


class Hypernetwork:
    def __init__(self, name: str | None = None):
        self.filename: str | None = None
        self.name = name
        self.layers: dict[int, tuple[HypernetworkModule, HypernetworkModule]] = {}
        self.step = 0
        self.sd_checkpoint = None
        self.sd_checkpoint_name = None
        self.layer_structure: list[float] = [1, 2, 1]
        self.activation_func: str | None = None
        self.add_layer_norm = False
        self.use_dropout = False
        self.activate_output = False
        self.last_layer_dropout = False
        self.dropout_structure: list[float] | None = None
        self.optional_info = None

    def load(self, filename: str) -> None:
        self.filename = filename
        if self.name is None:
            self.name = os.path.splitext(os.path.basename(filename))[0]
        state_dict = model_files.read_pickle(filename, allow_unsafe=bool(shared.cmd_opts.disable_safe_unpickle))
        if not isinstance(state_dict, dict):
            raise UserError(f"{filename}: is not a hypernetwork (it holds a {type(state_dict).__name__})")
        self.layer_structure = list(state_dict.get("layer_structure", [1, 2, 1]))
        self.optional_info = state_dict.get("optional_info")
        self.activation_func = state_dict.get("activation_func")
        self.add_layer_norm = bool(state_dict.get("is_layer_norm", False))
        self.dropout_structure = state_dict.get("dropout_structure")
        self.use_dropout = bool(self.dropout_structure and any(self.dropout_structure)) or bool(
            state_dict.get("use_dropout", False)
        )
        self.activate_output = bool(state_dict.get("activate_output", True))
        self.last_layer_dropout = bool(state_dict.get("last_layer_dropout", False))
        if self.dropout_structure is None:
            self.dropout_structure = parse_dropout_structure(
                self.layer_structure, self.use_dropout, self.last_layer_dropout
            )
        for size, pair in state_dict.items():
            if not isinstance(size, int):
                continue
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise UserError(f"{filename}: the entry for size {size} is not a (keys, values) pair of layers")
            try:
                self.layers[size] = tuple(
                    HypernetworkModule(
                        size,
                        sd,
                        self.layer_structure,
                        self.activation_func,
                        self.add_layer_norm,
                        self.activate_output,
                        self.dropout_structure,
                    )
                    for sd in pair
                )
            except RuntimeError as e:
                raise UserError(
                    f"{filename}: the layers for size {size} do not match the file's structure "
                    f"({str(e).splitlines()[0]})"
                ) from e
        if not self.layers:
            raise UserError(f"{filename}: holds no hypernetwork layers")
        self.name = state_dict.get("name", self.name)
        self.step = state_dict.get("step", 0)
        self.sd_checkpoint = state_dict.get("sd_checkpoint")
        self.sd_checkpoint_name = state_dict.get("sd_checkpoint_name")

    def set_multiplier(self, multiplier: float) -> None:
        for pair in self.layers.values():
            for module in pair:
                module.multiplier = multiplier

    def to(self, device: torch.device) -> Hypernetwork:
        for pair in self.layers.values():
            for module in pair:
                module.to(device)
        return self

    def shorthash(self) -> str | None:
        sha = hashes.sha256(self.filename, f"hypernet/{self.name}", no_hashing=bool(shared.cmd_opts.no_hashing))
        return hashes.shorthash(sha)


def list_hypernetworks(path: str) -> dict[str, str]:
    """Every `.pt` under `path` (recursively) by file stem; a file named None.pt is not listed."""
    res: dict[str, str] = {}
    if not path or not os.path.isdir(path):
        return res
    found = []
    for root, _, files in os.walk(path, followlinks=True):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(".pt")]
    for filename in sorted(found, key=str.lower):
        name = os.path.splitext(os.path.basename(filename))[0]
        if name != "None":
            res[name] = filename
    return res


def refresh_hypernetworks() -> None:
    hypernetworks.clear()
    hypernetworks.update(list_hypernetworks(shared.cmd_opts.hypernetwork_dir))


def api_hypernetworks() -> list[dict[str, str]]:
    """The body of GET /sdapi/v1/hypernetworks: [{name, path}]."""
    return [{"name": name, "path": path} for name, path in hypernetworks.items()]


def load_hypernetwork(name: str) -> Hypernetwork:
    path = hypernetworks.get(name)
    if path is None:
        refresh_hypernetworks()
        path = hypernetworks.get(name)
    if path is None:
        raise NotFoundError(f"Hypernetwork '{name}' not found in {shared.cmd_opts.hypernetwork_dir}.")
    hypernetwork = Hypernetwork()
    hypernetwork.load(path)
    return hypernetwork


def load_hypernetworks(names: list[str], multipliers: list[float] | None = None) -> list[str]:
    """Make `names` the active hypernetworks with these strengths; returns the names that could not be loaded."""
    already_loaded = {h.name: h for h in loaded_hypernetworks if h.name in names}
    loaded_hypernetworks.clear()
    failed = []
    for i, name in enumerate(names):
        hypernetwork = already_loaded.get(name)
        if hypernetwork is None:
            try:
                hypernetwork = load_hypernetwork(name)
            except UserError as e:
                log.error("Hypernetwork %s not loaded: %s", name, e)
                failed.append(name)
                continue
        hypernetwork.set_multiplier(multipliers[i] if multipliers else 1.0)
        loaded_hypernetworks.append(hypernetwork)
    return failed


def apply_single_hypernetwork(
    hypernetwork: Hypernetwork, context_k: torch.Tensor, context_v: torch.Tensor, layer: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One hypernetwork's keys/values context. `layer` is accepted as in A1111, but the MLPs are not attached to
    it: as submodules they would join the model's state dict."""
    pair = hypernetwork.layers.get(context_k.shape[-1])
    if pair is None:
        return context_k, context_v
    module_k, module_v = pair
    device = context_k.device
    if next(module_k.parameters()).device != device:
        hypernetwork.to(device)
    # the MLPs run in fp32 whatever the model's precision (and outside autocast)
    with devices.without_autocast():
        return (module_k(context_k.float()).to(context_k.dtype), module_v(context_v.float()).to(context_v.dtype))


def apply_hypernetworks(
    hypernetworks_list: list[Hypernetwork], context: torch.Tensor, layer: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The context for the keys and for the values after every hypernetwork in turn (A1111's function)."""
    context_k = context_v = context
    for hypernetwork in hypernetworks_list:
        context_k, context_v = apply_single_hypernetwork(hypernetwork, context_k, context_v, layer)
    return context_k, context_v


class HypernetworkAttnProcessor:
    """The chosen attention processor, with keys and values taken from the hypernetwork-transformed context
    whenever an active hypernetwork has layers for this attention's context width."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if (
            not loaded_hypernetworks
            or hidden_states.ndim != 3
            or attn.spatial_norm is not None
            or not any(context.shape[-1] in h.layers for h in loaded_hypernetworks)
        ):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return self._attention(attn, hidden_states, encoder_hidden_states, attention_mask)

    @staticmethod
    def _attention(
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        residual = hidden_states
        batch_size, sequence_length, _ = (
            hidden_states if encoder_hidden_states is None else encoder_hidden_states
        ).shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            context = hidden_states
        elif attn.norm_cross:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states)
        else:
            context = encoder_hidden_states
        context_k, context_v = apply_hypernetworks(loaded_hypernetworks, context)
        key = attn.to_k(context_k)
        value = attn.to_v(context_v)
        head_dim = key.shape[-1] // attn.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor
