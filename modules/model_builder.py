"""diffusers/transformers modules from an A1111 single-file state dict, without random init or network.

Modules are created on the meta device and the checkpoint's tensors are assigned as their parameters
(`load_state_dict(assign=True)`): no memory or time is spent on an initialisation that would be overwritten.
Key conversion for the UNet and VAE uses diffusers' single-file helpers; the text encoders' layouts are simple
enough to map here.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from modules.errors import UserError
from modules.model_detection import VAE_PREFIX, TextEncoderSpec

log = logging.getLogger(__name__)

# diffusers logs a warning for every unexpected key; ours are reported once, below.
logging.getLogger("diffusers").setLevel(logging.ERROR)


def _materialize(module: torch.nn.Module, what: str, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Assign `sd` to a meta-built module; every parameter must be present and of the right shape."""
    try:
        result = module.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError as e:
        raise UserError(f"The {what} weights do not fit the model's configuration: {_first_line(e)}") from e
    if result.missing_keys:
        missing = ", ".join(result.missing_keys[:5])
        raise UserError(
            f"The {what} weights are incomplete: {len(result.missing_keys)} tensors missing (e.g. {missing})."
        )
    if result.unexpected_keys:
        log.debug("%s: ignored %d unexpected keys", what, len(result.unexpected_keys))
    _fix_meta_buffers(module, what)
    return module


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__)


def _fix_meta_buffers(module: torch.nn.Module, what: str) -> None:
    """Non-persistent buffers are not in checkpoints: rebuild the known ones (CLIP's position ids)."""
    for name, buf in list(module.named_buffers()):
        if not buf.is_meta:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if attr == "position_ids":
            owner.register_buffer(attr, torch.arange(buf.shape[-1]).expand((1, -1)).clone(), persistent=False)
        else:
            raise UserError(f"Internal error: the {what} buffer {name} has no value after loading.")


def build_unet(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> UNet2DConditionModel:
    converted = convert_ldm_unet_checkpoint(sd, config)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    unet = _materialize(unet, "UNet", converted)
    if config.get("addition_embed_type") == "text_time":
        # SGM (and so A1111) embeds SDXL's size/crop/target numbers in the conditioner and hands the UNet a
        # ready `vector`; diffusers would embed raw numbers here. Taking the embeddings as they come keeps
        # the `vector` A1111 extensions see, with identical math (same sinusoidal embedding).
        unet.add_time_proj = torch.nn.Identity()
    return unet


def vae_state_dict_from_checkpoint(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The VAE part of a full checkpoint, with the `first_stage_model.` prefix removed."""
    return {k[len(VAE_PREFIX):]: v for k, v in sd.items() if k.startswith(VAE_PREFIX)}


def build_vae(vae_sd: dict[str, torch.Tensor], config: dict[str, Any]) -> AutoencoderKL:
    """A VAE from LDM-layout keys (encoder.*, decoder.*, quant_conv.*, post_quant_conv.*)."""
    vae_sd = {k: v for k, v in vae_sd.items() if not k.startswith(("loss.", "model_ema."))}
    try:
        converted = convert_ldm_vae_checkpoint(vae_sd, config)
    except (KeyError, IndexError, AttributeError) as e:
        raise UserError(f"The VAE weights do not have the expected layout (missing {e}).") from e
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    return _materialize(vae, "VAE", converted)


def text_encoder_config(spec: TextEncoderSpec) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        hidden_act=spec.hidden_act,
        layer_norm_eps=1e-5,
        projection_dim=spec.projection_dim or spec.hidden_size,
        # eos id 2 selects the legacy rule "pooled output at the highest token id", which is where
        # A1111/OpenCLIP take it (the end token has the highest id).
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )


def _openclip_to_hf(sd: dict[str, torch.Tensor], prefix: str, width: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    renames = {
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "ln_final.weight": "text_model.final_layer_norm.weight",
        "ln_final.bias": "text_model.final_layer_norm.bias",
    }
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest in renames:
            out[renames[rest]] = value
        elif rest == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif rest.startswith("transformer.resblocks."):
            idx, sub = rest[len("transformer.resblocks."):].split(".", 1)
            base = f"text_model.encoder.layers.{idx}."
            if sub.startswith("attn.in_proj_"):
                kind = sub.rsplit("_", 1)[1]  # weight or bias
                for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
                    out[f"{base}self_attn.{name}.{kind}"] = value[i * width:(i + 1) * width]
                continue
            for old, new in parts.items():
                if sub.startswith(old + "."):
                    out[base + new + sub[len(old):]] = value
                    break
    return out


def build_text_encoder(sd: dict[str, torch.Tensor], spec: TextEncoderSpec) -> CLIPTextModel:
    """CLIPTextModel (or WithProjection when the checkpoint has a text projection) from the checkpoint keys."""
    config = text_encoder_config(spec)
    if spec.layout == "clip":
        hf = {k[len(spec.prefix):]: v for k, v in sd.items() if k.startswith(spec.prefix + "text_model.")}
    else:
        hf = _openclip_to_hf(sd, spec.prefix, spec.hidden_size)
    if "text_projection.weight" in hf:
        cls = CLIPTextModelWithProjection
    else:
        # transformers 5's CLIPTextModel has no `text_model.` level (WithProjection keeps it).
        cls = CLIPTextModel
        hf = {k[len("text_model."):]: v for k, v in hf.items()}
    with torch.device("meta"):
        model = cls(config)
    return _materialize(model, "text encoder", hf)


def text_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer stack (embeddings, encoder, final_layer_norm) of either CLIP text class."""
    return getattr(model, "text_model", model)

