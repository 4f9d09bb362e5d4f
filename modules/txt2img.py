"""txt2img from UI arguments: build the processing object, run it, return images and infotext."""

from __future__ import annotations

import html
from typing import Any

from modules import processing, shared
from modules.shared import opts


def common_fields(tab: str, prompt: str, negative_prompt: str, steps: int, sampler_name: str, scheduler: str,
                  width: int, height: int, n_iter: int, batch_size: int, cfg_scale: float, seed: int,
                  styles: list[str] | None) -> dict[str, Any]:
    """The processing fields txt2img and img2img share, from UI values; `tab` ("txt2img" or "img2img") picks the
    output folders."""
    return dict(
        outpath_samples=opts.outdir_samples or getattr(opts, f"outdir_{tab}_samples"),
        outpath_grids=opts.outdir_grids or getattr(opts, f"outdir_{tab}_grids"),
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
    )


def create_processing(prompt: str, negative_prompt: str, steps: int, sampler_name: str, scheduler: str, width: int,
                      height: int, n_iter: int, batch_size: int, cfg_scale: float, seed: int,
                      styles: list[str] | None = None, **kwargs: Any) -> processing.StableDiffusionProcessingTxt2Img:
    return processing.StableDiffusionProcessingTxt2Img(
        **common_fields("txt2img", prompt, negative_prompt, steps, sampler_name, scheduler, width, height, n_iter,
                        batch_size, cfg_scale, seed, styles),
        **kwargs,
    )


def run_selected_script(p: processing.StableDiffusionProcessing) -> processing.Processed:
    """The selected script's run(), or process_images when none is selected (or it returns nothing); always-on
    scripts' hooks run inside process_images when p.scripts is set."""
    processed = p.scripts.run(p, *p.script_args) if p.scripts is not None else None
    return processed if processed is not None else processing.process_images(p)


def txt2img(p: processing.StableDiffusionProcessingTxt2Img) -> tuple[list, str, str]:
    """Run and return (images, generation_info JSON, info HTML) as A1111's UI does."""
    processed = run_selected_script(p)
    shared.total_tqdm = None
    generation_info = processed.js()
    images = [] if opts.do_not_show_images else processed.images
    return images, generation_info, plaintext_to_html(processed.info)


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """Text as HTML paragraphs with line breaks (A1111's helper; also `ui_common.plaintext_to_html`)."""
    content = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"
