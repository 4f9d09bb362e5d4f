"""Random-weight checkpoints in A1111's single-file format, for tests and the benchmark (no download).

`write_checkpoint(path, family, size)` writes `<path>` (.safetensors or .ckpt) with seeded random weights in
the exact key layout of real checkpoints; for size "tiny" it also writes the same-stem LDM/SGM `.yaml` that
gives the tiny dimensions (A1111's convention), since key sniffing cannot infer them. "full" uses the real
architectures of SD 1.5 / SD 2.x / SDXL with the shipped configs.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from modules import ldm_layout, model_builder, model_detection
from modules.model_detection import TextEncoderSpec

FAMILIES = ("sd1", "sd1-inpaint", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "sdxl-inpaint")

TINY_TE = dict(hidden_size=64, num_layers=2, intermediate_size=128)
TINY_TIME_DIM = 8


def tiny_yaml(family: str) -> dict[str, Any]:
    """An LDM (SD1/2) or SGM (SDXL) config with tiny dimensions, in the format of A1111's yaml files."""
    sdxl = family.startswith("sdxl")
    refiner = family == "sdxl-refiner"
    in_channels = 9 if family.endswith("inpaint") else 4
    unet: dict[str, Any] = {
        "in_channels": in_channels, "out_channels": 4, "model_channels": 32, "attention_resolutions": [1, 2],
        "num_res_blocks": 1, "channel_mult": [1, 2], "transformer_depth": 1, "use_spatial_transformer": True,
        "legacy": False,
    }
    if sdxl:
        context = 64 if refiner else 128  # refiner: OpenCLIP only; base: CLIP-L (64) + OpenCLIP (64)
        n_numbers = 5 if refiner else 6
        unet.update(num_head_channels=32, use_linear_in_transformer=True, context_dim=context,
                    num_classes="sequential", adm_in_channels=64 + n_numbers * TINY_TIME_DIM)
    elif family.startswith("sd2"):
        unet.update(num_head_channels=32, use_linear_in_transformer=True, context_dim=64)
    else:
        unet.update(num_heads=2, context_dim=64)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    first_stage = {"params": {"embed_dim": 4, "ddconfig": ddconfig, "lossconfig": {"target": "torch.nn.Identity"}}}
    if sdxl:
        first_stage["target"] = "sgm.models.autoencoder.AutoencoderKLInferenceWrapper"
        embedders = [{"target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND",
                      "params": {"outdim": TINY_TIME_DIM}}]
        params = {
            "scale_factor": 0.13025,
            "network_config": {"target": "sgm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
            "conditioner_config": {"target": "sgm.modules.GeneralConditioner", "params": {"emb_models": embedders}},
            "first_stage_config": first_stage,
        }
        return {"model": {"target": "sgm.models.diffusion.DiffusionEngine", "params": params}}
    first_stage["target"] = "ldm.models.autoencoder.AutoencoderKL"
    params = {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 8, "channels": 4,
        "scale_factor": 0.18215, "conditioning_key": "hybrid" if in_channels == 9 else "crossattn",
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
        "first_stage_config": first_stage,
    }
    if family == "sd2-v":
        params["parameterization"] = "v"
    return {"model": {"target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": params}}


def _te_spec(layout: str, prefix: str, size: str, projection: bool) -> TextEncoderSpec:
    dims = TINY_TE if size == "tiny" else {
        ("clip", False): dict(hidden_size=768, num_layers=12, intermediate_size=3072),
        ("openclip", False): dict(hidden_size=1024, num_layers=24, intermediate_size=4096),
        ("openclip", True): dict(hidden_size=1280, num_layers=32, intermediate_size=5120),
    }[(layout, projection)]
    return TextEncoderSpec(
        prefix=prefix, layout=layout, vocab_size=49408, max_positions=77,
        projection_dim=dims["hidden_size"] if projection else None,
        hidden_act="quick_gelu" if layout == "clip" else "gelu", pad_token=-1 if layout == "clip" else 0, **dims,
    )


def _text_encoders(family: str, size: str) -> list[TextEncoderSpec]:
    if family in ("sdxl", "sdxl-inpaint"):
        return [_te_spec("clip", "conditioner.embedders.0.transformer.", size, False),
                _te_spec("openclip", "conditioner.embedders.1.model.", size, True)]
    if family == "sdxl-refiner":
        return [_te_spec("openclip", "conditioner.embedders.0.model.", size, True)]
    if family.startswith("sd2"):
        return [_te_spec("openclip", "cond_stage_model.model.", size, False)]
    return [_te_spec("clip", "cond_stage_model.transformer.", size, False)]


def _configs(family: str, size: str) -> tuple[dict, dict]:
    if size == "tiny":
        root = tiny_yaml(family)
        params = root["model"]["params"]
        unet = (params.get("unet_config") or params.get("network_config"))["params"]
        unet_cfg = model_detection.unet_config_from_ldm(unet, params, {})
        vae_cfg = model_detection.vae_config_from_ldm(params["first_stage_config"]["params"]["ddconfig"],
                                                      params["scale_factor"])
        return unet_cfg, vae_cfg
    return (model_detection._read_shipped(family, "unet"), model_detection._read_shipped(family, "vae"))


@torch.no_grad()
def build_state_dict(family: str, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Seeded random weights for every part of a checkpoint of `family`, in A1111's key layout."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family}; choose one of {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    unet_cfg, vae_cfg = _configs(family, size)
    sd: dict[str, torch.Tensor] = {}
    unet = UNet2DConditionModel(**unet_cfg)
    sd.update(ldm_layout.unet_to_ldm(unet.state_dict(), unet_cfg))
    del unet
    vae = AutoencoderKL(**vae_cfg)
    sd.update(ldm_layout.vae_to_ldm(vae.state_dict(), vae_cfg))
    del vae
    for spec in _text_encoders(family, size):
        config = model_builder.text_encoder_config(spec)
        cls = CLIPTextModelWithProjection if spec.projection_dim else CLIPTextModel
        model = cls(config)
        weights = model.state_dict()
        if spec.layout == "clip":
            sd.update(ldm_layout.clip_to_ldm(weights, spec.prefix))
        else:
            sd.update(ldm_layout.clip_to_openclip(weights, spec.prefix))
        del model
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    sd["alphas_cumprod"] = torch.cumprod(1.0 - betas, dim=0).float()
    return {k: v.to(dtype).contiguous() if v.is_floating_point() else v for k, v in sd.items()}


def write_checkpoint(path: str, family: str, size: str = "tiny", seed: int = 0,
                     dtype: torch.dtype = torch.float32) -> str:
    """Write a random checkpoint (.safetensors or .ckpt by extension) and, for tiny ones, its same-stem yaml."""
    sd = build_state_dict(family, size, seed, dtype)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, path, metadata={"format": "pt"})
    else:
        torch.save({"state_dict": sd}, path)
    if size == "tiny":
        with open(os.path.splitext(path)[0] + ".yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(tiny_yaml(family), f, sort_keys=False)
    return path
