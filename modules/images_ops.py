"""Image operations of img2img and the upscalers: reading user images, flattening transparency, resizing.

A1111 exposes these as `modules.images.read/fix_image/flatten/resize_image`; `modules.images` re-exports them.
`resize_image` implements the four img2img resize modes (a1111-spec §5.5):

- 0 "Just resize": stretch to the target size;
- 1 "Crop and resize": scale to cover the target, centre, crop the overflow;
- 2 "Resize and fill": scale to fit inside the target, centre, fill the bars by stretching the image's edge;
- 3 "Just resize (latent upscale)": img2img resizes the latent instead; as an image resize it behaves as mode 2.
"""

from __future__ import annotations

import logging
import os
from typing import IO, Any

from PIL import Image, ImageOps, UnidentifiedImageError

from modules.errors import UserError
from modules.options import current_opts

log = logging.getLogger(__name__)

LANCZOS = Image.Resampling.LANCZOS

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")


def fix_png_transparency(image: Image.Image) -> Image.Image:
    """RGB/P images whose transparency is stored as a palette/colour key become RGBA."""
    if image.mode not in ("RGB", "P") or not isinstance(image.info.get("transparency"), bytes):
        return image
    return image.convert("RGBA")


def fix_image(image: Image.Image | None) -> Image.Image | None:
    """Apply the EXIF orientation (phone photos) and make palette transparency an alpha channel."""
    if image is None:
        return None
    try:
        image = ImageOps.exif_transpose(image)
        return fix_png_transparency(image)
    except (OSError, ValueError, SyntaxError) as e:  # broken EXIF must not lose the image
        log.debug("Could not apply EXIF orientation: %s", e)
        return image


def read(fp: str | os.PathLike | IO[bytes], **kwargs: Any) -> Image.Image:
    """Open and fully decode an image file; a file that is not a readable image raises one `UserError`."""
    name = os.fspath(fp) if isinstance(fp, (str, os.PathLike)) else getattr(fp, "name", "image")
    try:
        image = Image.open(fp, **kwargs)
        image.load()
    except FileNotFoundError as e:
        raise UserError(f"{name}: file not found") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"{name}: not a readable image ({e}); use a PNG, JPEG or WebP file") from e
    return fix_image(image)


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """An RGB image with transparent parts replaced by `bgcolor` (e.g. "#ffffff")."""
    if img.mode in ("LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def _resize_with_upscaler(im: Image.Image, w: int, h: int, upscaler_name: str | None) -> Image.Image:
    """Enlarging goes through the named upscaler (if any) and ends with an exact Lanczos resize."""
    if not upscaler_name or upscaler_name == "None" or im.mode == "L":
        return im.resize((w, h), resample=LANCZOS)
    scale = max(w / im.width, h / im.height)
    if scale > 1.0:
        from modules import upscaler

        data = upscaler.find_upscaler(upscaler_name, fallback=True)
        im = data.scaler.upscale(im, scale, data.data_path)
    if im.width != w or im.height != h:
        im = im.resize((w, h), resample=LANCZOS)
    return im


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int,
                 upscaler_name: str | None = None) -> Image.Image:
    """Resize `im` to exactly `width`×`height` with an img2img resize mode (see the module docstring).

    Enlargements use `upscaler_name` (default: the `upscaler_for_img2img` setting) for modes 0–2.
    Modes 1 and 2 return RGB images.
    """
    if width < 1 or height < 1:
        raise UserError(f"Cannot resize an image to {width}x{height}: both sides must be at least 1 pixel.")
    if upscaler_name is None:
        upscaler_name = current_opts().upscaler_for_img2img

    if resize_mode == 0:
        return _resize_with_upscaler(im, width, height, upscaler_name)

    ratio = width / height
    src_ratio = im.width / im.height
    if resize_mode == 1:
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
    else:
        src_w = width if ratio < src_ratio else im.width * height // im.height
        src_h = height if ratio >= src_ratio else im.height * width // im.width
    src_w, src_h = max(src_w, 1), max(src_h, 1)

    resized = _resize_with_upscaler(im, src_w, src_h, upscaler_name)
    res = Image.new("RGB", (width, height))
    res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if resize_mode == 1:
        return res

    # Fill the bars by stretching the outermost line of pixels (a zero-size source box) across them.
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
            res.paste(resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                      box=(0, fill_height + src_h))
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
            res.paste(resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                      box=(fill_width + src_w, 0))
    return res
