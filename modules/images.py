"""Images on disk: saving with infotext under A1111's file names, and reading infotext back.

Also the A1111 surface of ``modules.images``: file naming lives in `modules.images_naming`, grids in
`modules.images_grid`, both re-exported here. Settings come in as an `opts` object (attribute access to A1111
setting keys).
"""

from __future__ import annotations

import datetime
import errno
import io
import json
import logging
import os
from collections.abc import Callable
from typing import IO, Any

import piexif
import piexif.helper
from PIL import Image, PngImagePlugin

from modules import script_callbacks, sd_samplers
from modules.errors import UserError
from modules.fileio import atomic_file
from modules.images_grid import (  # noqa: F401  (A1111 names)
    Grid,
    GridAnnotation,
    combine_grid,
    draw_grid_annotations,
    draw_prompt_matrix,
    get_font,
    grid_layout,
    image_grid,
    split_grid,
)
from modules.images_naming import (  # noqa: F401  (A1111 names)
    NOTHING_AND_SKIP_PREVIOUS_TEXT,
    FilenameGenerator,
    FilenameRules,
    get_next_sequence_number,
    get_sampler_scheduler,
    sanitize_filename_part,
)
from modules.images_ops import fix_image, fix_png_transparency, flatten, read, resize_image  # noqa: F401
from modules.options import current_opts
from modules.script_callbacks import ImageSaveParams

log = logging.getLogger(__name__)

LANCZOS = Image.Resampling.LANCZOS

# Pillow keys that describe the file format rather than carry information for the user.
IGNORED_INFO_KEYS = {
    "jfif",
    "jfif_version",
    "jfif_unit",
    "jfif_density",
    "dpi",
    "exif",
    "loop",
    "background",
    "timestamp",
    "duration",
    "progressive",
    "progression",
    "icc_profile",
    "chromaticity",
    "photoshop",
}


class ImageSaveError(UserError):
    """An image or its text file could not be written (full disk, read-only or missing folder, bad format)."""

    status_code = 500


# ---- writing ----


def _fit_file_name(stem_path: str, extension: str) -> str:
    """Shorten the file name (not the folder) to what the file system allows, leaving room for .txt/.tmp."""
    folder, name = os.path.split(stem_path)
    try:
        name_max = os.statvfs(folder or ".").f_namemax
    except (AttributeError, OSError):
        return stem_path
    limit = name_max - max(4, len(extension))
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return stem_path
    return os.path.join(folder, encoded[:limit].decode("utf-8", errors="ignore"))


def _save_error(path: str, e: OSError) -> ImageSaveError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        advice = "the disk is full; free some space or choose another output folder in Settings > Paths for saving"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "the folder is not writable; choose another output folder in Settings > Paths for saving"
    elif e.errno == errno.ENAMETOOLONG:
        advice = "the name is too long; shorten the file name pattern or use --filenames-max-length"
    elif e.errno is None:
        # Pillow reports encoder failures as OSError without an errno.
        advice = f"the image could not be encoded ({e})"
    else:
        advice = f"{e.strerror or e}; check the output folder in Settings > Paths for saving"
    return ImageSaveError(f"Could not save {path}: {advice}. Nothing was written.")


def _forced_file_name(folder: str, name: str, extension: str) -> str:
    """`folder/name.extension`, refused when the name (an absolute path, `..`, a NUL) would lead outside `folder`."""
    fullfn = os.path.join(folder, f"{name}.{extension}")
    real_folder = os.path.realpath(folder)
    if "\x00" in fullfn or not os.path.realpath(fullfn).startswith(real_folder.rstrip(os.sep) + os.sep):
        raise ImageSaveError(f"Could not save the image as {name!r}: the name leads outside the output folder "
                             f"{folder}. Nothing was written.")
    return fullfn


