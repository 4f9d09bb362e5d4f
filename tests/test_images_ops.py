"""The img2img resize modes, reading/flattening user images, and tiling an image into overlapping tiles."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from modules import images, images_grid, images_ops
from modules.errors import UserError


def striped(w: int, h: int, seed: int = 0) -> Image.Image:
    rs = np.random.RandomState(seed)
    return Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8))


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).astype(int)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("size", [(100, 50), (50, 100), (64, 64), (1, 1), (7, 300)])
def test_every_mode_gives_exactly_the_target_size(mode, size):
    out = images_ops.resize_image(mode, striped(*size), 64, 48, upscaler_name="None")
    assert out.size == (64, 48)


def test_just_resize_stretches():
    im = striped(100, 50)
    assert np.array_equal(arr(images_ops.resize_image(0, im, 64, 64, "None")),
                          arr(im.resize((64, 64), images_ops.LANCZOS)))


def test_crop_and_resize_covers_and_crops_the_centre():
    wide = striped(100, 50)
    # cover 64x64: scaled to 128x64 (100*64//50), centred, 32 columns cut on each side
    expected = wide.resize((128, 64), images_ops.LANCZOS).crop((32, 0, 96, 64))
    assert np.array_equal(arr(images_ops.resize_image(1, wide, 64, 64, "None")), arr(expected))
    tall = striped(50, 100)
    expected = tall.resize((64, 128), images_ops.LANCZOS).crop((0, 32, 64, 96))
    assert np.array_equal(arr(images_ops.resize_image(1, tall, 64, 64, "None")), arr(expected))


def edge_distance(bar: np.ndarray, edge: np.ndarray, far: np.ndarray) -> tuple[float, float]:
    return float(np.abs(bar - edge).mean()), float(np.abs(bar - far).mean())


def test_resize_and_fill_fits_and_stretches_the_edges_into_the_bars():
    wide = striped(100, 50)
    out = arr(images_ops.resize_image(2, wide, 64, 64, "None"))
    fitted = arr(wide.resize((64, 32), images_ops.LANCZOS))  # 50*64//100 = 32 rows, pasted at y = 32 - 16
    assert np.array_equal(out[16:48], fitted)
    # the bars repeat one line sampled at the image's edge (rows 0..15 and 48..63 are each constant)
    assert (out[:16] == out[0]).all() and (out[48:] == out[63]).all()
    near, far = edge_distance(out[0], fitted[0], fitted[16])
    assert near < far / 2
    near, far = edge_distance(out[63], fitted[-1], fitted[16])
    assert near < far / 2
    tall = striped(50, 100)
    out = arr(images_ops.resize_image(2, tall, 64, 64, "None"))
    fitted = arr(tall.resize((32, 64), images_ops.LANCZOS))
    assert np.array_equal(out[:, 16:48], fitted)
    assert (out[:, :16] == out[:, :1]).all() and (out[:, 48:] == out[:, 63:]).all()
    near, far = edge_distance(out[:, 0], fitted[:, 0], fitted[:, 16])
    assert near < far / 2


def test_latent_mode_resizes_images_like_fill():
    im = striped(100, 50)
    assert np.array_equal(arr(images_ops.resize_image(3, im, 64, 64, "None")),
                          arr(images_ops.resize_image(2, im, 64, 64, "None")))


def test_enlarging_goes_through_the_named_upscaler():
    im = striped(32, 32)
    out = images_ops.resize_image(0, im, 64, 64, upscaler_name="Nearest")
    assert np.array_equal(arr(out), arr(im.resize((64, 64), Image.Resampling.NEAREST)))
    # masks (mode L) are always resized with Lanczos
    mask = im.convert("L")
    assert np.array_equal(np.asarray(images_ops.resize_image(0, mask, 64, 64, upscaler_name="Nearest")),
                          np.asarray(mask.resize((64, 64), images_ops.LANCZOS)))


def test_zero_target_size_is_refused():
    with pytest.raises(UserError, match="at least 1 pixel"):
        images_ops.resize_image(0, striped(8, 8), 0, 8)


def test_flatten_puts_transparency_on_the_background_colour():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 255, 0, 255))
    flat = images_ops.flatten(rgba, "#0000ff")
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (0, 255, 0) and flat.getpixel((1, 1)) == (0, 0, 255)
    assert images_ops.flatten(Image.new("LA", (2, 2), (10, 0)), "#ffffff").getpixel((0, 0)) == (255, 255, 255)


def test_read_decodes_and_refuses_a_corrupt_file(tmp_path):
    good = tmp_path / "a.png"
    striped(8, 8).save(good)
    assert images_ops.read(str(good)).size == (8, 8)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(UserError, match="bad.png: not a readable image"):
        images_ops.read(str(bad))
    with pytest.raises(UserError, match="not found"):
        images_ops.read(str(tmp_path / "missing.png"))
    assert images.read is images_ops.read  # A1111's name


def test_palette_transparency_becomes_alpha():
    p = Image.new("P", (2, 2))
    p.putpalette([0, 0, 0, 255, 0, 0] * 128)
    buf = io.BytesIO()
    p.save(buf, "PNG", transparency=b"\x00\x80")  # several transparent palette entries: stored as bytes
    assert images_ops.fix_image(Image.open(buf)).mode == "RGBA"


def test_split_grid_layout_and_combine_roundtrip():
    im = striped(100, 70)
    grid = images_grid.split_grid(im, 64, 64, 16)
    # columns: ceil((100-16)/48) = 2 at x = 0, 36; rows: 2 at y = 0, 6
    assert [y for y, _, _ in grid.tiles] == [0, 6]
    assert [x for x, _, _ in grid.tiles[0][2]] == [0, 36]
    assert all(t.size == (64, 64) for _, _, row in grid.tiles for _, _, t in row)
    assert np.array_equal(arr(images_grid.combine_grid(grid)), arr(im))
    assert images.split_grid is images_grid.split_grid and images.combine_grid is images_grid.combine_grid


def test_combine_blends_overlaps_linearly():
    left, right = Image.new("RGB", (8, 4), (0, 0, 0)), Image.new("RGB", (8, 4), (200, 200, 200))
    grid = images_grid.Grid([[0, 4, [[0, 8, left], [4, 8, right]]]], 8, 4, 12, 4, 4)
    row = arr(images_grid.combine_grid(grid))[0, :, 0]
    # overlap x = 4..7: right tile weighted 0, 1/4, 2/4, 3/4 (the 8-bit ramp 0, 63, 127, 191)
    assert list(row[:4]) == [0, 0, 0, 0] and list(row[8:]) == [200] * 4
    assert np.allclose(row[4:8], [0, 200 * 63 / 255, 200 * 127 / 255, 200 * 191 / 255], atol=1)


def test_image_smaller_than_a_tile_and_zero_overlap():
    small = striped(40, 30)
    grid = images_grid.split_grid(small, 64, 64, 8)
    assert len(grid.tiles) == 1 and len(grid.tiles[0][2]) == 1
    assert np.array_equal(arr(images_grid.combine_grid(grid)), arr(small))
    im = striped(128, 64)
    assert np.array_equal(arr(images_grid.combine_grid(images_grid.split_grid(im, 64, 64, 0))), arr(im))
    with pytest.raises(UserError, match="overlap"):
        images_grid.split_grid(im, 64, 64, 64)
