"""Inpainting masks: binarising, A1111's separable Gaussian blur, the "only masked" rectangles, fill, compositing,
and the sketch helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from modules import masking, processing


def l_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a.astype(np.uint8), "L")


@pytest.mark.parametrize("blur,size", [(0.5, 3), (1, 7), (2, 11), (4, 21), (8, 41), (64, 321)])
def test_blur_kernel_size(blur, size):
    assert masking.blur_kernel_size(blur) == size == 2 * int(2.5 * blur + 0.5) + 1


def test_gaussian_kernel_values():
    k = masking.gaussian_kernel(21, 4)
    expected = np.array([math.exp(-((i - 10) ** 2) / 32) for i in range(21)])
    assert np.allclose(k, expected / expected.sum(), rtol=1e-12)
    assert k.sum() == pytest.approx(1.0)


def test_horizontal_blur_of_a_point_is_the_rounded_kernel():
    a = np.zeros((5, 41))
    a[2, 20] = 255
    out = np.asarray(masking.blur_mask(l_image(a), 4, 0)).astype(int)
    k = masking.gaussian_kernel(21, 4)
    assert list(out[2, 10:31]) == [int(math.floor(255 * v + 0.5)) for v in k]
    assert out[[0, 1, 3, 4]].max() == 0 and out[2, :10].max() == 0


def test_borders_mirror_without_repeating_the_edge_pixel():
    a = np.zeros((1, 30))
    a[0, 1] = 255
    out = np.asarray(masking.blur_mask(l_image(a), 2, 0)).astype(int)
    k = masking.gaussian_kernel(11, 2)  # centre index 5
    # column 0 sees pixel 1 both directly (offset +1) and through the mirror at -1
    assert out[0, 0] == int(math.floor(255 * 2 * k[6] + 0.5))


def test_separable_blur_equals_a_two_pass_computation():
    rs = np.random.RandomState(0)
    a = (rs.rand(24, 32) > 0.7) * 255.0
    out = np.asarray(masking.blur_mask(l_image(a), 3, 1.5)).astype(int)

    def one_pass(x, sigma, axis):
        n = 2 * int(2.5 * sigma + 0.5) + 1
        k = np.exp(-((np.arange(n) - n // 2) ** 2) / (2 * sigma**2))
        k /= k.sum()
        pad = [(0, 0), (0, 0)]
        pad[axis] = (n // 2, n // 2)
        xp = np.pad(x, pad, mode="reflect")  # numpy's "reflect" is reflect-101
        moved = np.moveaxis(xp, axis, -1)
        res = sum(k[i] * moved[..., i:i + moved.shape[-1] - n + 1] for i in range(n))
        return np.floor(np.moveaxis(res, -1, axis) + 0.5)

    expected = one_pass(one_pass(a, 3, 1), 1.5, 0)
    assert np.abs(out - expected).max() <= 1 and (out == expected).mean() > 0.99


def test_zero_blur_keeps_the_mask_and_white_stays_white():
    a = np.zeros((8, 8))
    a[2:5, 3:6] = 255
    assert np.array_equal(np.asarray(masking.blur_mask(l_image(a), 0, 0)), a)
    assert np.asarray(masking.blur_mask(l_image(np.full((8, 8), 255)), 5, 5)).min() == 255


def test_binary_mask_from_alpha_or_luminance():
    rgba = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 129))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    assert list(np.asarray(masking.create_binary_mask(rgba))[0]) == [0, 255, 0]
    grey = Image.new("RGB", (2, 1), (100, 100, 100))
    grey.putpixel((1, 0), (200, 200, 200))
    assert list(np.asarray(masking.create_binary_mask(grey))[0]) == [0, 255]
    assert list(np.asarray(masking.create_binary_mask(grey, round=False))[0]) == [100, 200]
    assert processing.create_binary_mask is masking.create_binary_mask


def test_crop_region_v2_and_legacy():
    a = np.zeros((40, 50))
    a[5:16, 10:21] = 255
    assert masking.get_crop_region_v2(l_image(a)) == (10, 5, 21, 16)
    assert masking.get_crop_region_v2(l_image(a), 4) == (6, 1, 25, 20)
    assert masking.get_crop_region_v2(l_image(a), 30) == (0, 0, 50, 40)
    assert masking.get_crop_region_v2(a) == (10, 5, 21, 16)  # numpy input
    blank = l_image(np.zeros((40, 50)))
    assert masking.get_crop_region_v2(blank, 4) is None
    assert masking.get_crop_region(blank, 4) == (46, 36, 4, 4)
    assert masking.get_crop_region(l_image(a), 4) == (6, 1, 25, 20)


@pytest.mark.parametrize("region,proc,image,expected", [
    ((100, 200, 228, 232), (512, 512), (512, 512), (100, 152, 228, 280)),  # 128x32 → 128x128, centred
    ((0, 0, 128, 32), (512, 512), (512, 512), (0, 0, 128, 128)),  # pushed back inside at the top
    ((0, 480, 128, 512), (512, 512), (512, 512), (0, 384, 128, 512)),  # and at the bottom
    ((10, 10, 20, 50), (512, 256), (512, 512), (0, 10, 80, 50)),  # 10x40 → 80x40 for a 2:1 processing size
    ((0, 0, 40, 10), (64, 64), (40, 30), (0, 0, 40, 30)),  # cannot grow beyond the image
])
def test_expand_crop_region(region, proc, image, expected):
    assert masking.expand_crop_region(region, *proc, *image) == expected


def test_fill_keeps_the_unmasked_area_and_smears_colours_into_the_mask():
    im = Image.new("RGB", (32, 32), (0, 0, 255))
    im.paste((255, 0, 0), (8, 8, 24, 24))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    out = np.asarray(masking.fill(im, mask)).astype(int)
    inside, outside = out[8:24, 8:24], out[np.asarray(mask) == 0]
    assert (outside == [0, 0, 255]).all()
    assert inside[..., 0].max() < 20 and inside[..., 2].min() > 200  # the red is gone, blue smeared in


def test_overlay_and_uncrop_rectangles():
    original = Image.new("RGB", (100, 80), (10, 20, 30))
    mask = Image.new("L", (100, 80), 0)
    mask.paste(255, (30, 30, 50, 50))
    overlay = masking.overlay_image(original, mask)
    assert overlay.getpixel((0, 0)) == (10, 20, 30, 255) and overlay.getpixel((40, 40))[3] == 0
    generated = Image.new("RGB", (64, 64), (200, 100, 0))
    final, before = processing.apply_overlay(generated, (20, 20, 40, 40), overlay)
    assert final.size == (100, 80)
    assert final.getpixel((40, 40)) == (200, 100, 0)  # inside the mask: the generated crop
    assert final.getpixel((25, 25)) == (10, 20, 30) and final.getpixel((90, 70)) == (10, 20, 30)
    assert before.getpixel((20, 20))[3] == 255 and before.getpixel((19, 19))[3] == 0  # pasted at (20, 20)
    assert before.getpixel((59, 59))[3] == 255 and before.getpixel((60, 60))[3] == 0  # 40x40
    same, _ = processing.apply_overlay(generated, None, None)
    assert same is generated


def test_sketch_and_inpaint_sketch():
    original = Image.new("RGB", (16, 16), (100, 100, 100))
    strokes = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    strokes.paste((255, 0, 0, 255), (4, 4, 8, 8))
    sketched = masking.sketch_image(original, strokes)
    assert sketched.getpixel((5, 5))[:3] == (255, 0, 0) and sketched.getpixel((0, 0))[:3] == (100, 100, 100)

    image, mask = masking.inpaint_sketch(original, sketched, mask_alpha=0, mask_blur=0)
    m = np.asarray(mask)
    assert m[4:8, 4:8].min() == 255 and m.sum() == 16 * 255
    assert image.getpixel((5, 5))[:3] == (255, 0, 0) and image.getpixel((12, 12))[:3] == (100, 100, 100)
    _, half = masking.inpaint_sketch(original, sketched, mask_alpha=50, mask_blur=0)
    assert np.asarray(half)[5, 5] in (127, 128)
