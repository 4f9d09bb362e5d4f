"""The Extras tab's work: upscale existing images (single image, a batch, or a folder), run the extensions'
postprocessing scripts on them, and save them with their generation parameters kept (a1111-spec §1.5, §10
ExtrasBase).

The Upscale operation: "scale by" a factor (optionally limited to a maximum side length) or "scale to" a size
(cover it, then optionally crop to it); upscaler 1, and upscaler 2 blended in with a visibility. Results are
saved to outputs/extras-images (setting outdir_extras_samples) with a PNG `postprocessing` text
("Postprocess upscale by: 4, Postprocess upscaler: R-ESRGAN 4x+") and the image's original `parameters`.
Face restoration (GFPGAN / CodeFormer) is not provided: its visibility fields are accepted and ignored.

After the built-in Upscale, `scripts.scripts_postproc` (the `ScriptPostprocessing` subclasses of scripts/*.py)
runs on each image: their `pp.info` entries join the `postprocessing` text, and every extra image they add is
saved too, with its nametags as file-name suffix; `pp.caption` is written to a .txt file beside the image
(setting postprocessing_existing_caption_action).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules import (
    devices,
    fileio,
    images,
    images_ops,
    infotext_utils,
    paths_internal,
    scripts,
    scripts_postprocessing,
    shared,
    upscaler,
)
from modules.errors import UserError
from modules.shared import opts, state

log = logging.getLogger(__name__)


@dataclass
class UpscaleArgs:
    """The Upscale operation's controls (names of A1111's postprocessing_upscale script arguments)."""

    upscale_enabled: bool = True
    upscale_mode: int = 0  # 0: scale by upscale_by, 1: scale to upscale_to_width × upscale_to_height
    upscale_by: float = 2.0
    max_side_length: int = 0
    upscale_to_width: int = 512
    upscale_to_height: int = 512
    upscale_crop: bool = True
    upscaler_1_name: str | None = "None"
    upscaler_2_name: str | None = "None"
    upscaler_2_visibility: float = 0.0


@dataclass
class ExtrasResult:
    """One processed image, its `postprocessing` text and where it was saved (None when not saved)."""

    image: Image.Image
    info: dict[str, Any] = field(default_factory=dict)
    infotext: str = ""
    filename: str | None = None


def limit_size_by_one_dimension(w: float, h: float, limit: int) -> tuple[int, int]:
    """Shrink (w, h) so that the longer side is at most `limit`, keeping the aspect ratio."""
    if h > w and h > limit:
        w = limit * w // h
        h = limit
    elif w > limit:
        h = limit * h // w
        w = limit
    return int(w), int(h)


class UpscaleCache:
    """The last few upscales (setting upscaling_max_images_in_cache): changing only upscaler 2's visibility
    does not upscale again."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple, Image.Image] = OrderedDict()

    def get(self, key: tuple) -> Image.Image | None:
        return self.items.pop(key, None)

    def put(self, key: tuple, image: Image.Image) -> None:
        self.items[key] = image
        while len(self.items) > max(0, int(opts.upscaling_max_images_in_cache)):
            self.items.popitem(last=False)


upscale_cache = UpscaleCache()


