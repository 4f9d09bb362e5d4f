"""SD upscale: enlarge the init image with an upscaler, then re-draw it tile by tile with img2img at the
processing size (p.width × p.height), tiles overlapping by `overlap` pixels and blended back together
(a1111-spec §8). The "SD upscale" script (args: info, overlap, upscaler name or index, scale factor) wraps
`sd_upscale`.
"""

from __future__ import annotations

import logging
import math

from PIL import Image

from modules import devices, images, images_grid, processing, script_outputs, upscaler
from modules.errors import UserError
from modules.shared import opts, state

log = logging.getLogger(__name__)


def sd_upscale(p: processing.StableDiffusionProcessingImg2Img, overlap: int, upscaler_name_or_index: str | int,
               scale_factor: float) -> processing.Processed:
    """Run SD upscale on `p.init_images[0]`; one upscaled image per batch count (p.n_iter), each from seed + n.

    Tiles are processed `p.batch_size` at a time; with samples_save on, each result is saved with the infotext
    of its first tile (infotext keys "SD upscale overlap", "SD upscale upscaler").
    """
    if not p.init_images:
        raise UserError("SD upscale needs an init image.")
    if not scale_factor > 0:
        raise UserError(f"SD upscale scale factor must be greater than 0 (got {scale_factor}).")
    overlap = int(overlap)
    if not 0 <= overlap < min(p.width, p.height):
        raise UserError(f"SD upscale tile overlap must be between 0 and the tile size {p.width}x{p.height} "
                        f"(got {overlap}).")
    save = script_outputs.prepare(p)
    processing.fix_seed(p)
    data = upscaler.upscaler_by_name_or_index(upscaler_name_or_index)
    p.extra_generation_params["SD upscale overlap"] = overlap
    p.extra_generation_params["SD upscale upscaler"] = data.name

    init_img = images.flatten(p.init_images[0], opts.img2img_background_color)
    img = data.scaler.upscale(init_img, scale_factor, data.data_path) if data.name != "None" else init_img
    devices.torch_gc()

    grid = images_grid.split_grid(img, tile_w=p.width, tile_h=p.height, overlap=overlap)
    batch_size = p.batch_size
    upscale_count = p.n_iter
    p.n_iter = 1
    p.do_not_save_grid = True
    p.do_not_save_samples = True

    work = [tile for _, _, row in grid.tiles for _, _, tile in row]
    batch_count = math.ceil(len(work) / batch_size)
    state.job_count = batch_count * upscale_count
    log.info("SD upscaling will process a total of %d images tiled as %dx%d per upscale in a total of %d batches.",
             len(work), len(grid.tiles[0][2]), len(grid.tiles), state.job_count)

    seed = p.seed
    initial_info = None
    result_images = []
    for n in range(upscale_count):
        start_seed = seed + n
        p.seed = start_seed
        work_results: list[Image.Image] = []
        for i in range(batch_count):
            p.batch_size = batch_size
            p.init_images = work[i * batch_size:(i + 1) * batch_size]
            state.job = f"Batch {i + 1 + n * batch_count} out of {state.job_count}"
            processed = processing.process_images(p)
            if initial_info is None:
                initial_info = processed.info
            p.seed = processed.seed + 1
            work_results += processed.images
            if state.interrupted:
                break

        index = 0
        for _, _, row in grid.tiles:
            for tiledata in row:
                blank = Image.new("RGB", (p.width, p.height))
                tiledata[2] = work_results[index] if index < len(work_results) else blank
                index += 1
        combined_image = images_grid.combine_grid(grid)
        result_images.append(combined_image)
        if save.samples:
            images.save_image(combined_image, p.outpath_samples, "", start_seed, p.prompt, opts.samples_format,
                              info=initial_info, p=p)
        if state.interrupted:
            break

    return processing.Processed(p, result_images, seed, initial_info or "")
