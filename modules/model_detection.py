"""Which model a single-file checkpoint holds, and the dimensions of its parts.

The family comes from the state dict's key layout (A1111's rules, a1111-spec §7.2). UNet and VAE dimensions come
from a same-stem LDM/SGM `.yaml` next to the checkpoint when there is one (A1111's convention), else from the
family's diffusers config shipped in `configs/`. Text-encoder dimensions are read from the weights: every real
CLIP/OpenCLIP text encoder has head width 64.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml

from modules.errors import UserError
from modules.paths_internal import configs_path

log = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_IN_KEY = UNET_PREFIX + "input_blocks.0.0.weight"
HEAD_WIDTH = 64


@dataclass
class TextEncoderSpec:
    """One text encoder inside the checkpoint."""

    prefix: str  # key prefix in the checkpoint, e.g. "cond_stage_model.transformer."
    layout: str  # "clip" (HF CLIP keys under text_model.*) or "openclip" (resblocks, in_proj)
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    projection_dim: int | None  # OpenCLIP text_projection width, if present
    hidden_act: str
    pad_token: int  # CLIP-L pads with the end token, OpenCLIP with id 0
    # Which hidden state becomes the conditioning: "last" (after final layer norm), or "penultimate" with or
    # without the final layer norm.
    layer: str = "last"
    final_norm: bool = True

    @property
    def num_heads(self) -> int:
        return max(1, self.hidden_size // HEAD_WIDTH)


@dataclass
class ModelSpec:
    family: str  # sd1, sd2, sdxl, sdxl-refiner
    inpaint: bool = False
    prediction: str = "eps"  # "eps" or "v"
    prediction_known: bool = True  # False: SD2 without yaml, to be tested after the UNet is built
    unet_config: dict[str, Any] = field(default_factory=dict)
    vae_config: dict[str, Any] = field(default_factory=dict)
    scale_factor: float = 0.18215
    text_encoders: list[TextEncoderSpec] = field(default_factory=list)
    config_source: str = ""  # the yaml or the shipped config dir
    linear_start: float = 0.00085
    linear_end: float = 0.012

    @property
    def is_sdxl(self) -> bool:
        return self.family in ("sdxl", "sdxl-refiner")

    @property
    def config_name(self) -> str:
        """The shipped config directory for this family."""
        if self.family == "sdxl-refiner":
            return "sdxl-refiner"
        name = self.family
        if self.inpaint:
            return name + "-inpaint"
        if self.family == "sd2" and self.prediction == "v":
            return "sd2-v"
        return name


def normalize_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename A1111-known legacy key layouts in place: old SD1 CLIP keys; SD2.1-Turbo's SGM text encoder."""
    old_clip = "cond_stage_model.transformer."
    for key in [k for k in sd if k.startswith(old_clip)]:
        rest = key[len(old_clip):]
        if rest.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
            sd[old_clip + "text_model." + rest] = sd.pop(key)
    turbo = "conditioner.embedders.0.model.ln_final.weight"
    if turbo in sd and sd[turbo].shape[0] == 1024 and "conditioner.embedders.1.model.ln_final.weight" not in sd:
        for key in [k for k in sd if k.startswith("conditioner.embedders.0.")]:
            sd["cond_stage_model." + key[len("conditioner.embedders.0."):]] = sd.pop(key)
    return sd


