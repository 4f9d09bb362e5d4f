"""Write diffusers/transformers modules back in A1111's single-file key layout.

The inverse of the loading conversion: used to build test checkpoints and the benchmark's full-size random
checkpoints in the exact on-disk format users have (`model.diffusion_model.*`, `first_stage_model.*`,
`cond_stage_model.*`, `conditioner.embedders.N.*`).
"""

from __future__ import annotations

from typing import Any

import torch

from modules.model_detection import UNET_PREFIX, VAE_PREFIX

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_resnet(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def unet_to_ldm(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers UNet2DConditionModel keys → LDM `model.diffusion_model.*` keys."""
    per = config["layers_per_block"] + 1
    out: dict[str, torch.Tensor] = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    has_attn_up = {int(k.split(".")[1]) for k in sd if k.startswith("up_blocks.") and ".attentions." in k}
    for key, value in sd.items():
        parts = key.split(".")
        name = None
        if ".".join(parts[:2]) in fixed:
            name = fixed[".".join(parts[:2])] + "." + ".".join(parts[2:])
        elif parts[0] in fixed:
            name = fixed[parts[0]] + "." + ".".join(parts[1:])
        elif parts[0] == "down_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":
                name = f"input_blocks.{(i + 1) * per}.0.op." + ".".join(parts[5:])
            else:
                j = int(parts[3])
                block = f"input_blocks.{1 + i * per + j}"
                rest = ".".join(parts[4:])
                name = f"{block}.0.{_rename_resnet(rest, _RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                name = f"middle_block.{0 if j == 0 else 2}.{_rename_resnet(rest, _RESNET)}"
            else:
                name = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            i, kind = int(parts[1]), parts[2]
            if kind == "upsamplers":
                slot = 2 if i in has_attn_up else 1
                name = f"output_blocks.{i * per + per - 1}.{slot}.conv." + ".".join(parts[5:])
            else:
                j = int(parts[3])
                block = f"output_blocks.{i * per + j}"
                rest = ".".join(parts[4:])
                name = f"{block}.0.{_rename_resnet(rest, _RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
        if name is None:
            raise ValueError(f"no LDM name for UNet key {key}")
        out[UNET_PREFIX + name] = value
    return out


def vae_to_ldm(sd: dict[str, torch.Tensor], config: dict[str, Any], prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys → LDM `first_stage_model.*` keys (attention as 1×1 convolutions)."""
    n = len(config["block_out_channels"])
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            out[prefix + key] = value
            continue
        sub = parts[1]
        if sub in ("conv_in", "conv_out"):
            name = key
        elif sub == "conv_norm_out":
            name = f"{side}.norm_out." + ".".join(parts[2:])
        elif sub in ("down_blocks", "up_blocks"):
            i = int(parts[2]) if sub == "down_blocks" else n - 1 - int(parts[2])
            level = f"{side}.{'down' if sub == 'down_blocks' else 'up'}.{i}"
            if parts[3] == "resnets":
                name = f"{level}.block.{parts[4]}.{_rename_resnet('.'.join(parts[5:]), _VAE_RESNET)}"
            else:
                sample = "downsample" if sub == "down_blocks" else "upsample"
                name = f"{level}.{sample}.conv." + ".".join(parts[6:])
        elif sub == "mid_block":
            rest = ".".join(parts[4:])
            if parts[2] == "resnets":
                name = f"{side}.mid.block_{int(parts[3]) + 1}.{_rename_resnet(rest, _VAE_RESNET)}"
            else:
                for old, new in _VAE_ATTN.items():
                    if rest.startswith(old + "."):
                        rest = new + rest[len(old):]
                        break
                name = f"{side}.mid.attn_1.{rest}"
                if value.ndim == 2:
                    value = value[:, :, None, None]
        else:
            raise ValueError(f"no LDM name for VAE key {key}")
        out[prefix + name] = value
    return out


def _with_text_model_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5's CLIPTextModel keys lack the `text_model.` level that checkpoints have."""
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v for k, v in sd.items()}


def clip_to_ldm(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel keys → `<prefix>text_model.*` (A1111's CLIP-L layout)."""
    return {prefix + k: v for k, v in _with_text_model_prefix(sd).items() if k.startswith("text_model.")}


def clip_to_openclip(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel(WithProjection) keys → OpenCLIP layout under `prefix` (resblocks, fused in_proj)."""
    sd = _with_text_model_prefix(sd)
    out: dict[str, torch.Tensor] = {}
    renames = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
               "text_model.embeddings.position_embedding.weight": "positional_embedding",
               "text_model.final_layer_norm.weight": "ln_final.weight",
               "text_model.final_layer_norm.bias": "ln_final.bias"}
    parts = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")})
    for key, value in sd.items():
        if key in renames:
            out[prefix + renames[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.t().contiguous()
    for i in layers:
        base = f"text_model.encoder.layers.{i}."
        target = f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[target + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{base}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")]
            )
        for key, value in sd.items():
            if not key.startswith(base) or ".self_attn." in key and "out_proj" not in key:
                continue
            sub = key[len(base):]
            for old, new in parts.items():
                if sub.startswith(old + "."):
                    out[target + new + sub[len(old):]] = value
                    break
    return out
