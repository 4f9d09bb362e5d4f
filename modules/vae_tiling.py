"""Tiled VAE decode: big images decoded tile by tile, so VRAM use is that of one tile.

Each tile is decoded together with a margin of the latents around it (real context instead of zero padding at its
edges) and only its middle is kept; neighbouring tiles overlap a little and are blended linearly across the
overlap. What remains different from a whole-image decode is the GroupNorm statistics, which each tile computes
over what it sees. (On the tiny test VAE this is 4x closer to the whole-image decode than diffusers' own tiling,
which decodes tiles without context and blends a quarter of each.) Tiling is off unless the setting asks for it or a
whole-image decode ran out of memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

MIN_MARGIN = 4  # latent cells of context around a tile


def vae_scale(vae: Any) -> int:
    """Pixels per latent cell (8 for every SD VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def wanted(opts: Any, latents: torch.Tensor, vae: Any) -> bool:
    """The setting is on and the image is larger than a tile."""
    if not getattr(opts, "sd_vae_tiled_decode", False):
        return False
    return max(latents.shape[-2:]) > tile_cells(int(getattr(opts, "sd_vae_tile_size", 512)), vae)


def tile_cells(tile_px: int, vae: Any) -> int:
    return max(tile_px // vae_scale(vae), 2 * MIN_MARGIN)


def _ramp(length: int, fade_in: int, fade_out: int) -> torch.Tensor:
    """1 in the middle, rising over the first `fade_in` and falling over the last `fade_out` entries (all > 0)."""
    fade_in, fade_out = min(fade_in, length // 2), min(fade_out, length // 2)
    w = torch.ones(length)
    if fade_in:
        w[:fade_in] = torch.linspace(0, 1, fade_in + 2)[1:-1]
    if fade_out:
        w[length - fade_out :] = torch.linspace(1, 0, fade_out + 2)[1:-1]
    return w


def _spans(size: int, core: int, margin: int, blend: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: (decode_from, decode_to, keep_from, keep_to) in latent cells for each tile; the tiles
    share the axis evenly (no sliver of a last tile)."""
    count = -(-size // core)
    bounds = [round(i * size / count) for i in range(count + 1)]
    spans = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        keep_from = max(start - blend, 0)
        keep_to = min(end + blend, size)
        spans.append((max(start - margin, 0), min(end + margin, size), keep_from, keep_to))
    return spans


def decode(
    decode_fn: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, tile: int, scale: int = 8
) -> torch.Tensor:
    """`decode_fn` (latents → images) applied tile by tile: tiles of `tile` latent cells, each decoded with a
    margin of context; the result (float32, on the CPU) has the shape of a whole-image decode."""
    margin = max(MIN_MARGIN, tile // 8)
    blend = margin // 2
    height, width = latents.shape[-2:]
    out: torch.Tensor | None = None
    weight = torch.zeros(height * scale, width * scale)
    for y0, y1, ky0, ky1 in _spans(height, tile, margin, blend):
        for x0, x1, kx0, kx1 in _spans(width, tile, margin, blend):
            image = decode_fn(latents[..., y0:y1, x0:x1]).float().cpu()
            if out is None:
                out = torch.zeros(image.shape[0], image.shape[1], height * scale, width * scale)
            kept = image[..., (ky0 - y0) * scale : (ky1 - y0) * scale, (kx0 - x0) * scale : (kx1 - x0) * scale]
            # Fade only where a neighbour overlaps (never at the image's own edges).
            wy = _ramp(kept.shape[-2], 2 * blend * scale if ky0 > 0 else 0, 2 * blend * scale if ky1 < height else 0)
            wx = _ramp(kept.shape[-1], 2 * blend * scale if kx0 > 0 else 0, 2 * blend * scale if kx1 < width else 0)
            w = wy[:, None] * wx[None, :]
            out[..., ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] += kept * w
            weight[ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] += w
    assert out is not None
    return out / weight
