"""The loaded model: UNet, VAE and text encoders of one checkpoint, with A1111's model interface.

A1111 extensions and samplers talk to `shared.sd_model` through a few LDM methods (`apply_model`,
`get_learned_conditioning`, `decode_first_stage`, `encode_first_stage`, `alphas_cumprod`) and flags (`is_sdxl`,
`is_sd1`, ...). This class provides exactly that over diffusers/transformers modules.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from modules import devices
from modules.model_detection import ModelSpec

log = logging.getLogger(__name__)


def make_alphas_cumprod(linear_start: float = 0.00085, linear_end: float = 0.012, steps: int = 1000) -> torch.Tensor:
    """The "scaled linear" beta schedule of SD (float64 math, float32 result, as LDM stores it)."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


class StableDiffusionModel(torch.nn.Module):
    def __init__(
        self,
        spec: ModelSpec,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        cond_stage_model: torch.nn.Module,
        alphas_cumprod: torch.Tensor,
    ):
        super().__init__()
        self.spec = spec
        self.unet = unet
        self.first_stage_model = vae
        self.cond_stage_model = cond_stage_model
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float32), persistent=False)
        self.parameterization = "v" if spec.prediction == "v" else "eps"
        self.scale_factor = spec.scale_factor
        self.latent_channels = unet.config.out_channels
        # Width of the pooled text embedding at the start of SDXL's `vector`.
        self.adm_text_dim = (spec.text_encoders[-1].projection_dim or 0) if spec.is_sdxl else 0

        self.is_sdxl = spec.is_sdxl
        self.is_sdxl_refiner = spec.family == "sdxl-refiner"
        self.is_sdxl_inpaint = spec.is_sdxl and spec.inpaint
        self.is_sd2 = spec.family == "sd2"
        self.is_sd1 = spec.family == "sd1"
        self.is_ssd = False
        self.is_sd3 = False
        self.is_inpaint = spec.inpaint
        self.conditioning_key = "hybrid" if spec.inpaint else "crossattn"
        self.cond_stage_key = "txt"

        # Filled by sd_models when loading.
        self.sd_checkpoint_info: Any = None
        self.sd_model_hash: str | None = None
        self.sd_model_checkpoint: str | None = None
        self.base_vae_state: dict[str, torch.Tensor] | None = None  # the checkpoint's own VAE, to restore
        self.loaded_vae_file: str | None = None

    # -- the parts under A1111's names -------------------------------------------------------------
    @property
    def vae(self) -> AutoencoderKL:
        return self.first_stage_model

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- text ------------------------------------------------------------------------------------
    def get_learned_conditioning(self, batch: list[str]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Conditioning for a batch of prompts: a tensor [B, 77·k, dim], or for SDXL a dict with
        `crossattn` [B, 77·k, 2048] and `vector` [B, adm] (pooled text + size/crop/target embeddings)."""
        return self.cond_stage_model(batch)

    # -- denoising -------------------------------------------------------------------------------
    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, Any]) -> torch.Tensor:
        """One UNet call in LDM terms: x [B,4,h,w], integer-or-fractional timesteps t [B], cond dict.

        SD1/SD2: {"c_crossattn": [context], "c_concat": [image_cond]}; SDXL: {"crossattn": context,
        "vector": adm, "c_concat": [image_cond]}. `c_concat` is used by inpainting models only.
        """
        if "crossattn" in cond:
            context = cond["crossattn"]
            added = _sdxl_added_cond(cond["vector"].to(self.dtype), self.adm_text_dim)
        else:
            context = cond["c_crossattn"][0] if isinstance(cond["c_crossattn"], list) else cond["c_crossattn"]
            added = None
        concat = cond.get("c_concat")
        if self.is_inpaint and concat is not None:
            concat = concat[0] if isinstance(concat, list) else concat
            x = torch.cat([x, concat.to(x.dtype)], dim=1)
        dtype = self.dtype
        out = self.unet(
            x.to(dtype), t, encoder_hidden_states=context.to(dtype), added_cond_kwargs=added, return_dict=False
        )[0]
        return out.to(x.dtype)

    # -- latents <-> pixels ------------------------------------------------------------------------
    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """Latents → images in [-1, 1] (B,3,H,W), in the VAE's dtype."""
        vae = self.first_stage_model
        z = z.to(vae.device, vae.dtype) / self.scale_factor
        return vae.decode(z, return_dict=False)[0]

    def encode_first_stage(self, x: torch.Tensor) -> Any:
        vae = self.first_stage_model
        return vae.encode(x.to(vae.device, vae.dtype)).latent_dist

    def get_first_stage_encoding(self, encoder_posterior: Any) -> torch.Tensor:
        """A1111 samples the posterior mean for img2img (deterministic): `mode()` of the distribution."""
        z = encoder_posterior.mode() if hasattr(encoder_posterior, "mode") else encoder_posterior
        return z * self.scale_factor

    def to_devices(self, move: bool = True) -> StableDiffusionModel:
        """Cast every part to its configured dtype (VAE separately) and, unless offloading, move it to the device."""
        target = devices.device if move else devices.cpu
        self.unet.to(target, devices.dtype_unet)
        self.cond_stage_model.to(target, devices.dtype)
        self.first_stage_model.to(target, devices.dtype_vae)
        self.alphas_cumprod = self.alphas_cumprod.to(devices.device)
        return self


def _sdxl_added_cond(vector: torch.Tensor, text_dim: int) -> dict[str, torch.Tensor]:
    """SGM's `vector` is [pooled text | sinusoidal embeddings of the size/crop/target numbers]; the UNet built by
    model_builder takes the embeddings ready-made (its `add_time_proj` is the identity), so both halves pass
    through unchanged — extensions see the same `vector` as in A1111."""
    return {"text_embeds": vector[:, :text_dim], "time_ids": vector[:, text_dim:]}