def detect_family(sd: dict[str, torch.Tensor], filename: str = "checkpoint") -> ModelSpec:
    """Family, inpainting and text encoders from the key layout. Raises UserError for anything else."""
    if UNET_IN_KEY not in sd:
        kinds = []
        if any(k.startswith(("lora_", "lora_unet_", "lora_te")) for k in sd):
            kinds.append("it looks like a LoRA: put it in models/Lora")
        elif any(k.startswith(("encoder.", "decoder.")) for k in sd):
            kinds.append("it looks like a VAE: put it in models/VAE")
        elif "string_to_param" in sd or "emb_params" in sd:
            kinds.append("it looks like a textual-inversion embedding: put it in embeddings/")
        hint = f" ({kinds[0]})" if kinds else ""
        raise UserError(
            f"{os.path.basename(filename)} is not a Stable Diffusion 1.x, 2.x or XL checkpoint: it has no UNet "
            f"weights under '{UNET_PREFIX}'{hint}."
        )
    if UNET_PREFIX + "x_embedder.proj.weight" in sd:
        raise UserError(f"{os.path.basename(filename)} is a Stable Diffusion 3 checkpoint, which is not supported.")

    in_channels = sd[UNET_IN_KEY].shape[1]
    if in_channels not in (4, 9):
        raise UserError(
            f"{os.path.basename(filename)} has a UNet with {in_channels} input channels; only 4 (normal) and 9 "
            "(inpainting) are supported."
        )
    inpaint = in_channels == 9

    if "conditioner.embedders.1.model.ln_final.weight" in sd:
        spec = ModelSpec("sdxl", inpaint=inpaint, scale_factor=0.13025)
        spec.text_encoders = [
            _clip_spec(sd, "conditioner.embedders.0.transformer.", layer="penultimate", final_norm=False),
            _openclip_spec(sd, "conditioner.embedders.1.model.", layer="penultimate", final_norm=False),
        ]
    elif "conditioner.embedders.0.model.ln_final.weight" in sd:
        spec = ModelSpec("sdxl-refiner", inpaint=inpaint, scale_factor=0.13025)
        spec.text_encoders = [
            _openclip_spec(sd, "conditioner.embedders.0.model.", layer="penultimate", final_norm=False),
        ]
    elif "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in sd:
        spec = ModelSpec("sd2", inpaint=inpaint, prediction_known=inpaint)
        spec.text_encoders = [_openclip_spec(sd, "cond_stage_model.model.", layer="penultimate", final_norm=True)]
    elif "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in sd:
        spec = ModelSpec("sd1", inpaint=inpaint)
        spec.text_encoders = [_clip_spec(sd, "cond_stage_model.transformer.", layer="last", final_norm=True)]
    else:
        raise UserError(
            f"{os.path.basename(filename)} has a UNet but no text encoder this program recognises "
            "(expected CLIP under cond_stage_model.* or conditioner.embedders.*)."
        )
    return spec


def _count_layers(sd: dict[str, torch.Tensor], prefix: str, marker: str) -> int:
    ids = set()
    for key in sd:
        if key.startswith(prefix + marker):
            ids.add(int(key[len(prefix + marker):].split(".", 1)[0]))
    return len(ids)


def _clip_spec(sd, prefix: str, layer: str, final_norm: bool) -> TextEncoderSpec:
    tm = prefix + "text_model."
    tok = sd[tm + "embeddings.token_embedding.weight"]
    fc1 = sd[tm + "encoder.layers.0.mlp.fc1.weight"]
    return TextEncoderSpec(
        prefix=prefix, layout="clip", hidden_size=tok.shape[1], vocab_size=tok.shape[0],
        num_layers=_count_layers(sd, tm, "encoder.layers."), intermediate_size=fc1.shape[0],
        max_positions=sd[tm + "embeddings.position_embedding.weight"].shape[0], projection_dim=None,
        hidden_act="quick_gelu", pad_token=-1, layer=layer, final_norm=final_norm,
    )


def _openclip_spec(sd, prefix: str, layer: str, final_norm: bool) -> TextEncoderSpec:
    tok = sd[prefix + "token_embedding.weight"]
    fc = sd[prefix + "transformer.resblocks.0.mlp.c_fc.weight"]
    proj = sd.get(prefix + "text_projection")
    return TextEncoderSpec(
        prefix=prefix, layout="openclip", hidden_size=tok.shape[1], vocab_size=tok.shape[0],
        num_layers=_count_layers(sd, prefix, "transformer.resblocks."), intermediate_size=fc.shape[0],
        max_positions=sd[prefix + "positional_embedding"].shape[0],
        projection_dim=None if proj is None else proj.shape[1], hidden_act="gelu", pad_token=0,
        layer=layer, final_norm=final_norm,
    )


