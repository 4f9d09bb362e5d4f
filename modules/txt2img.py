"""txt2img from UI arguments: build the processing object, run it, return images and infotext."""

from __future__ import annotations

import html
from typing import Any

from modules import processing, shared
from modules.shared import opts


def create_processing(
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler_name: str,
    scheduler: str,
    width: int,
    height: int,
    n_iter: int,
    batch_size: int,
    cfg_scale: float,
    seed: int,
    styles: list[str] | None = None,
    **kwargs: Any,
) -> processing.StableDiffusionProcessingTxt2Img:
    return processing.StableDiffusionProcessingTxt2Img(
        outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        prompt=prompt,
        negative_prompt=negative_prompt,
        styles=styles or [],
        sampler_name=sampler_name,
        scheduler=scheduler,
        batch_size=int(batch_size),
        n_iter=int(n_iter),
        steps=int(steps),
        cfg_scale=float(cfg_scale),
        width=int(width),
        height=int(height),
        seed=int(seed) if seed not in (None, "") else -1,
        **kwargs,
    )


def txt2img(p: processing.StableDiffusionProcessingTxt2Img) -> tuple[list, str, str]:
    """Run and return (images, generation_info JSON, info HTML) as A1111's UI does.

    A script selected in the Script dropdown replaces processing with its run(); otherwise process_images runs
    (with the always-on scripts' hooks when p.scripts is set).
    """
    processed = p.scripts.run(p, *p.script_args) if p.scripts is not None else None
    if processed is None:
        processed = processing.process_images(p)
    shared.total_tqdm = None
    generation_info = processed.js()
    images = [] if opts.do_not_show_images else processed.images
    return images, generation_info, plaintext_to_html(processed.info)


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    content = "<br>\n".join(html.escape(x) for x in text.split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"
