"""Prompt matrix: every combination of the `|`-separated parts of a prompt, in one annotated grid (a1111-spec §8).

`a cat|in a hat|on a mat` → "a cat", "a cat, in a hat", "a cat, on a mat", "a cat, in a hat, on a mat": the first
part is always present, each later part is on or off (2^(n-1) images, part k on when bit k of the image number is
set). The grid has the first half of the optional parts across and the rest down.
"""

from __future__ import annotations

import logging
import math

from modules import images, images_grid, processing, script_outputs
from modules.errors import UserError
from modules.shared import opts

log = logging.getLogger(__name__)

MAX_PARTS = 13  # 4096 images


def combinations(prompt: str, put_at_start: bool = False, delimiter: str = ", ") -> list[str]:
    """The prompts of the matrix, in A1111's order (image i has optional part k when bit k of i is set)."""
    parts = prompt.split("|")
    if len(parts) > MAX_PARTS:
        raise UserError(f"Prompt matrix: {len(parts) - 1} variable parts would make {2 ** (len(parts) - 1)} images; "
                        f"use at most {MAX_PARTS - 1}.")
    prompts = []
    for number in range(2 ** (len(parts) - 1)):
        selected = [text.strip().strip(",") for n, text in enumerate(parts[1:]) if number & (1 << n)]
        selected = [*selected, parts[0]] if put_at_start else [parts[0], *selected]
        prompts.append(delimiter.join(selected))
    return prompts


def run(p: processing.StableDiffusionProcessing, put_at_start: bool = False, different_seeds: bool = False,
        prompt_type: str = "positive", variations_delimiter: str = "comma", margin_size: int = 0
        ) -> processing.Processed:
    """Generate every combination (batched by p.batch_size) and put the annotated grid first."""
    save = script_outputs.prepare(p)
    processing.fix_seed(p)
    if prompt_type not in ("positive", "negative"):
        raise UserError(f"Prompt matrix: unknown prompt type {prompt_type!r}; use 'positive' or 'negative'.")
    if variations_delimiter not in ("comma", "space"):
        raise UserError(f"Prompt matrix: unknown joining character {variations_delimiter!r}; use 'comma' or 'space'.")

    prompt = p.prompt if prompt_type == "positive" else p.negative_prompt
    original_prompt = prompt[0] if isinstance(prompt, list) else prompt
    positive_prompt = p.prompt[0] if isinstance(p.prompt, list) else p.prompt
    parts = original_prompt.split("|")
    all_prompts = combinations(original_prompt, put_at_start, ", " if variations_delimiter == "comma" else " ")

    p.n_iter = math.ceil(len(all_prompts) / p.batch_size)
    p.do_not_save_grid = True
    log.info("Prompt matrix will create %d images using a total of %d batches.", len(all_prompts), p.n_iter)
    if prompt_type == "positive":
        p.prompt = all_prompts
    else:
        p.negative_prompt = all_prompts
    p.seed = [p.seed + (i if different_seeds else 0) for i in range(len(all_prompts))]
    p.prompt_for_display = positive_prompt
    processed = processing.process_images(p)
    if len(processed.images) != len(all_prompts):  # interrupted: no complete matrix to label
        return processed

    grid = images_grid.image_grid(processed.images, p.batch_size, rows=1 << ((len(parts) - 1) // 2))
    grid = images_grid.draw_prompt_matrix(grid, processed.images[0].width, processed.images[0].height, parts,
                                          int(margin_size or 0))
    processed.images.insert(0, grid)
    processed.index_of_first_image = 1
    processed.infotexts.insert(0, processed.infotexts[0])
    if save.grid:
        images.save_image(processed.images[0], p.outpath_grids, "prompt_matrix", extension=opts.grid_format,
                          prompt=original_prompt, seed=processed.seed, grid=True, p=p)
    return processed
