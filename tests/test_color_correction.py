"""img2img colour correction: 8-bit CIELAB, histogram matching, luminosity blend."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import color_correction as cc


@pytest.mark.parametrize("rgb,lab", [
    # OpenCV's 8-bit encoding of sRGB/D65 CIELAB: L*255/100, a+128, b+128
    ((255, 0, 0), (136, 208, 195)),
    ((0, 255, 0), (224, 42, 211)),
    ((0, 0, 255), (82, 207, 20)),
    ((255, 255, 255), (255, 128, 128)),
    ((0, 0, 0), (0, 128, 128)),
    ((128, 128, 128), (137, 128, 128)),
])
def test_rgb_to_lab_known_values(rgb, lab):
    assert tuple(cc.rgb_to_lab(np.array([[rgb]], dtype=np.uint8))[0, 0]) == lab


def test_lab_roundtrip_stays_within_the_8_bit_quantisation():
    rs = np.random.RandomState(0)
    rgb = rs.randint(0, 256, (64, 64, 3), dtype=np.uint8)
    back = cc.lab_to_rgb(cc.rgb_to_lab(rgb)).astype(int)
    err = np.abs(back - rgb)
    # 8-bit a/b steps are coarse for dark channels of saturated colours; typical errors are a level or less
    assert err.mean() < 1.0 and np.percentile(err, 99) <= 6 and err.max() <= 24


def test_histogram_matching_maps_quantiles():
    source = np.array([[[1], [2], [3], [3]]], dtype=np.uint8)
    reference = np.array([[[10], [20], [30], [30]]], dtype=np.uint8)
    assert cc.match_histograms(source, reference)[..., 0].tolist() == [[10, 20, 30, 30]]
    rs = np.random.RandomState(1)
    ref = rs.randint(0, 128, (32, 32, 3), dtype=np.uint8)
    shuffled = rs.permutation(ref.reshape(-1, 3)).reshape(ref.shape)
    matched = cc.match_histograms(shuffled * 2 + 1, ref)  # other values, same ranks
    for c in range(3):
        assert np.array_equal(np.sort(matched[..., c].ravel()), np.sort(ref[..., c].ravel()))


def test_luminosity_blend_takes_the_blend_layers_luminosity():
    rs = np.random.RandomState(2)
    base = rs.rand(16, 16, 3) * 0.6 + 0.2
    blend = rs.rand(16, 16, 3) * 0.6 + 0.2
    out = cc.luminosity_blend(base, blend)
    lum = np.array([0.3, 0.59, 0.11])
    assert np.allclose(out @ lum, blend @ lum, atol=1e-9)
    assert out.min() >= 0 and out.max() <= 1
    extreme = cc.luminosity_blend(np.array([[[1.0, 0.0, 0.0]]]), np.array([[[1.0, 1.0, 1.0]]]))
    assert np.allclose(extreme, 1.0)  # clipped into range keeping the luminosity


def test_correction_moves_colours_towards_the_init_image_and_keeps_brightness():
    rs = np.random.RandomState(3)
    noise = rs.randint(-20, 21, (32, 32, 3))
    init = Image.fromarray(np.clip(np.array([180, 90, 60]) + noise, 0, 255).astype(np.uint8))
    generated = Image.fromarray(np.clip(np.array([60, 90, 180]) + noise, 0, 255).astype(np.uint8))
    out = np.asarray(cc.apply_color_correction(cc.setup_color_correction(init), generated)).astype(float)
    gen = np.asarray(generated).astype(float)
    assert out[..., 0].mean() > gen[..., 0].mean() + 40  # redder
    assert out[..., 2].mean() < gen[..., 2].mean() - 40  # less blue
    lum = np.array([0.3, 0.59, 0.11])
    assert np.abs(out @ lum - gen @ lum).mean() < 2.0
