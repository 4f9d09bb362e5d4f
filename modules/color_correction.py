"""img2img colour correction (setting `img2img_color_correction`): keep the init image's colours.

As A1111: the generated image's CIELAB channels (8-bit encoding: L·255/100, a+128, b+128) are histogram-matched
to the init image's, converted back to RGB, and then only the hue and saturation of that result are kept — the
luminosity comes from the generated image (a "Luminosity" layer blend of the generated image over the corrected
one). Written with NumPy (no OpenCV / scikit-image).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# sRGB (D65) ↔ CIE XYZ
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ.sum(axis=1)  # XYZ of RGB (1, 1, 1)
_EPS = 216 / 24389
_KAPPA = 24389 / 27


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) → uint8 CIELAB in the 8-bit encoding (L·255/100, a+128, b+128)."""
    linear = _srgb_to_linear(rgb.astype(np.float64) / 255.0)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    lab = np.stack([lightness * 255 / 100, a + 128, b + 128], axis=-1)
    return np.clip(np.floor(lab + 0.5), 0, 255).astype(np.uint8)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """The inverse of `rgb_to_lab` (uint8 in, uint8 out)."""
    lab = lab.astype(np.float64)
    fy = (lab[..., 0] * 100 / 255 + 16) / 116
    fx = fy + (lab[..., 1] - 128) / 500
    fz = fy - (lab[..., 2] - 128) / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    rgb = _linear_to_srgb(xyz @ _XYZ_TO_RGB.T)
    return np.clip(np.floor(rgb * 255 + 0.5), 0, 255).astype(np.uint8)


def match_histograms(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per channel (last axis), map `source`'s values so their distribution matches `reference`'s: each value goes
    to the reference value at the same quantile (linear interpolation between quantiles). uint8 in and out."""
    matched = np.empty_like(source)
    for c in range(source.shape[-1]):
        src = source[..., c].ravel()
        ref = reference[..., c].ravel()
        src_counts = np.bincount(src, minlength=256)
        ref_counts = np.bincount(ref, minlength=256)
        src_values = np.nonzero(src_counts)[0]
        ref_values = np.nonzero(ref_counts)[0]
        src_quantiles = np.cumsum(src_counts[src_values]) / src.size
        ref_quantiles = np.cumsum(ref_counts[ref_values]) / ref.size
        mapped = np.interp(src_quantiles, ref_quantiles, ref_values)
        lookup = np.zeros(256)
        lookup[src_values] = mapped
        matched[..., c] = lookup[source[..., c]].astype(source.dtype)  # truncates, like an 8-bit store
    return matched


def _lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.3, 0.59, 0.11])


def luminosity_blend(base: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """Hue and saturation of `base`, luminosity of `blend` (W3C/Photoshop "Luminosity"), float RGB in [0, 1]."""
    out = base + (_lum(blend) - _lum(base))[..., None]
    lum = _lum(out)[..., None]
    lo = out.min(axis=-1, keepdims=True)
    hi = out.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(lo < 0, lum + (out - lum) * lum / (lum - lo), out)
        out = np.where(hi > 1, lum + (out - lum) * (1 - lum) / (hi - lum), out)
    return np.clip(np.nan_to_num(out), 0.0, 1.0)


def setup_color_correction(image: Image.Image) -> np.ndarray:
    """The correction target for an init image: its 8-bit CIELAB pixels."""
    log.info("Calibrating color correction.")
    return rgb_to_lab(np.asarray(image.convert("RGB")))


def apply_color_correction(correction: np.ndarray, original_image: Image.Image) -> Image.Image:
    """Move the colours of a generated image towards the init image's (see the module docstring)."""
    log.info("Applying color correction.")
    generated = np.asarray(original_image.convert("RGB"))
    corrected = lab_to_rgb(match_histograms(rgb_to_lab(generated), correction))
    result = luminosity_blend(corrected / 255.0, generated / 255.0)
    return Image.fromarray(np.floor(result * 255 + 0.5).astype(np.uint8), "RGB")
