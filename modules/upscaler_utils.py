"""Running an upscaling network over a PIL image, whole or in overlapping tiles (settings ESRGAN_tile and
ESRGAN_tile_overlap). As A1111, networks get BGR input in [0, 1] and outputs are rounded to 8 bits per tile."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from modules import images_grid
from modules.shared import opts, state

log = logging.getLogger(__name__)


def pil_image_to_torch_bgr(img: Image.Image) -> torch.Tensor:
    """RGB image → (3, H, W) BGR tensor in [0, 1]."""
    arr = np.asarray(img.convert("RGB"))[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(np.transpose(arr, (2, 0, 1))) / 255)


def torch_bgr_to_pil_image(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) BGR tensor in [0, 1] → RGB image (clamped, rounded)."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"{tuple(tensor.shape)} is not a single image")
        tensor = tensor[0]
    arr = tensor.float().cpu().clamp_(0, 1).numpy()
    arr = np.moveaxis(255.0 * arr, 0, 2).round().astype(np.uint8)[:, :, ::-1]
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def upscale_pil_patch(model: Callable[[torch.Tensor], torch.Tensor], img: Image.Image) -> Image.Image:
    """Run the network over one image (or tile)."""
    param = next(model.parameters())
    with torch.inference_mode():
        tensor = pil_image_to_torch_bgr(img).unsqueeze(0).to(device=param.device, dtype=param.dtype)
        return torch_bgr_to_pil_image(model(tensor))


def upscale_with_model(model: Callable[[torch.Tensor], torch.Tensor], img: Image.Image, *, tile_size: int,
                       tile_overlap: int = 0, desc: str = "tiled upscale") -> Image.Image:
    """Upscale `img` by the network's factor, in tile_size×tile_size tiles blended over `tile_overlap` pixels
    (tile_size 0: the whole image at once). An interrupted job returns the input unchanged."""
    if tile_size <= 0:
        return upscale_pil_patch(model, img)
    overlap = min(tile_overlap, tile_size - 1)
    grid = images_grid.split_grid(img, tile_size, tile_size, overlap)
    new_tiles = []
    scale_factor = 1
    with tqdm(total=sum(len(row) for _, _, row in grid.tiles), desc=desc,
              disable=not opts.enable_upscale_progressbar) as progress:
        for y, h, row in grid.tiles:
            new_row = []
            for x, w, tile in row:
                if state.interrupted:
                    return img
                output = upscale_pil_patch(model, tile)
                scale_factor = output.width // tile.width
                new_row.append([x * scale_factor, w * scale_factor, output])
                progress.update(1)
            new_tiles.append([y * scale_factor, h * scale_factor, new_row])
    new_grid = images_grid.Grid(new_tiles, tile_w=grid.tile_w * scale_factor, tile_h=grid.tile_h * scale_factor,
                                image_w=grid.image_w * scale_factor, image_h=grid.image_h * scale_factor,
                                overlap=grid.overlap * scale_factor)
    return images_grid.combine_grid(new_grid)
