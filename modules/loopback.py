"""Loopback: img2img repeatedly, each output the next input, the denoising strength moving from its starting value
to a final one along a curve (a1111-spec §8)."""

from __future__ import annotations

import math

from modules import images, images_grid, processing, script_outputs
from modules.errors import UserError
from modules.shared import opts, state

CURVES = ("Aggressive", "Linear", "Lazy")


def denoising_strength(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """Strength for loop number `loop` (0 = the first): initial → final, eased by the curve."""
    if loops == 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        eased = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        eased = 1 - math.cos(progress * math.pi * 0.5)
    else:
        eased = progress
    return initial + (final - initial) * eased


def run(p: processing.StableDiffusionProcessingImg2Img, loops: int = 4, final_denoising_strength: float = 0.5,
        denoising_curve: str = "Linear", append_interrogation: str = "None") -> processing.Processed:
    """One chain of `loops` passes per batch count; with one chain every pass is returned, else each chain's last.
    The grid (when wanted) shows what is returned, in one row."""
    if not p.init_images:
        raise UserError("Loopback needs an init image.")
    if denoising_curve not in CURVES:
        raise UserError(f"Loopback: unknown denoising strength curve {denoising_curve!r}; use one of "
                        f"{', '.join(CURVES)}.")
    if append_interrogation not in (None, "", "None"):
        raise UserError(f"Loopback: appending an interrogated prompt ({append_interrogation}) is not available: "
                        "this program has no CLIP or DeepBooru interrogator. Choose None.")
    loops = int(loops)
    if loops < 1:
        raise UserError(f"Loopback: the number of loops must be at least 1 (got {loops}).")

    save = script_outputs.prepare(p)
    processing.fix_seed(p)
    batch_count = p.n_iter
    p.extra_generation_params = {
        "Final denoising strength": final_denoising_strength,
        "Denoising curve": denoising_curve,
    }
    p.batch_size = 1
    p.n_iter = 1

    initial_seed = None
    initial_info = None
    initial_strength = p.denoising_strength
    original_init_images = p.init_images
    original_inpainting_fill = p.inpainting_fill
    state.job_count = loops * batch_count
    initial_color_corrections = [processing.setup_color_correction(p.init_images[0])]

    history = []
    for n in range(batch_count):
        p.init_images = original_init_images
        p.denoising_strength = initial_strength
        last_image = None
        for i in range(loops):
            p.n_iter = 1
            p.batch_size = 1
            p.do_not_save_grid = True
            if opts.img2img_color_correction:
                p.color_corrections = initial_color_corrections
            state.job = f"Iteration {i + 1}/{loops}, batch {n + 1}/{batch_count}"
            processed = processing.process_images(p)
            if state.interrupted or state.stopping_generation:
                break
            if initial_seed is None:
                initial_seed = processed.seed
                initial_info = processed.info
            p.seed = processed.seed + 1
            p.denoising_strength = denoising_strength(i + 1, loops, initial_strength, final_denoising_strength,
                                                      denoising_curve)
            if state.skipped:
                break
            last_image = processed.images[0]
            p.init_images = [last_image]
            p.inpainting_fill = 1  # later loops keep the masked area's content ("original")
            if batch_count == 1:
                history.append(last_image)
        if batch_count > 1 and not state.skipped and not state.interrupted and last_image is not None:
            history.append(last_image)
        p.inpainting_fill = original_inpainting_fill
        if state.interrupted or state.stopping_generation:
            break

    grids = []
    if len(history) > 1:
        grid = images_grid.image_grid(history, rows=1)
        if save.grid:
            images.save_image(grid, p.outpath_grids, "grid", initial_seed, p.prompt, opts.grid_format,
                              info=initial_info, short_filename=not opts.grid_extended_filename, grid=True, p=p)
        if opts.return_grid:
            grids.append(grid)
    return processing.Processed(p, grids + history, initial_seed if initial_seed is not None else -1,
                                initial_info or "")