def _write_atomically(target: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a hidden temporary file in the same folder, then rename: readers never see half a file."""
    try:
        with atomic_file(target, "wb") as fp:
            write(fp)
    except OSError as e:
        raise _save_error(target, e) from e


def image_format_for(extension: str) -> str:
    """Pillow's format name for a file extension (``"jpg"`` or ``".jpg"``)."""
    ext = "." + extension.lower().lstrip(".")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ImageSaveError(
            f"Unknown image format {extension!r}; choose png, jpg, webp, avif or gif in Settings > Saving images"
        )
    return fmt


def _exif_user_comment(text: str) -> bytes:
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, encoding="unicode")}})


def _encode_image(
    image: Image.Image,
    geninfo: str | None,
    fp: IO[bytes],
    extension: str,
    existing_pnginfo: dict[str, Any] | None,
    pnginfo_section_name: str,
    opts: Any,
) -> None:
    ext = "." + extension.lower().lstrip(".")
    image_format = image_format_for(ext)

    if ext == ".png":
        pnginfo_data = None
        if opts.enable_pnginfo:
            texts = dict(existing_pnginfo or {})
            texts[pnginfo_section_name] = geninfo
            pnginfo_data = PngImagePlugin.PngInfo()
            for key, value in texts.items():
                if value is not None:
                    # Pillow writes iTXt (UTF-8) by itself when the text is not latin-1.
                    pnginfo_data.add_text(key, str(value))
        image.save(fp, format=image_format, pnginfo=pnginfo_data)

    elif ext in (".jpg", ".jpeg", ".webp", ".avif"):
        if image.mode == "I;16":
            image = image.point(lambda v: v * 0.0038910505836576).convert("RGB" if ext == ".webp" else "L")
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        kwargs: dict[str, Any] = {"quality": opts.jpeg_quality}
        if ext == ".webp":
            kwargs["lossless"] = opts.webp_lossless
        if opts.enable_pnginfo and geninfo is not None:
            kwargs["exif"] = _exif_user_comment(geninfo)
        image.save(fp, format=image_format, **kwargs)

    elif ext == ".gif":
        kwargs = {"comment": geninfo} if opts.enable_pnginfo and geninfo is not None else {}
        image.save(fp, format=image_format, **kwargs)

    else:
        image.save(fp, format=image_format, quality=opts.jpeg_quality)


def save_image_with_geninfo(
    image: Image.Image,
    geninfo: str | None,
    filename: str,
    extension: str | None = None,
    existing_pnginfo: dict[str, Any] | None = None,
    pnginfo_section_name: str = "parameters",
    *,
    opts: Any = None,
) -> None:
    """Write `image` to `filename` with `geninfo` (PNG text chunk, EXIF UserComment or GIF comment), atomically.

    `extension` (default: the file's) picks the format. Other PNG text chunks in `existing_pnginfo` are kept.
    """
    opts = opts if opts is not None else current_opts()
    if extension is None:
        extension = os.path.splitext(filename)[1]
    image_format_for(extension)
    _write_atomically(
        filename,
        lambda fp: _encode_image(image, geninfo, fp, extension, existing_pnginfo, pnginfo_section_name, opts),
    )


def image_to_bytes(image: Image.Image, geninfo: str | None, extension: str, *, opts: Any = None) -> bytes:
    """The image encoded as a file of the given format in memory, with `geninfo` stored as when saving (the
    API returns images this way); the image's other PNG text chunks are kept."""
    opts = opts if opts is not None else current_opts()
    existing = {k: v for k, v in (image.info or {}).items() if isinstance(k, str) and isinstance(v, str)}
    existing.pop("parameters", None)
    buffer = io.BytesIO()
    _encode_image(image, geninfo, buffer, extension, existing, "parameters", opts)
    return buffer.getvalue()