def find_checkpoint_config_near_filename(filename: str) -> str | None:
    """A same-stem .yaml next to the checkpoint (A1111's convention), or None."""
    stem = os.path.splitext(filename)[0]
    for candidate in (stem + ".yaml", stem + ".yml"):
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_shipped(name: str, part: str) -> dict[str, Any]:
    path = os.path.join(configs_path, name, part, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    return {k: v for k, v in config.items() if not k.startswith("_")}


def resolve_spec(sd: dict[str, torch.Tensor], filename: str, yaml_path: str | None = None) -> ModelSpec:
    """Family from the keys, dimensions from the yaml (if any) or the shipped diffusers configs."""
    spec = detect_family(sd, filename)
    yaml_path = yaml_path or find_checkpoint_config_near_filename(filename)
    if yaml_path:
        apply_ldm_yaml(spec, yaml_path, sd)
    else:
        spec.unet_config = _read_shipped(spec.config_name, "unet")
        spec.vae_config = _read_shipped(spec.config_name, "vae")
        spec.config_source = os.path.join(configs_path, spec.config_name)
    return spec


def apply_ldm_yaml(spec: ModelSpec, yaml_path: str, sd: dict[str, torch.Tensor]) -> None:
    """Fill UNet/VAE configs, prediction type and scale factor from an LDM (SD1/2) or SGM (SDXL) yaml."""
    try:
        with open(yaml_path, encoding="utf-8") as f:
            root = yaml.safe_load(f)
        params = root["model"]["params"]
        unet = (params.get("unet_config") or params.get("network_config"))["params"]
        ddconfig = params["first_stage_config"]["params"]["ddconfig"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise UserError(f"Could not read the model config {yaml_path}: {e}. Fix or remove the file.") from e

    spec.config_source = yaml_path
    spec.scale_factor = float(params.get("scale_factor", spec.scale_factor))
    spec.linear_start = float(params.get("linear_start", spec.linear_start))
    spec.linear_end = float(params.get("linear_end", spec.linear_end))
    if params.get("parameterization") == "v" or "VScaling" in json.dumps(params.get("denoiser_config", {})):
        spec.prediction = "v"
    spec.prediction_known = True
    spec.unet_config = unet_config_from_ldm(unet, params, sd)
    spec.vae_config = vae_config_from_ldm(ddconfig, spec.scale_factor)


def unet_config_from_ldm(unet: dict[str, Any], params: dict[str, Any], sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    mult = list(unet["channel_mult"])
    channels = [unet["model_channels"] * m for m in mult]
    attn_res = set(unet.get("attention_resolutions", []))
    down_types, up_types = [], []
    for level in range(len(mult)):
        down_types.append("CrossAttnDownBlock2D" if 2**level in attn_res else "DownBlock2D")
    for level in reversed(range(len(mult))):
        up_types.append("CrossAttnUpBlock2D" if 2**level in attn_res else "UpBlock2D")

    if unet.get("num_head_channels", -1) not in (-1, None):
        heads = [c // unet["num_head_channels"] for c in channels]
    else:
        heads = unet.get("num_heads", 8)
    depth = unet.get("transformer_depth", 1)
    if isinstance(depth, list):
        depth = [max(1, d) for d in depth]
    context = unet.get("context_dim")
    if isinstance(context, list):
        context = context[0]

    config: dict[str, Any] = {
        "sample_size": int(params.get("image_size", 64)),
        "in_channels": unet["in_channels"],
        "out_channels": unet["out_channels"],
        "down_block_types": down_types,
        "up_block_types": up_types,
        "block_out_channels": channels,
        "layers_per_block": unet["num_res_blocks"],
        "cross_attention_dim": context,
        "attention_head_dim": heads,
        "use_linear_projection": bool(unet.get("use_linear_in_transformer", False)),
        "transformer_layers_per_block": depth,
        "norm_num_groups": 32,
    }
    if unet.get("num_classes") == "sequential":
        # SDXL: pooled text embedding + Fourier features of the size/crop/target (or aesthetic) conditions.
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = unet["adm_in_channels"]
        config["addition_time_embed_dim"] = _time_embed_dim(params)
        config["addition_embed_type_num_heads"] = 64
    return config


def _time_embed_dim(params: dict[str, Any]) -> int:
    emb_models = params.get("conditioner_config", {}).get("params", {}).get("emb_models", [])
    for m in emb_models:
        if "ConcatTimestepEmbedderND" in m.get("target", ""):
            return int(m.get("params", {}).get("outdim", 256))
    return 256


def vae_config_from_ldm(dd: dict[str, Any], scale_factor: float) -> dict[str, Any]:
    channels = [dd["ch"] * m for m in dd["ch_mult"]]
    return {
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": channels,
        "latent_channels": dd["z_channels"],
        "layers_per_block": dd["num_res_blocks"],
        "norm_num_groups": 32,
        "sample_size": dd.get("resolution", 256),
        "scaling_factor": scale_factor,
    }
