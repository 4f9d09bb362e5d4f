"""The Extras tab's work (upscale existing images, keep their parameters) and SD upscale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from modules import images, postprocessing, processing, sd_upscale, shared, upscaler
from modules.errors import NotFoundError, UserError


def blocks(seed: int, w: int = 64, h: int = 64) -> Image.Image:
    rs = np.random.RandomState(seed)
    arr = np.kron(rs.randint(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    return Image.fromarray(arr.astype(np.uint8))


def extras(image, **kwargs):
    """The API's extra-single-image call (A1111's own test payload as the default)."""
    args = dict(extras_mode=0, resize_mode=0, image=image, image_folder=None, input_dir="", output_dir="",
                show_extras_results=True, gfpgan_visibility=0, codeformer_visibility=0, codeformer_weight=0,
                upscaling_resize=2, upscaling_resize_w=128, upscaling_resize_h=128, upscaling_crop=True,
                extras_upscaler_1="Lanczos", extras_upscaler_2="None", extras_upscaler_2_visibility=0,
                upscale_first=False, save_output=False)
    args.update(kwargs)
    return postprocessing.run_extras(**args)


@pytest.fixture(autouse=True)
def upscalers():
    upscaler.load_upscalers()
    postprocessing.upscale_cache.items.clear()


def arr(im):
    return np.asarray(im.convert("RGB")).astype(int)


def test_scale_by(data_dir):
    im = blocks(0)
    shown, html, _ = extras(im)
    assert len(shown) == 1 and shown[0].size == (128, 128)
    assert np.array_equal(arr(shown[0]), arr(im.resize((128, 128), Image.Resampling.LANCZOS)))
    assert "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" in html


def test_scale_to_with_and_without_crop():
    im = blocks(1, 64, 48)
    shown, html, _ = extras(im, resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100)
    # scaled by max(100/64, 100/48) to cover 100x100 (Lanczos to 128x96, multiples of 8), then centre-cropped
    assert shown[0].size == (100, 100)
    covered = postprocessing.upscaler.find_upscaler("Lanczos").scaler.upscale(im, 100 / 48)
    assert covered.size == (128, 96)
    expected = Image.new("RGB", (100, 100))
    expected.paste(covered, (50 - 64, 50 - 48))
    assert np.array_equal(arr(shown[0]), arr(expected))
    assert "Postprocess upscale to: 100x100" in html and "Postprocess crop to: 100x100" in html
    shown, _, _ = extras(im, resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100, upscaling_crop=False)
    assert shown[0].size == (128, 96)


def test_max_side_length_limits_scale_by():
    shown, html, _ = extras(blocks(2, 64, 32), upscaling_resize=4, max_side_length=128)
    assert shown[0].size == (128, 64) and "Max side length: 128" in html


def test_second_upscaler_is_blended_in():
    im = blocks(3, 32, 32)
    shown, html, _ = extras(im, extras_upscaler_2="Nearest", extras_upscaler_2_visibility=0.25)
    lanczos = im.resize((64, 64), Image.Resampling.LANCZOS)
    nearest = im.resize((64, 64), Image.Resampling.NEAREST)
    assert np.array_equal(arr(shown[0]), arr(Image.blend(lanczos, nearest, 0.25)))
    assert "Postprocess upscaler 2: Nearest" in html


def test_upscaler_none_leaves_the_image_and_face_restoration_is_ignored():
    im = blocks(4)
    shown, html, _ = extras(im, extras_upscaler_1="None", gfpgan_visibility=1, codeformer_visibility=1)
    assert np.array_equal(arr(shown[0]), arr(im)) and "upscale" not in html


def test_saved_file_keeps_the_parameters(data_dir):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler, Seed: 1")
    path = data_dir / "with-params.png"
    blocks(5).save(path, pnginfo=info)
    shown, _, _ = extras(images.read(str(path)), save_output=True)
    folder = data_dir / shared.opts.outdir_extras_samples
    saved = sorted(folder.glob("*.png"))
    assert len(saved) == 1
    with Image.open(saved[-1]) as im:
        assert im.size == (128, 128)
        assert im.info["parameters"] == "a cat\nSteps: 20, Sampler: Euler, Seed: 1"
        assert im.info["postprocessing"] == im.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_batch_and_directory(tmp_path):
    shown, _, _ = extras(None, extras_mode=1, image_folder=[blocks(6, 16, 16), blocks(7, 24, 16)])
    assert [im.size for im in shown] == [(32, 32), (48, 32)]

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    blocks(8, 16, 16).save(src / "one.png")
    blocks(9, 16, 8).save(src / "two.png")
    (src / "broken.png").write_bytes(b"garbage")
    shown, _, _ = extras(None, extras_mode=2, input_dir=str(src), output_dir=str(out), show_extras_results=False,
                         save_output=True)
    assert shown == []
    assert sorted(p.name for p in out.iterdir()) == ["one.png", "two.png"]  # use_original_name_batch
    with Image.open(out / "two.png") as im:
        assert im.size == (32, 16)


def test_bad_extras_input():
    with pytest.raises(NotFoundError, match="could not find upscaler named 'Nope'"):
        extras(blocks(0), extras_upscaler_1="Nope")
    with pytest.raises(UserError, match="resize mode must be 0"):
        extras(blocks(0), resize_mode=3)
    with pytest.raises(UserError, match="No image selected"):
        extras(None)
    with pytest.raises(UserError, match="Input directory"):
        extras(None, extras_mode=2, input_dir="/no/such/folder")


def test_sd_upscale(sd1):
    """A1111's API test arguments: upscaler by name or index, tile overlap, scale; the tiles go through img2img
    at the processing size and come back blended."""
    init = blocks(10)
    p = processing.StableDiffusionProcessingImg2Img(init_images=[init], prompt="a cat", steps=2, width=64, height=64,
                                                    seed=3, sampler_name="Euler", denoising_strength=0.3,
                                                    batch_size=4, do_not_save_samples=True, do_not_save_grid=True)
    calls = []
    original = processing.process_images

    def spy(p_):
        calls.append(list(p_.init_images))
        return original(p_)

    processing.process_images = spy
    try:
        res = sd_upscale.sd_upscale(p, 16, "Lanczos", 1.5)
    finally:
        processing.process_images = original
    assert len(res.images) == 1 and res.images[0].size == (96, 96)
    assert len(calls) == 1 and len(calls[0]) == 4 and all(t.size == (64, 64) for t in calls[0])  # 2x2 tiles
    assert "SD upscale overlap: 16, SD upscale upscaler: Lanczos" in res.info
    with pytest.raises(UserError, match="tile overlap"):
        sd_upscale.sd_upscale(p, 64, 1, 2.0)
    with pytest.raises(NotFoundError, match="out of range"):
        sd_upscale.sd_upscale(p, 8, 999, 2.0)
