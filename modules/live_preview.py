"""Live previews: the running job's latest latent (state.current_latent) as a picture, for the UI and the API.

"Approx cheap" maps the four latent channels to RGB with a fixed linear map (one matrix per model family,
published by the community for SD 1.x/2.x and SDXL latents); it costs microseconds and gives an image at latent
resolution (1/8 of the output). "Full" decodes with the model's VAE. "Approx NN" (A1111's small network,
modules/sd_vae_approx.py) and "TAESD" (tiny autoencoder, modules/sd_vae_taesd.py) need weight files; without
them the cheap map is used (TAESD's file is fetched when the user chooses it).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

# Rows: latent channels 0-3; columns: R, G, B contributions.
CHEAP_RGB_SD = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
CHEAP_RGB_SDXL = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)


def cheap_approximation(latents: torch.Tensor, is_sdxl: bool = False) -> torch.Tensor:
    """Latents (B, 4, h, w) → RGB (B, 3, h, w) on about the VAE's [-1, 1] output scale."""
    coeffs = torch.tensor(CHEAP_RGB_SDXL if is_sdxl else CHEAP_RGB_SD, dtype=torch.float32)
    return torch.einsum("bchw,cr->brhw", latents.float(), coeffs)


def to_pil(x: torch.Tensor) -> Image.Image:
    """One RGB tensor (3, h, w) in [-1, 1] → PIL, with A1111's preview rounding (truncation to uint8)."""
    x = torch.clamp(x * 0.5 + 0.5, 0.0, 1.0)
    return Image.fromarray((255.0 * np.moveaxis(x.numpy(), 0, 2)).astype(np.uint8))


def _network(method: str, is_sdxl: bool) -> torch.nn.Module | None:
    """The preview network of an "Approx NN" / "TAESD" choice, or None to use the cheap map."""
    if method == "Approx NN":
        from modules import sd_vae_approx

        return sd_vae_approx.model(is_sdxl)
    if method == "TAESD":
        from modules import sd_vae_taesd

        net = sd_vae_taesd.decoder(is_sdxl)
        if net is None:
            sd_vae_taesd.download_in_background(is_sdxl)
        return net
    return None


def latents_to_images(latents: torch.Tensor, method: str, model: Any = None) -> list[Image.Image]:
    """Preview images of a latent batch (B, C, h, w) with the named method (Full, Approx NN, TAESD, Approx cheap;
    a method whose weights are missing falls back to Approx cheap)."""
    latents = latents.detach()
    if method == "Full" and model is not None:
        from modules import sd_vae

        decoded = sd_vae.decode_latents(model, latents.to(model.device, model.first_stage_model.dtype))
        return [to_pil(x * 2.0 - 1.0) for x in decoded]
    if latents.shape[1] != len(CHEAP_RGB_SD):
        raise ValueError(f"cannot preview latents with {latents.shape[1]} channels")
    is_sdxl = bool(getattr(model, "is_sdxl", False))
    net = _network(method, is_sdxl)
    if net is not None:
        with torch.inference_mode():
            rgb = net(latents.cpu().float())
    else:
        rgb = cheap_approximation(latents.cpu(), is_sdxl=is_sdxl)
    return [to_pil(x) for x in rgb]


def preview_image(latents: torch.Tensor, opts: Any, model: Any = None) -> Image.Image:
    """The preview A1111 shows: a grid of the batch (show_progress_grid) or its first image."""
    if latents.dim() == 3:
        latents = latents.unsqueeze(0)
    if not opts.show_progress_grid:
        latents = latents[:1]
    method = opts.show_progress_type
    if method == "Full" and model is not None and not _full_allowed(model, opts):
        method = "Approx cheap"
    pictures = latents_to_images(latents, method, model)
    if len(pictures) == 1:
        return pictures[0]
    from modules import images_grid

    return images_grid.image_grid(pictures, batch_size=len(pictures), opts=opts)


def _full_allowed(model: Any, opts: Any) -> bool:
    """A VAE decode beside a job that offloads model parts would fight it for the GPU (A1111's rule)."""
    from modules import lowvram, shared

    return opts.live_preview_allow_lowvram_full or lowvram.wanted(shared.cmd_opts, model) is None


def refresh_current_image(state: Any, opts: Any, model: Any = None) -> None:
    """Update state.current_image from state.current_latent when live previews are on and the job has advanced
    show_progress_every_n_steps steps since the last preview (A1111's State.set_current_image)."""
    every = opts.show_progress_every_n_steps
    if not opts.live_previews_enable or every == -1 or state.current_latent is None:
        return
    if state.current_image is not None and state.sampling_step - state.current_image_sampling_step < every:
        return
    latent = state.current_latent
    step = state.sampling_step
    try:
        image = preview_image(latent, opts, model)
    except Exception as e:  # a preview must never break the job or the progress request
        log.warning("Live preview failed: %s", e)
        return
    state.set_current_image(image)
    state.current_image_sampling_step = step
