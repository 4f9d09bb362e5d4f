"""img2img from the UI's point of view: the image and mask for each source tab, the processing object, and
batch processing of a folder (a1111-spec §1.3).

The UI builds `StableDiffusionProcessingImg2Img` with `create_processing` from the image/mask that
`image_and_mask` derives for the selected tab, then runs it with `img2img`; the Batch tab uses `process_batch`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from modules import images, images_ops, infotext_utils, masking, processing, sd_models, shared, txt2img
from modules.errors import UserError
from modules.shared import opts, state

log = logging.getLogger(__name__)

# The source tabs (A1111's mode numbers)
MODE_IMG2IMG, MODE_SKETCH, MODE_INPAINT, MODE_INPAINT_SKETCH, MODE_INPAINT_UPLOAD, MODE_BATCH = range(6)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
PNG_INFO_PROPS = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps", "Model hash")


def image_and_mask(mode: int, init_img: Image.Image | None = None, sketch: Image.Image | None = None,
                   sketch_strokes: Image.Image | None = None, init_img_with_mask: Image.Image | None = None,
                   drawn_mask: Image.Image | None = None, inpaint_color_sketch: Image.Image | None = None,
                   inpaint_color_sketch_orig: Image.Image | None = None, init_img_inpaint: Image.Image | None = None,
                   init_mask_inpaint: Image.Image | None = None, mask_blur: float = 4,
                   mask_alpha: float = 0) -> tuple[Image.Image | None, Image.Image | None]:
    """(init image, mask or None) for a source tab:

    - img2img: the image; sketch: the image with the coloured strokes painted on (`sketch` may already be that
      composite, or give `sketch_strokes` as a separate RGBA layer);
    - inpaint: the image and the drawn mask, binarised (alpha > 128, or luminance for an opaque mask);
    - inpaint sketch: the mask is every pixel the strokes changed (mask transparency `mask_alpha` in percent);
    - inpaint upload: the image and the uploaded mask as they are.
    """
    mask = None
    if mode == MODE_IMG2IMG:
        image = init_img
    elif mode == MODE_SKETCH:
        image = masking.sketch_image(sketch, sketch_strokes) if sketch is not None else None
    elif mode == MODE_INPAINT:
        image = init_img_with_mask
        mask = masking.create_binary_mask(drawn_mask) if drawn_mask is not None else None
    elif mode == MODE_INPAINT_SKETCH:
        orig = inpaint_color_sketch_orig or inpaint_color_sketch
        image = inpaint_color_sketch
        if image is not None:
            image, mask = masking.inpaint_sketch(orig, image, mask_alpha, mask_blur)
    elif mode == MODE_INPAINT_UPLOAD:
        image, mask = init_img_inpaint, init_mask_inpaint
    else:
        raise UserError(f"Unknown img2img mode {mode!r}: use 0 img2img, 1 sketch, 2 inpaint, 3 inpaint sketch or "
                        "4 inpaint upload (batch has its own function).")
    if image is None:
        raise UserError("No init image: upload or draw an image first.")
    return images_ops.fix_image(image), images_ops.fix_image(mask)


def scaled_size(image: Image.Image, scale_by: float) -> tuple[int, int]:
    """The "Resize by" tab's target size: the image's size times `scale_by`."""
    return int(image.width * scale_by), int(image.height * scale_by)


def create_processing(prompt: str, negative_prompt: str, init_images: list[Image.Image], mask: Image.Image | None,
                      steps: int, sampler_name: str, scheduler: str, width: int, height: int, n_iter: int,
                      batch_size: int, cfg_scale: float, denoising_strength: float, seed: int,
                      styles: list[str] | None = None, **kwargs: Any) -> processing.StableDiffusionProcessingImg2Img:
    """An img2img processing object with the UI's output folders; other fields (resize_mode, mask_blur,
    inpainting_fill, inpaint_full_res, inpaint_full_res_padding, inpainting_mask_invert, image_cfg_scale...)
    pass through `kwargs`."""
    return processing.StableDiffusionProcessingImg2Img(
        **txt2img.common_fields("img2img", prompt, negative_prompt, steps, sampler_name, scheduler, width, height,
                                n_iter, batch_size, cfg_scale, seed, styles),
        init_images=init_images,
        mask=mask,
        denoising_strength=float(denoising_strength),
        **kwargs,
    )


def img2img(p: processing.StableDiffusionProcessingImg2Img) -> tuple[list[Image.Image], str, str, str]:
    """Run and return (images incl. extra result images, generation_info JSON, info HTML, comments HTML).

    A script selected in the Script dropdown replaces processing with its run() (as in txt2img)."""
    processed = txt2img.run_selected_script(p)
    shared.total_tqdm = None
    shown = [] if opts.do_not_show_images else processed.images + processed.extra_images
    return shown, processed.js(), txt2img.plaintext_to_html(processed.info), txt2img.plaintext_to_html(
        processed.comments, classname="comments")


def _find_mask(image_path: Path, masks: list[str], mask_dir: str) -> str | None:
    """The mask for an image: the only mask in the folder, or the one with the image's file stem."""
    if len(masks) == 1:
        return masks[0]
    found = sorted(Path(mask_dir).glob(f"{image_path.stem}.*"))
    return str(found[0]) if found else None


