"""Outpainting scripts (a1111-spec §8): "Outpainting mk2" grows the canvas one side at a time, filling the new area
with noise whose spectrum and colours follow the image before inpainting it; "Poor man's outpainting" pastes the
image on a larger canvas and inpaints the border tiles."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from modules import devices, images, images_grid, processing, script_outputs
from modules.errors import UserError
from modules.shared import opts, state

log = logging.getLogger(__name__)

DIRECTIONS = ("left", "right", "up", "down")


# -- matched noise (the idea of parlance-zz's g-diffuser) ------------------------------------------------------


def _fft2(data: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D FFT of each channel with the zero frequency in the middle."""
    axes = (0, 1)
    return np.fft.ifftshift(np.fft.fft2(np.fft.fftshift(data, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _ifft2(data: np.ndarray) -> np.ndarray:
    axes = (0, 1)
    return np.fft.ifftshift(np.fft.ifft2(np.fft.fftshift(data, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _falloff_window(rows: int, cols: int, std: float = 3.14) -> np.ndarray:
    """A low-pass window 1 / ((x² + 1)(y² + 1)) over [-1, 1] (scaled by the aspect ratio) in each direction."""
    short = min(rows, cols)
    r = (np.arange(rows) / rows * 2.0 - 1.0) * (rows / short)
    c = (np.arange(cols) / cols * 2.0 - 1.0) * (cols / short)
    return (1 / ((r[:, None] ** 2 + 1.0) * (c[None, :] ** 2 + 1.0))) ** (std / 3.14)


def match_cumulative_cdf(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Map `source` values so that their distribution matches `template`'s (histogram matching of one channel)."""
    src_values, src_index, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    tmpl_values, tmpl_counts = np.unique(template.ravel(), return_counts=True)
    src_quantiles = np.cumsum(src_counts) / source.size
    tmpl_quantiles = np.cumsum(tmpl_counts) / template.size
    return np.interp(src_quantiles, tmpl_quantiles, tmpl_values)[src_index].reshape(source.shape)


def get_matched_noise(src: np.ndarray, mask_rgb: np.ndarray, noise_q: float = 1.0,
                      color_variation: float = 0.05) -> np.ndarray:
    """Noise for the masked area of `src` (H×W×C floats in [0, 1]; mask 1 = fill) that has the image's spectrum
    (raised to `noise_q`) and colour distribution; the unmasked area keeps `src`. Deterministic (seed 0)."""
    rows, cols, channels = src.shape
    mask_grey = np.sum(mask_rgb, axis=2) / 3.0
    img_mask = mask_grey > 1e-6
    ref_mask = mask_grey < 1e-3
    if not ref_mask.any():
        raise UserError("Outpainting: nothing of the original image is left to match the new area to.")

    windowed = src * (1.0 - np.repeat(mask_grey[:, :, None], 3, axis=2))
    peak = np.max(windowed)
    if peak > 0:
        windowed /= peak
    windowed += np.average(src) * mask_rgb  # the FFT does better with the average colour than with black
    src_fft = _fft2(windowed)
    src_dist = np.absolute(src_fft)
    with np.errstate(divide="ignore", invalid="ignore"):
        src_phase = np.nan_to_num(src_fft / src_dist)

    rng = np.random.default_rng(0)
    noise_rgb = rng.random((rows, cols, channels))
    noise_grey = np.sum(noise_rgb, axis=2) / 3.0
    noise_rgb = noise_rgb * color_variation + ((1.0 - color_variation) * noise_grey)[:, :, None]
    noise_rgb = np.real(_ifft2(_fft2(noise_rgb) * _falloff_window(rows, cols)[:, :, None]))
    shaped_fft = np.absolute(_fft2(noise_rgb)) ** 2 * (src_dist ** noise_q) * src_phase

    shaped = np.real(_ifft2(shaped_fft))
    shaped -= np.min(shaped)
    top = np.max(shaped)
    if top > 0:
        shaped /= top
    if img_mask.any():
        fill, reference = shaped[img_mask, :], src[ref_mask, :]
        shaped[img_mask, :] = np.stack([match_cumulative_cdf(fill[:, c], reference[:, c]) for c in range(channels)],
                                       axis=1)
    shaped = src * (1.0 - mask_rgb) + shaped * mask_rgb
    return np.clip(shaped, 0.0, 1.0)


# -- shared geometry ----------------------------------------------------------------------------------------


def expansion(init_size: tuple[int, int], pixels: int, direction: Sequence[str]) -> tuple[int, int, int, int]:
    """(left, right, up, down) pixels added so that the canvas becomes a multiple of 64 in each direction grown;
    the rounding goes to the chosen sides in proportion."""
    unknown = [d for d in direction if d not in DIRECTIONS]
    if unknown:
        raise UserError(f"Outpainting: unknown direction {unknown[0]!r}; use {', '.join(DIRECTIONS)}.")
    width, height = init_size
    left, right, up, down = (pixels if d in direction else 0 for d in DIRECTIONS)
    target_w = math.ceil((width + left + right) / 64) * 64
    target_h = math.ceil((height + up + down) / 64) * 64
    if left > 0:
        left = left * (target_w - width) // (left + right)
    if right > 0:
        right = target_w - width - left
    if up > 0:
        up = up * (target_h - height) // (up + down)
    if down > 0:
        down = target_h - height - up
    return left, right, up, down


def _black_rectangle(image: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Mark `box` as kept (black). A box that ends before it begins marks nothing: with a strip as wide as the
    processing size the latent mask's kept area is empty (Pillow 10 refuses such boxes; A1111's Pillow 9 drew
    at most one column)."""
    if box[2] >= box[0] and box[3] >= box[1]:
        ImageDraw.Draw(image).rectangle(box, fill="black")


def _check(p: processing.StableDiffusionProcessingImg2Img, pixels: int, direction: Sequence[str]) -> None:
    if not p.init_images:
        raise UserError("Outpainting needs an init image.")
    if int(pixels) < 1:
        raise UserError(f"Outpainting: pixels to expand must be at least 1 (got {pixels}).")
    if not direction:
        raise UserError("Outpainting: choose at least one direction to expand.")


# -- Outpainting mk2 ----------------------------------------------------------------------------------------


def run_mk2(p: processing.StableDiffusionProcessingImg2Img, pixels: int = 128, mask_blur: int = 8,
            direction: Sequence[str] = DIRECTIONS, noise_q: float = 1.0, color_variation: float = 0.05
            ) -> processing.Processed:
    """Expand one side at a time (left, right, up, down): matched noise, then inpainting of the new strip at no
    more than the processing size. Every batch count starts again from the init image."""
    _check(p, pixels, direction)
    save = script_outputs.prepare(p)
    pixels, mask_blur = int(pixels), int(mask_blur)
    initial_seed_and_info: list = [None, None]
    process_width, process_height = p.width, p.height
    p.inpaint_full_res = False
    p.inpainting_fill = 1
    p.do_not_save_samples = True
    p.do_not_save_grid = True

    init_img = p.init_images[0]
    left, right, up, down = expansion(init_img.size, pixels, direction)
    mask_blur_x = mask_blur if left > 0 or right > 0 else 0
    mask_blur_y = mask_blur if up > 0 or down > 0 else 0
    p.mask_blur_x = mask_blur_x * 4
    p.mask_blur_y = mask_blur_y * 4

    def expand(init: list[Image.Image], count: int, expand_pixels: int, is_left=False, is_right=False, is_top=False,
               is_bottom=False) -> list[Image.Image]:
        is_horiz = is_left or is_right
        is_vert = is_top or is_bottom
        pixels_horiz = expand_pixels if is_horiz else 0
        pixels_vert = expand_pixels if is_vert else 0

        images_to_process = []
        output_images = []
        for n in range(count):
            res_w = init[n].width + pixels_horiz
            res_h = init[n].height + pixels_vert
            process_res_w = math.ceil(res_w / 64) * 64
            process_res_h = math.ceil(res_h / 64) * 64

            img = Image.new("RGB", (process_res_w, process_res_h))
            img.paste(init[n], (pixels_horiz if is_left else 0, pixels_vert if is_top else 0))
            mask = Image.new("RGB", (process_res_w, process_res_h), "white")
            _black_rectangle(mask, (
                expand_pixels + mask_blur_x if is_left else 0,
                expand_pixels + mask_blur_y if is_top else 0,
                mask.width - expand_pixels - mask_blur_x if is_right else res_w,
                mask.height - expand_pixels - mask_blur_y if is_bottom else res_h,
            ))

            np_image = (np.asarray(img) / 255.0).astype(np.float64)
            np_mask = (np.asarray(mask) / 255.0).astype(np.float64)
            noised = get_matched_noise(np_image, np_mask, noise_q, color_variation)
            output_images.append(Image.fromarray(np.clip(noised * 255.0, 0.0, 255.0).astype(np.uint8), mode="RGB"))

            target_width = min(process_width, init[n].width + pixels_horiz) if is_horiz else img.width
            target_height = min(process_height, init[n].height + pixels_vert) if is_vert else img.height
            p.width = target_width if is_horiz else img.width
            p.height = target_height if is_vert else img.height

            crop_region = (
                0 if is_left else output_images[n].width - target_width,
                0 if is_top else output_images[n].height - target_height,
                target_width if is_left else output_images[n].width,
                target_height if is_top else output_images[n].height,
            )
            mask = mask.crop(crop_region)
            p.image_mask = mask
            images_to_process.append(output_images[n].crop(crop_region))

        p.init_images = images_to_process
        latent_mask = Image.new("RGB", (p.width, p.height), "white")
        _black_rectangle(latent_mask, (
            expand_pixels + mask_blur_x * 2 if is_left else 0,
            expand_pixels + mask_blur_y * 2 if is_top else 0,
            mask.width - expand_pixels - mask_blur_x * 2 if is_right else res_w,
            mask.height - expand_pixels - mask_blur_y * 2 if is_bottom else res_h,
        ))
        p.latent_mask = latent_mask

        proc = processing.process_images(p)
        if initial_seed_and_info[0] is None:
            initial_seed_and_info[0] = proc.seed
            initial_seed_and_info[1] = proc.info
        for n in range(count):
            drawn = proc.images[n]
            output_images[n].paste(drawn, (0 if is_left else output_images[n].width - drawn.width,
                                           0 if is_top else output_images[n].height - drawn.height))
            output_images[n] = output_images[n].crop((0, 0, res_w, res_h))
        return output_images

    batch_count = p.n_iter
    batch_size = p.batch_size
    p.n_iter = 1
    state.job_count = batch_count * sum(1 for side in (left, right, up, down) if side > 0)
    all_processed_images = []
    for i in range(batch_count):
        imgs = [init_img] * batch_size
        state.job = f"Batch {i + 1} out of {batch_count}"
        if left > 0:
            imgs = expand(imgs, batch_size, left, is_left=True)
        if right > 0:
            imgs = expand(imgs, batch_size, right, is_right=True)
        if up > 0:
            imgs = expand(imgs, batch_size, up, is_top=True)
        if down > 0:
            imgs = expand(imgs, batch_size, down, is_bottom=True)
        all_processed_images += imgs
        if state.interrupted or state.stopping_generation:
            break

    return _finish(p, save, all_processed_images, *initial_seed_and_info)


def _finish(p, save: script_outputs.SaveWishes, results: list[Image.Image], seed, info) -> processing.Processed:
    """Save the results (the passes themselves saved nothing) and add a grid as A1111 does."""
    all_images = list(results)
    grid = images_grid.image_grid(results) if results else None
    unwanted_grid = len(results) < 2 and opts.grid_only_if_multiple
    if grid is not None and opts.return_grid and not unwanted_grid:
        all_images = [grid, *results]
    res = processing.Processed(p, all_images, seed if seed is not None else -1, info or "")
    if save.samples:
        for img in results:
            images.save_image(img, p.outpath_samples, "", res.seed, p.prompt, opts.samples_format, info=res.info,
                              p=p)
    if grid is not None and save.grid and not unwanted_grid:
        images.save_image(grid, p.outpath_grids, "grid", res.seed, p.prompt, opts.grid_format, info=res.info,
                          short_filename=not opts.grid_extended_filename, grid=True, p=p)
    return res


# -- Poor man's outpainting ---------------------------------------------------------------------------------


def run_poor_mans(p: processing.StableDiffusionProcessingImg2Img, pixels: int = 128, mask_blur: int = 4,
                  inpainting_fill: int = 0, direction: Sequence[str] = DIRECTIONS) -> processing.Processed:
    """Paste the image on a canvas grown by `pixels` (rounded up to multiples of 64), cut it into tiles of the
    processing size overlapping by `pixels`, inpaint every tile that touches the new border, and blend the tiles
    back together. One result image."""
    _check(p, pixels, direction)
    save = script_outputs.prepare(p)
    pixels, mask_blur = int(pixels), int(mask_blur)
    if pixels >= min(p.width, p.height):
        raise UserError(f"Poor man's outpainting: pixels to expand ({pixels}) must be smaller than the tile size "
                        f"{p.width}x{p.height} (the width and height sliders).")
    p.mask_blur = mask_blur * 2
    p.inpainting_fill = int(inpainting_fill)
    p.inpaint_full_res = False

    init_img = p.init_images[0]
    left, right, up, down = expansion(init_img.size, pixels, direction)
    # Like A1111, the canvas is rounded up to multiples of 64 also in a direction that does not grow (the extra
    # strip stays black and is not inpainted).
    img = Image.new("RGB", (math.ceil((init_img.width + left + right) / 64) * 64,
                            math.ceil((init_img.height + up + down) / 64) * 64))
    img.paste(init_img, (left, up))

    def border_mask(inset: int) -> Image.Image:
        mask = Image.new("L", (img.width, img.height), "white")
        _black_rectangle(mask, (
            left + (inset if left > 0 else 0),
            up + (inset if up > 0 else 0),
            mask.width - right - (inset if right > 0 else 0),
            mask.height - down - (inset if down > 0 else 0),
        ))
        return mask

    mask = border_mask(mask_blur * 2)
    latent_mask = border_mask(mask_blur // 2)
    devices.torch_gc()

    grid = images_grid.split_grid(img, tile_w=p.width, tile_h=p.height, overlap=pixels)
    grid_mask = images_grid.split_grid(mask, tile_w=p.width, tile_h=p.height, overlap=pixels)
    grid_latent_mask = images_grid.split_grid(latent_mask, tile_w=p.width, tile_h=p.height, overlap=pixels)
    p.n_iter = 1
    p.batch_size = 1
    p.do_not_save_grid = True
    p.do_not_save_samples = True

    def inside(x: int, w: int, y: int, h: int) -> bool:
        return x >= left and x + w <= img.width - right and y >= up and y + h <= img.height - down

    work = []
    for (y, h, row), (_, _, row_mask), (_, _, row_latent) in zip(grid.tiles, grid_mask.tiles, grid_latent_mask.tiles,
                                                                strict=True):
        for tile, tile_mask, tile_latent in zip(row, row_mask, row_latent, strict=True):
            if not inside(tile[0], tile[1], y, h):
                work.append((tile[2], tile_mask[2], tile_latent[2]))
    log.info("Poor man's outpainting will process a total of %d images tiled as %dx%d.", len(work),
             len(grid.tiles[0][2]), len(grid.tiles))

    state.job_count = len(work)
    initial_seed = None
    initial_info = None
    work_results = []
    for i, (tile, tile_mask, tile_latent) in enumerate(work):
        p.init_images = [tile]
        p.image_mask = tile_mask
        p.latent_mask = tile_latent
        state.job = f"Batch {i + 1} out of {len(work)}"
        processed = processing.process_images(p)
        if initial_seed is None:
            initial_seed = processed.seed
            initial_info = processed.info
        p.seed = processed.seed + 1
        work_results += processed.images
        if state.interrupted or state.stopping_generation:
            break

    index = 0
    for y, h, row in grid.tiles:
        for tiledata in row:
            if inside(tiledata[0], tiledata[1], y, h):
                continue
            blank = Image.new("RGB", (p.width, p.height))
            tiledata[2] = work_results[index] if index < len(work_results) else blank
            index += 1

    combined_image = images_grid.combine_grid(grid)
    if save.samples:
        images.save_image(combined_image, p.outpath_samples, "", initial_seed, p.prompt, opts.samples_format,
                          info=initial_info, p=p)
    return processing.Processed(p, [combined_image], initial_seed if initial_seed is not None else -1,
                                initial_info or "")
