"""Inpainting masks: binarising, blurring, the "only masked" rectangle, masked-content fill, compositing back.

Conventions (A1111's): a mask is an "L" image, white (255) = inpaint here, black = keep. Rectangles are
``(x1, y1, x2, y2)`` with x2/y2 exclusive (PIL boxes); a paste location is ``(x, y, w, h)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from scipy import ndimage

from modules.images_ops import resize_image

Box = tuple[int, int, int, int]


def create_binary_mask(image: Image.Image, round: bool = True) -> Image.Image:
    """The mask of an uploaded/drawn image as "L": an RGBA image with real transparency uses its alpha channel,
    anything else its luminance; with `round`, values above 128 become 255 and the rest 0."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        image = image.split()[-1].convert("L")
    else:
        image = image.convert("L")
    if round:
        image = image.point(lambda x: 255 if x > 128 else 0)
    return image


def blur_kernel_size(blur: float) -> int:
    """A1111's Gaussian kernel width for a mask blur of `blur` pixels (sigma = blur)."""
    return 2 * int(2.5 * blur + 0.5) + 1


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian weights of odd length `size` (as OpenCV's getGaussianKernel for sigma > 0)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma * sigma))
    return k / k.sum()


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Separable Gaussian blur of an "L" mask: horizontally with sigma `blur_x`, then vertically with `blur_y`
    (each skipped when 0); borders mirror without repeating the edge pixel, results round to 8 bits."""
    arr = np.asarray(mask.convert("L"), dtype=np.float64)
    for axis, sigma in ((1, blur_x), (0, blur_y)):
        if sigma > 0:
            arr = ndimage.correlate1d(arr, gaussian_kernel(blur_kernel_size(sigma), sigma), axis=axis, mode="mirror")
            arr = np.clip(np.floor(arr + 0.5), 0, 255)  # each pass stores 8-bit values, as A1111's does
    return Image.fromarray(arr.astype(np.uint8), "L")


def get_crop_region_v2(mask: Image.Image | np.ndarray, pad: int = 0) -> Box | None:
    """The bounding box of the non-black pixels of `mask`, grown by `pad` on every side and clipped to the
    image; None for an all-black mask."""
    mask = mask if isinstance(mask, Image.Image) else Image.fromarray(mask)
    box = mask.getbbox()
    if not box:
        return None
    if not pad:
        return box
    x1, y1, x2, y2 = box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.size[0]), min(y2 + pad, mask.size[1])


def get_crop_region(mask: Image.Image | np.ndarray, pad: int = 0) -> Box:
    """`get_crop_region_v2` for extensions that expect a box even for an all-black mask (then an inverted,
    possibly empty box, as A1111 returns)."""
    mask = mask if isinstance(mask, Image.Image) else Image.fromarray(mask)
    box = get_crop_region_v2(mask, pad)
    if box:
        return box
    w, h = mask.size
    return max(w - pad, 0), max(h - pad, 0), min(pad, w), min(pad, h)


def _expand_axis(a1: int, a2: int, desired: float, limit: int) -> tuple[int, int]:
    """Grow [a1, a2) evenly to `desired` length, then shift it back inside [0, limit)."""
    diff = int(desired - (a2 - a1))
    a1 -= diff // 2
    a2 += diff - diff // 2
    if a2 >= limit:
        a1 -= a2 - limit
        a2 = limit
    if a1 < 0:
        a2 -= a1
        a1 = 0
    if a2 >= limit:
        a2 = limit
    return a1, a2


def expand_crop_region(crop_region: Box, processing_width: int, processing_height: int, image_width: int,
                       image_height: int) -> Box:
    """Grow the crop region to the aspect ratio of the processing size, staying inside the image: a mask drawn in
    a 128×32 region processed at 512×512 becomes a 128×128 region."""
    x1, y1, x2, y2 = crop_region
    ratio_crop_region = (x2 - x1) / (y2 - y1)
    ratio_processing = processing_width / processing_height
    if ratio_crop_region > ratio_processing:
        y1, y2 = _expand_axis(y1, y2, (x2 - x1) / ratio_processing, image_height)
    else:
        x1, x2 = _expand_axis(x1, x2, (y2 - y1) * ratio_processing, image_width)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": replace the masked area with colours smeared in from around it (progressively
    finer blurs of the unmasked pixels layered on top of each other)."""
    image_mod = Image.new("RGBA", (image.width, image.height))
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = image_masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            image_mod.alpha_composite(blurred)
    return image_mod.convert("RGB")


def uncrop(image: Image.Image, dest_size: tuple[int, int], paste_loc: tuple[int, int, int, int]) -> Image.Image:
    """Put a processed crop back: resize it to the crop's size and paste it onto a transparent canvas."""
    x, y, w, h = paste_loc
    base_image = Image.new("RGBA", dest_size)
    base_image.paste(resize_image(1, image, w, h), (x, y))
    return base_image


def apply_overlay(image: Image.Image, paste_loc: tuple[int, int, int, int] | None,
                  overlay: Image.Image | None) -> tuple[Image.Image, Image.Image]:
    """Composite the original pixels (`overlay`, transparent where inpainted) over a generated image, pasting
    an "only masked" crop back first. Returns (final image, generated image before the overlay)."""
    if overlay is None:
        return image, image.copy()
    if paste_loc is not None:
        image = uncrop(image, (overlay.width, overlay.height), paste_loc)
    original_denoised_image = image.copy()
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB"), original_denoised_image


def overlay_image(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The init image made transparent where the (blurred) mask is white: what `apply_overlay` lays on top."""
    image_masked = Image.new("RGBa", (image.width, image.height))
    image_masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay.convert("L")))
    return image_masked.convert("RGBA")


def sketch_image(background: Image.Image, strokes: Image.Image | None) -> Image.Image:
    """img2img "Sketch": the coloured strokes (an RGBA layer, transparent elsewhere) painted onto the image."""
    if strokes is None:
        return background
    base = background.convert("RGBA")
    layer = strokes.convert("RGBA")
    if layer.size != base.size:
        layer = layer.resize(base.size)
    base.alpha_composite(layer)
    return base


def inpaint_sketch(original: Image.Image, sketched: Image.Image, mask_alpha: float = 0,
                   mask_blur: float = 0) -> tuple[Image.Image, Image.Image]:
    """"Inpaint sketch": the mask is every pixel the strokes changed, dimmed by the mask transparency (percent);
    the returned image is the sketch, blurred by `mask_blur`, composited over the original through that mask."""
    if sketched.size != original.size:
        sketched = sketched.resize(original.size)
    changed = np.any(np.asarray(sketched.convert("RGBA")) != np.asarray(original.convert("RGBA")), axis=-1)
    mask = Image.fromarray(changed.astype(np.uint8) * 255, "L")
    mask = ImageEnhance.Brightness(mask).enhance(1 - mask_alpha / 100)
    blur = ImageFilter.GaussianBlur(mask_blur)
    image = Image.composite(sketched.convert("RGBA").filter(blur), original.convert("RGBA"), mask.filter(blur))
    return image, mask