def _apply_png_info(p: processing.StableDiffusionProcessingImg2Img, defaults: dict[str, Any], info_image: Image.Image,
                    props: Iterable[str], model_override: Any) -> None:
    """Take the chosen fields of an image's infotext: the prompts are appended to the batch's, the others
    replace them; a known model hash selects that checkpoint."""
    try:
        geninfo, _ = images.read_info_from_image(info_image)
        parsed = infotext_utils.parse_generation_parameters(geninfo or "")
        parsed = {k: v for k, v in parsed.items() if k in props}
    except (ValueError, TypeError) as e:
        log.warning("Could not read the PNG info: %s", e)
        parsed = {}
    p.prompt = defaults["prompt"] + (" " + parsed["Prompt"] if "Prompt" in parsed else "")
    p.negative_prompt = defaults["negative_prompt"] + (
        " " + parsed["Negative prompt"] if "Negative prompt" in parsed else "")
    p.seed = int(parsed.get("Seed", defaults["seed"]))
    p.cfg_scale = float(parsed.get("CFG scale", defaults["cfg_scale"]))
    p.sampler_name = parsed.get("Sampler", defaults["sampler_name"])
    p.steps = int(parsed.get("Steps", defaults["steps"]))
    model_info = sd_models.get_closet_checkpoint_match(parsed["Model hash"]) if "Model hash" in parsed else None
    if model_info is not None:
        p.override_settings["sd_model_checkpoint"] = model_info.name
    elif model_override is not None:
        p.override_settings["sd_model_checkpoint"] = model_override.name
    else:
        p.override_settings.pop("sd_model_checkpoint", None)


def list_images(folder: str) -> list[str]:
    """Image files in `folder` and its subfolders, sorted."""
    if not folder or not os.path.isdir(folder):
        raise UserError(f"Input directory {folder!r} not found; give a folder with images.")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def process_batch(p: processing.StableDiffusionProcessingImg2Img, input_dir: str | list[str], output_dir: str,
                  inpaint_mask_dir: str = "", to_scale: bool = False, scale_by: float = 1.0,
                  use_png_info: bool = False, png_info_props: Iterable[str] | None = None, png_info_dir: str = "",
                  run: Callable[[processing.StableDiffusionProcessingImg2Img], processing.Processed] | None = None,
                  ) -> processing.Processed | None:
    """img2img every image of `input_dir` (a folder, or a list of file paths for the Upload tab) with the
    settings of `p`: masks from `inpaint_mask_dir` (one mask for all, or one per image by file stem; images
    without one are skipped), results saved into `output_dir` named after the input (else the usual folder),
    optionally taking prompt/seed/... from each image's PNG info (`png_info_props`, from `png_info_dir` when
    given). `run` replaces process_images (e.g. a selected script). Returns the shown results (at most
    img2img_batch_show_results_limit images), or None if nothing was processed."""
    output_dir = (output_dir or "").strip()
    processing.fix_seed(p)
    batch_images = list_images(input_dir) if isinstance(input_dir, str) else [os.path.abspath(x) for x in input_dir]

    masks: list[str] = []
    if inpaint_mask_dir:
        masks = list_images(inpaint_mask_dir)
        if masks:
            log.info("Inpaint batch is enabled. %d masks found.", len(masks))
    log.info("Will process %d images, creating %d new images for each.", len(batch_images), p.n_iter * p.batch_size)
    state.job_count = len(batch_images) * p.n_iter

    defaults = {"prompt": p.prompt, "negative_prompt": p.negative_prompt, "seed": p.seed, "cfg_scale": p.cfg_scale,
                "sampler_name": p.sampler_name, "steps": p.steps}
    model_override = sd_models.get_closet_checkpoint_match(p.override_settings.get("sd_model_checkpoint") or "")
    props = set(png_info_props if png_info_props is not None else PNG_INFO_PROPS)
    limit = int(opts.img2img_batch_show_results_limit)
    results: processing.Processed | None = None
    for i, path in enumerate(batch_images):
        state.job = f"{i + 1} out of {len(batch_images)}"
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        try:
            img = images.read(path)
        except UserError as e:
            log.warning("Skipping %s", e)
            continue
        if to_scale:
            p.width, p.height = scaled_size(img, scale_by)
        p.init_images = [img] * p.batch_size

        image_path = Path(path)
        if masks:
            mask_path = _find_mask(image_path, masks, inpaint_mask_dir)
            if mask_path is None:
                log.warning("Mask is not found for %s in %s. Skipping it.", image_path, inpaint_mask_dir)
                continue
            p.image_mask = images.read(mask_path)

        if use_png_info:
            info_image = img
            if png_info_dir:
                info_path = os.path.join(png_info_dir, os.path.basename(path))
                try:
                    info_image = images.read(info_path)
                except UserError as e:
                    log.warning("No PNG info for %s: %s", path, e)
            _apply_png_info(p, defaults, info_image, props, model_override)

        if output_dir:
            p.outpath_samples = output_dir
            p.override_settings["save_to_dirs"] = False
            pattern = f"{image_path.stem}-[generation_number]" if p.n_iter > 1 or p.batch_size > 1 else image_path.stem
            p.override_settings["samples_filename_pattern"] = pattern

        processed = (run or processing.process_images)(p)
        if processed is None:
            continue
        if results is None:
            results = processed
        elif len(results.images) < limit or limit < 0:
            results.images.extend(processed.images)
            results.infotexts.extend(processed.infotexts)
        if 0 <= limit < len(results.images):
            results.images = results.images[:limit]
            results.infotexts = results.infotexts[:limit]
    return results