def save_text(filename: str, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    _write_atomically(filename, lambda fp: fp.write(text.encode("utf-8")))


def save_image(
    image: Image.Image,
    path: str,
    basename: str,
    seed: int | None = None,
    prompt: str | None = None,
    extension: str = "png",
    info: str | None = None,
    short_filename: bool = False,
    no_prompt: bool = False,
    grid: bool = False,
    pnginfo_section_name: str = "parameters",
    p: Any = None,
    existing_info: dict[str, Any] | None = None,
    forced_filename: str | None = None,
    suffix: str = "",
    save_to_dirs: bool | None = None,
    *,
    opts: Any = None,
    styles: Any = None,
    now: datetime.datetime | None = None,
    rules: FilenameRules | None = None,
) -> tuple[str, str | None]:
    """Save an image under A1111's naming rules with its infotext; returns ``(image file, text file or None)``.

    Name: ``[subfolder from directories_filename_pattern/]NNNNN-<samples_filename_pattern>.ext`` (defaults
    ``[seed]`` with subfolders, else ``[seed]-[prompt_spaces]``); `forced_filename` replaces the whole name.
    Files appear atomically; errors writing them raise `ImageSaveError` and leave no partial file.
    `styles`, `now` and `rules` feed the `FilenameGenerator`.
    """
    opts = opts if opts is not None else current_opts()
    namegen = FilenameGenerator(p, seed, prompt, image, opts=opts, styles=styles, now=now, rules=rules)

    # JPEG and WebP cannot hold images this large; PNG can.
    ext = extension.lower()
    if (ext in ("jpg", "jpeg") and max(image.size) > 65535) or (ext == "webp" and max(image.size) > 16383):
        log.warning("Image of %dx%d is too large for %s; saving as PNG", image.width, image.height, extension)
        extension = "png"
    image_format_for(extension)

    if save_to_dirs is None:
        save_to_dirs = (grid and opts.grid_save_to_dirs) or (not grid and opts.save_to_dirs and not no_prompt)

    if save_to_dirs:
        dirname = namegen.apply(opts.directories_filename_pattern or "[prompt_words]").lstrip(" ").rstrip("\\ /")
        path = os.path.join(path, dirname)

    try:
        os.makedirs(path, exist_ok=True)
        if forced_filename is None:
            fullfn = _numbered_file_name(namegen, path, basename, seed, extension, short_filename, suffix, opts)
        else:
            fullfn = _forced_file_name(path, forced_filename, extension)
    except OSError as e:
        raise _save_error(path, e) from e

    pnginfo = dict(existing_info or {})
    if info is not None:
        pnginfo[pnginfo_section_name] = info

    params = ImageSaveParams(image, p, fullfn, pnginfo)
    script_callbacks.before_image_saved_callback(params)  # extensions may change image, filename or pnginfo
    result = write_image_files(params, pnginfo_section_name, opts=opts)
    params.filename = result[0]
    script_callbacks.image_saved_callback(params)
    return result


def _numbered_file_name(
    namegen: FilenameGenerator,
    path: str,
    basename: str,
    seed: int | None,
    extension: str,
    short_filename: bool,
    suffix: str,
    opts: Any,
) -> str:
    if short_filename or seed is None:
        decoration = ""
    elif opts.save_to_dirs:
        decoration = opts.samples_filename_pattern or "[seed]"
    else:
        decoration = opts.samples_filename_pattern or "[seed]-[prompt_spaces]"

    decoration = namegen.apply(decoration) + suffix
    add_number = opts.save_images_add_number or decoration == ""
    if not add_number:
        return os.path.join(path, f"{decoration}.{extension}")

    if decoration:
        decoration = f"-{decoration}"
    basecount = get_next_sequence_number(path, basename)
    fullfn = ""
    for i in range(500):
        number = f"{basecount + i:05}" if basename == "" else f"{basename}-{basecount + i:04}"
        fullfn = os.path.join(path, f"{number}{decoration}.{extension}")
        if not os.path.exists(fullfn):
            break
    return fullfn


def _free_name(stem: str, extension: str, opts: Any) -> str:
    """The target name, or with ``-1``, ``-2``... when the setting says not to replace existing files."""
    filename = stem + extension
    if opts.save_images_replace_action != "Replace":
        n = 0
        while os.path.exists(filename):
            n += 1
            filename = f"{stem}-{n}{extension}"
    return filename


def write_image_files(params: ImageSaveParams, pnginfo_section_name: str, *, opts: Any) -> tuple[str, str | None]:
    """Write the image of `params` (plus the downscaled JPEG copy and ``.txt`` that settings ask for)."""
    image = params.image
    info = params.pnginfo.get(pnginfo_section_name)
    stem, extension = os.path.splitext(params.filename)
    stem = _fit_file_name(stem, extension)

    fullfn = _free_name(stem, extension, opts)
    save_image_with_geninfo(image, info, fullfn, extension, params.pnginfo, pnginfo_section_name, opts=opts)
    params.filename = fullfn
    image.already_saved_as = fullfn

    oversize = image.width > opts.target_side_length or image.height > opts.target_side_length
    if opts.export_for_4chan and (oversize or os.stat(fullfn).st_size > opts.img_downscale_threshold * 1024 * 1024):
        _save_downscaled_jpeg(image, info, stem, params.pnginfo, pnginfo_section_name, oversize, opts)

    txt_fullfn = None
    if opts.save_txt and info is not None:
        txt_fullfn = f"{stem}.txt"
        save_text(txt_fullfn, f"{info}\n")

    return fullfn, txt_fullfn


def _save_downscaled_jpeg(
    image: Image.Image,
    info: str | None,
    stem: str,
    pnginfo: dict[str, Any],
    pnginfo_section_name: str,
    oversize: bool,
    opts: Any,
) -> None:
    """A1111's "export for 4chan": a JPEG copy, shrunk to target_side_length if a side is longer.

    The copy is optional: failing to make it is logged, the saved image stands.
    """
    side = opts.target_side_length
    try:
        if oversize:
            if image.width > image.height:
                resize_to = round(side), max(1, round(image.height * side / image.width))
            else:
                resize_to = max(1, round(image.width * side / image.height)), round(side)
            try:
                image = image.resize(resize_to, LANCZOS)
            except ValueError:
                # Some modes (e.g. I;16) cannot use LANCZOS.
                image = image.resize(resize_to)
        save_image_with_geninfo(
            image, info, _free_name(stem, ".jpg", opts), ".jpg", pnginfo, pnginfo_section_name, opts=opts
        )
    except Exception as e:
        log.error("Could not save the downscaled JPEG copy of %s: %s", stem, e)


# ---- reading ----


def _novelai_infotext(image: Image.Image, items: dict[str, Any]) -> str | None:
    try:
        json_info = json.loads(items["Comment"])
        sampler = sd_samplers.samplers_map.get(json_info["sampler"], "Euler a")
        return (
            f"{items['Description']}\n"
            f"Negative prompt: {json_info['uc']}\n"
            f"Steps: {json_info['steps']}, Sampler: {sampler}, CFG scale: {json_info['scale']}, "
            f"Seed: {json_info['seed']}, Size: {image.width}x{image.height}, Clip skip: 2, ENSD: 31337"
        )
    except (KeyError, TypeError, ValueError) as e:
        log.warning("Could not read NovelAI generation parameters from the image: %s", e)
        return None


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    """``(infotext, other text items)`` of an opened image.

    Reads the PNG ``parameters`` chunk, the EXIF UserComment of JPEG/WebP/AVIF, a GIF comment, and converts
    NovelAI's PNG metadata into an infotext.
    """
    items = dict(image.info or {})
    geninfo = items.pop("parameters", None)

    if "exif" in items:
        exif_data = items.pop("exif")
        try:
            exif = piexif.load(exif_data)
        except Exception as e:
            log.debug("Unreadable EXIF data: %s", e)
            exif = {}
        comment = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        try:
            comment = piexif.helper.UserComment.load(comment)
        except ValueError:
            comment = comment.decode("utf8", errors="ignore")
        if comment:
            geninfo = comment
    elif "comment" in items:
        comment = items["comment"]
        geninfo = comment.decode("utf8", errors="ignore") if isinstance(comment, bytes) else comment

    for key in IGNORED_INFO_KEYS:
        items.pop(key, None)

    if items.get("Software") == "NovelAI":
        geninfo = _novelai_infotext(image, items) or geninfo

    return geninfo, items