def _upscale_once(image: Image.Image, info: dict[str, Any], data: upscaler.UpscalerData,
                  args: UpscaleArgs) -> Image.Image:
    mode, upscale_by, crop = args.upscale_mode, args.upscale_by, args.upscale_crop
    to_w, to_h = args.upscale_to_width, args.upscale_to_height
    if mode == 1:
        upscale_by = max(to_w / image.width, to_h / image.height)
        info["Postprocess upscale to"] = f"{to_w}x{to_h}"
    else:
        info["Postprocess upscale by"] = upscale_by
        if args.max_side_length != 0 and max(*image.size) * upscale_by > args.max_side_length:
            mode, crop = 1, False
            to_w, to_h = limit_size_by_one_dimension(image.width * upscale_by, image.height * upscale_by,
                                                     args.max_side_length)
            upscale_by = max(to_w / image.width, to_h / image.height)
            info["Max side length"] = args.max_side_length

    key = (hashlib.sha1(image.tobytes()).hexdigest(), image.size, image.mode, data.name, mode, upscale_by, to_w,
           to_h, crop)
    result = upscale_cache.get(key)
    if result is None:
        result = data.scaler.upscale(image, upscale_by, data.data_path)
    upscale_cache.put(key, result)

    if mode == 1 and crop:
        cropped = Image.new("RGB", (to_w, to_h))
        cropped.paste(result, box=(to_w // 2 - result.width // 2, to_h // 2 - result.height // 2))
        result = cropped
        info["Postprocess crop to"] = f"{result.width}x{result.height}"
    return result


def _named_upscaler(name: str | None) -> upscaler.UpscalerData | None:
    if name is None or name == "None":
        return None
    return upscaler.find_upscaler(name)


def upscale_image(image: Image.Image, args: UpscaleArgs, info: dict[str, Any]) -> Image.Image:
    """Apply the Upscale operation to one image, adding its fields to `info`. Upscaler 1 "None" does nothing."""
    if not args.upscale_enabled:
        return image
    if args.upscale_mode not in (0, 1):
        raise UserError(f"Extras resize mode must be 0 (scale by) or 1 (scale to); got {args.upscale_mode!r}.")
    if args.upscale_mode == 0 and not args.upscale_by > 0:
        raise UserError(f"Extras upscale factor must be greater than 0 (got {args.upscale_by}).")
    if args.upscale_mode == 1 and (args.upscale_to_width < 1 or args.upscale_to_height < 1):
        raise UserError(f"Extras target size {args.upscale_to_width}x{args.upscale_to_height} must be at least 1x1.")
    first = _named_upscaler(args.upscaler_1_name)
    second = _named_upscaler(args.upscaler_2_name)
    if first is None:
        return image
    upscaled = _upscale_once(image, info, first, args)
    info["Postprocess upscaler"] = first.name
    if second is not None and args.upscaler_2_visibility > 0:
        second_upscale = _upscale_once(image, info, second, args)
        if upscaled.mode != second_upscale.mode:
            second_upscale = second_upscale.convert(upscaled.mode)
        if second_upscale.size != upscaled.size:
            second_upscale = second_upscale.resize(upscaled.size, resample=images_ops.LANCZOS)
        upscaled = Image.blend(upscaled, second_upscale, args.upscaler_2_visibility)
        info["Postprocess upscaler 2"] = second.name
    return upscaled


def _info_text(info: dict[str, Any]) -> str:
    return ", ".join(k if k == v else f"{k}: {infotext_utils.quote(v)}" for k, v in info.items() if v is not None)


def _write_caption(image_path: str, caption: str) -> None:
    """A1111's caption file: `<image>.txt`, combined with an existing one as postprocessing_existing_caption_action
    says."""
    caption_path = os.path.splitext(image_path)[0] + ".txt"
    try:
        with open(caption_path, encoding="utf8") as file:
            existing = file.read().strip()
    except FileNotFoundError:
        existing = ""
    action = opts.postprocessing_existing_caption_action
    if existing and action == "Prepend":
        caption = f"{existing} {caption}"
    elif existing and action == "Append":
        caption = f"{caption} {existing}"
    elif existing and action == "Keep":
        caption = existing
    caption = caption.strip()
    if caption:
        fileio.atomic_write_text(caption_path, caption)


def postprocess_images(items: Iterable[tuple[Image.Image | str, str | None]], args: UpscaleArgs,
                       outpath: str | None = None, save_output: bool = True,
                       script_args: list | None = None) -> list[ExtrasResult]:
    """Upscale each (image or file path, original name), run the postprocessing scripts with `script_args` (their
    UI values in `scripts.scripts_postproc` order; None: not run) and save each resulting image into `outpath`
    (default outdir_extras_samples); unreadable files are skipped with a warning. Returns the results in order."""
    outpath = paths_internal.data_relative(outpath or opts.outdir_samples or opts.outdir_extras_samples)
    items = list(items)
    state.job_count = len(items)
    results = []
    for placeholder, name in items:
        state.nextjob()
        state.textinfo = name
        state.skipped = False
        if state.interrupted:
            break
        if isinstance(placeholder, str):
            try:
                image_data = images.read(placeholder)
            except UserError as e:
                log.warning("Skipping %s", e)
                continue
        else:
            image_data = placeholder
        image_data = image_data if image_data.mode in ("RGBA", "RGB") else image_data.convert("RGB")

        parameters, existing_pnginfo = images.read_info_from_image(image_data)
        if parameters:
            existing_pnginfo["parameters"] = parameters
        info: dict[str, Any] = {}
        initial = scripts_postprocessing.PostprocessedImage(upscale_image(image_data, args, info))
        initial.info = info
        if script_args is not None:
            scripts.scripts_postproc.run(initial, script_args)
        if state.skipped:
            continue
        used_suffixes: set[str] = set()
        for pp in [initial, *initial.extra_images]:
            results.append(_save_result(pp, existing_pnginfo, name, outpath, save_output, used_suffixes))
    return results


def _save_result(pp: scripts_postprocessing.PostprocessedImage, existing_pnginfo: dict[str, Any],
                 name: str | None, outpath: str, save_output: bool, used_suffixes: set[str]) -> ExtrasResult:
    image, info = pp.image, pp.info
    text = _info_text(info)
    result = ExtrasResult(image, info, text)
    if opts.enable_pnginfo:
        existing_pnginfo["postprocessing"] = text
        image.info = dict(existing_pnginfo)
    if not save_output:
        return result
    suffix = f"_{info['Postprocess upscaler']}" if opts.use_upscaler_name_as_suffix and \
        "Postprocess upscaler" in info else ""
    suffix += pp.get_suffix(used_suffixes)
    basename, forced_filename = "", None
    if opts.use_original_name_batch and name is not None:
        basename = os.path.splitext(os.path.basename(name))[0]
        forced_filename = basename + suffix
    result.filename, _ = images.save_image(
        image, path=outpath, basename=basename, extension=opts.samples_format, info=text, short_filename=True,
        no_prompt=True, grid=False, pnginfo_section_name="extras", existing_info=existing_pnginfo,
        forced_filename=forced_filename, suffix=suffix)
    if pp.caption and result.filename:
        _write_caption(result.filename, pp.caption)
    return result


def _list_images(input_dir: str) -> list[str]:
    if not input_dir or not os.path.isdir(input_dir):
        raise UserError(f"Input directory {input_dir!r} not found; give a folder with images.")
    return shared.listfiles(input_dir)


def _images_for_mode(extras_mode: int, image: Any, image_folder: Any,
                     input_dir: str) -> Iterator[tuple[Any, str | None]]:
    if extras_mode == 1:
        for item in image_folder or []:
            if isinstance(item, Image.Image):
                yield images_ops.fix_image(item), None
            else:
                path = getattr(item, "name", item)
                yield os.path.abspath(path), os.path.splitext(getattr(item, "orig_name", None) or path)[0]
    elif extras_mode == 2:
        if shared.cmd_opts.hide_ui_dir_config:
            raise UserError("Batch from directory is disabled by --hide-ui-dir-config.")
        for filename in _list_images(input_dir):
            yield filename, filename
    else:
        if image is None:
            raise UserError("No image selected: give an image to process.")
        yield image, None


def run_postprocessing(extras_mode: int, image: Any, image_folder: Any, input_dir: str, output_dir: str,
                       show_extras_results: bool, args: UpscaleArgs | None = None,
                       save_output: bool = True, script_args: list | None = None) -> tuple[list[Image.Image], str, str]:
    """A1111's Extras entry: mode 0 one image, 1 a list of images/uploaded files, 2 every image in `input_dir`
    (saved to `output_dir` when given). `script_args`: the postprocessing scripts' control values (the Extras
    tab's, or `scripts.scripts_postproc.create_args_for_run(...)`). Returns (images to show, info HTML, "")."""
    from modules.txt2img import plaintext_to_html

    devices.torch_gc()
    try:
        items = list(_images_for_mode(extras_mode, image, image_folder, input_dir))
        outpath = output_dir if extras_mode == 2 and output_dir else None
        results = postprocess_images(items, args or UpscaleArgs(), outpath, save_output, script_args)
    finally:
        devices.torch_gc()
    shown = [r.image for r in results] if extras_mode != 2 or show_extras_results else []
    return shown, plaintext_to_html(results[-1].infotext if results else ""), ""


def run_extras(extras_mode: int, resize_mode: int, image: Any, image_folder: Any, input_dir: str, output_dir: str,
               show_extras_results: bool, gfpgan_visibility: float, codeformer_visibility: float,
               codeformer_weight: float, upscaling_resize: float, upscaling_resize_w: int, upscaling_resize_h: int,
               upscaling_crop: bool, extras_upscaler_1: str | None, extras_upscaler_2: str | None,
               extras_upscaler_2_visibility: float, upscale_first: bool = False, save_output: bool = True,
               max_side_length: int = 0) -> tuple[list[Image.Image], str, str]:
    """The API's entry with ExtrasBase's fields (A1111's run_extras); face restoration fields are ignored. As in
    A1111, the postprocessing scripts run with every control None (their own checks keep them off)."""
    if gfpgan_visibility or codeformer_visibility:
        log.info("Face restoration is not provided; GFPGAN/CodeFormer visibility ignored.")
    args = UpscaleArgs(upscale_mode=resize_mode, upscale_by=upscaling_resize, max_side_length=max_side_length,
                       upscale_to_width=upscaling_resize_w, upscale_to_height=upscaling_resize_h,
                       upscale_crop=upscaling_crop, upscaler_1_name=extras_upscaler_1,
                       upscaler_2_name=extras_upscaler_2, upscaler_2_visibility=extras_upscaler_2_visibility)
    return run_postprocessing(extras_mode, image, image_folder, input_dir, output_dir, show_extras_results, args,
                              save_output=save_output, script_args=scripts.scripts_postproc.create_args_for_run({}))
