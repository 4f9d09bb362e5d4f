"""img2img and inpainting through process_images on the tiny checkpoints (64×64, few steps)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from modules import devices, images_ops, img2img, masking, processing, rng, sd_models, sd_samplers, sd_vae, shared
from modules.errors import UserError


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    return {key: sd_models.find_checkpoint(tiny_checkpoints[key].name) for key in ("sd1", "sd1_inpaint")}


@pytest.fixture
def sd1(models):
    return sd_models.load_model(models["sd1"])


@pytest.fixture
def inpaint_model(models):
    model = sd_models.load_model(models["sd1_inpaint"])
    yield model
    sd_models.load_model(models["sd1"])


def blocks(seed: int, w: int = 64, h: int = 64) -> Image.Image:
    """A blocky random image (8-pixel squares), so VAE round trips stay close."""
    rs = np.random.RandomState(seed)
    arr = np.kron(rs.randint(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    return Image.fromarray(arr.astype(np.uint8))


def square_mask(box=(16, 16, 48, 48), size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


COMMON = dict(prompt="a cat", steps=3, width=64, height=64, seed=11, sampler_name="Euler", cfg_scale=7.0,
              do_not_save_samples=True, do_not_save_grid=True)


def make(**kwargs) -> processing.StableDiffusionProcessingImg2Img:
    args = {**COMMON, "init_images": [blocks(0)], "denoising_strength": 0.5, **kwargs}
    return processing.StableDiffusionProcessingImg2Img(**args)


def run(**kwargs) -> tuple[processing.StableDiffusionProcessingImg2Img, processing.Processed]:
    p = make(**kwargs)
    return p, processing.process_images(p)


def prepare(p: processing.StableDiffusionProcessingImg2Img) -> processing.StableDiffusionProcessingImg2Img:
    """What process_images does before sampling: validate and init (masks, init latents, conditioning)."""
    p.validate()
    rng.set_default_settings(processing.rng_settings())
    p.init([p.prompt], [p.seed], [p.seed])
    return p


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.moveaxis(np.asarray(image.convert("RGB"), dtype=np.float32) / 255, 2, 0))[None]


def vae_roundtrip(model, image: Image.Image) -> np.ndarray:
    z = sd_vae.encode_images(model, as_tensor(image))
    return pixels(processing.tensor_to_pil(processing.decode_latent_batch(model, z)[0]))


def test_batch_infotext_saved_init_image_and_per_image_seeds(sd1, monkeypatch, data_dir):
    monkeypatch.setitem(shared.opts.data, "save_init_img", True)
    init = blocks(0)
    p, batch = run(init_images=[init], batch_size=2, seed=100, sampler_name="Euler a", steps=2,
                   denoising_strength=0.6)
    assert len(batch.images) == 2 and batch.images[0].size == (64, 64) and batch.all_seeds == [100, 101]
    params = batch.infotexts[1].splitlines()[-1]
    md5 = hashlib.md5(init.tobytes()).hexdigest()
    assert "Seed: 101" in params and "Denoising strength: 0.6" in params and f"Init image hash: {md5}" in params
    assert "Mask blur" not in params and "Masked content" not in params
    assert (data_dir / shared.opts.outdir_init_images / f"{md5}.png").is_file()
    assert p.outpath_samples.endswith(os.path.join("outputs", "img2img-images"))

    monkeypatch.setitem(shared.opts.data, "save_init_img", False)
    _, alone = run(init_images=[init], seed=101, sampler_name="Euler a", steps=2, denoising_strength=0.6)
    # CPU float32 batches are not bit-exact; at most one level per pixel (DESIGN.md "Tolerances that are real")
    assert np.abs(pixels(batch.images[1]) - pixels(alone.images[0])).max() <= 1


def test_denoising_zero_keeps_the_init_image_up_to_a_vae_round_trip(sd1, monkeypatch):
    init = blocks(3)
    monkeypatch.setitem(shared.opts.data, "img2img_fix_steps", True)  # exactly 0 steps run
    _, res = run(init_images=[init], denoising_strength=0.0)
    assert np.array_equal(pixels(res.images[0]), vae_roundtrip(sd1, init))

    # Without fix steps one step runs at the smallest sigma: with a model that predicts no noise, the result is
    # the init latent plus that sigma's share of the seed noise.
    monkeypatch.setitem(shared.opts.data, "img2img_fix_steps", False)
    monkeypatch.setattr(sd1, "apply_model", lambda x, t, cond: torch.zeros_like(x))
    decoded = []
    decode = processing.decode_latent_batch
    monkeypatch.setattr(processing, "decode_latent_batch", lambda model, z: decoded.append(z) or decode(model, z))
    run(init_images=[init], denoising_strength=0.0)
    noise = rng.ImageRNG((4, 8, 8), [COMMON["seed"]]).next()
    z = sd_vae.encode_images(sd1, as_tensor(init))
    sigma_min = sd_samplers.create_sampler("Euler", sd1).model_wrap.get_sigmas(3)[-2]
    assert torch.allclose(decoded[0], z + noise * sigma_min, atol=1e-5)
    assert (decoded[0] - z).abs().max() < 0.2


def test_denoising_one_ignores_the_init_image(sd1):
    a, b = blocks(0), blocks(1)
    _, full_a = run(init_images=[a], denoising_strength=1.0, steps=2)
    _, full_b = run(init_images=[b], denoising_strength=1.0, steps=2)
    inits = np.abs(pixels(a) - pixels(b)).mean()
    assert np.abs(pixels(full_a.images[0]) - pixels(full_b.images[0])).mean() < inits / 50


@pytest.mark.parametrize("fill,label", [(0, "fill"), (1, None), (2, "latent noise"), (3, "latent nothing")])
def test_masked_content_modes_set_the_starting_latent(sd1, monkeypatch, fill, label):
    init, mask = blocks(2), square_mask()
    p = prepare(make(init_images=[init], mask=mask, mask_blur=0, inpainting_fill=fill, inpaint_full_res=False))
    keep = np.ones((8, 8), bool)
    keep[2:6, 2:6] = False  # the 32×32 square at (16, 16) in latent cells
    assert torch.equal(p.nmask[0].bool().cpu(), torch.from_numpy(~keep))
    assert torch.equal(p.mask[0].bool().cpu(), torch.from_numpy(keep))
    # every mode but "original" encodes the image with the masked area filled from its surroundings
    source = init if fill == 1 else masking.fill(init, mask)
    encoded = sd_vae.encode_images(sd1, as_tensor(source))[0]
    if fill == 2:  # the noise is per batch, from the batch's seeds: sample() puts it in
        p.seeds, p.rng = [p.seed], rng.ImageRNG((4, 8, 8), [p.seed])
        monkeypatch.setattr(p.sampler, "sample_img2img", lambda p_, x, *args, **kwargs: x)
        p.sample(None, None, p.seeds, [p.seed], 0, [p.prompt])
    start = p.init_latent[0]
    assert torch.allclose(start[:, keep], encoded[:, keep], atol=1e-6)  # the kept area
    inside = start[:, ~keep]
    if fill in (0, 1):
        assert torch.allclose(inside, encoded[:, ~keep], atol=1e-6)
    elif fill == 2:
        noise = rng.ImageRNG((4, 8, 8), [p.seed]).next()[0]
        assert torch.allclose(inside, noise[:, ~keep], atol=1e-6)
    else:
        assert torch.count_nonzero(inside) == 0
    assert p.extra_generation_params.get("Masked content") == label
    assert "Mask blur" not in p.extra_generation_params  # blur 0 is not written


def test_inpainting_model_conditioning(inpaint_model, monkeypatch):
    init, mask = blocks(4), square_mask()
    p = prepare(make(init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False, inpainting_fill=1,
                     batch_size=2))
    cond = p.image_conditioning
    assert cond.shape == (2, 5, 8, 8)
    latent_mask = torch.zeros(8, 8)
    latent_mask[2:6, 2:6] = 1
    assert torch.equal(cond[:, 0].cpu(), latent_mask.expand(2, 8, 8))
    source = as_tensor(init) * 2 - 1
    full_mask = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255)
    masked = sd_vae.encode_latents(inpaint_model, source * (1 - full_mask))
    assert torch.allclose(cond[0, 1:], masked[0], atol=1e-5)
    assert p.is_using_inpainting_conditioning

    monkeypatch.setitem(shared.opts.data, "inpainting_mask_weight", 0.0)  # the unmasked image
    p = prepare(make(init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=False, inpainting_fill=1))
    assert torch.allclose(p.image_conditioning[0, 1:], sd_vae.encode_latents(inpaint_model, source)[0], atol=1e-5)

    monkeypatch.setitem(shared.opts.data, "inpainting_mask_weight", 0.5)
    _, res = run(init_images=[init], mask=mask, inpaint_full_res=False, steps=2, denoising_strength=0.4)
    assert "Conditional mask weight: 0.5" in res.info


def test_only_masked_crop_paste_back_colour_correction_and_mask_outputs(sd1, monkeypatch):
    monkeypatch.setitem(shared.opts.data, "img2img_color_correction", True)
    monkeypatch.setitem(shared.opts.data, "return_mask", True)
    monkeypatch.setitem(shared.opts.data, "return_mask_composite", True)
    init = blocks(5, 96, 80)
    mask = square_mask((40, 30, 56, 46), (96, 80))
    p, res = run(init_images=[init], mask=mask, mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=8,
                 inpainting_fill=1, steps=2)
    assert p.paste_to == (32, 22, 32, 32)  # the 16×16 mask grown by 8 on each side
    out = pixels(res.images[0])
    assert out.shape == (80, 96, 3)
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], pixels(init)[outside])
    assert np.abs(out[30:46, 40:56] - pixels(init)[30:46, 40:56]).mean() > 5
    assert "Inpaint area: Only masked, Masked area padding: 8" in res.info
    assert len(p.color_corrections) == 1
    assert len(res.images) == 1 and len(res.extra_images) == 2  # the mask and the masked composite
    mask_out, composite = res.extra_images
    assert mask_out.mode == "RGB" and composite.mode == "RGBA" and mask_out.size == composite.size == (96, 80)
    assert np.array_equal(np.asarray(mask_out)[:, :, 0], np.asarray(mask))


def test_only_masked_region_is_expanded_to_the_processing_aspect(sd1):
    p = prepare(make(init_images=[blocks(5, 128, 96)], mask=square_mask((10, 40, 90, 50), (128, 96)), mask_blur=0,
                     inpaint_full_res=True, inpaint_full_res_padding=0, width=64, height=32))
    # 80×10 region at 2:1 → 80×40, centred on the mask rows and kept inside the image
    assert p.paste_to == (10, 25, 80, 40)
    assert p.init_latent.shape == (1, 4, 4, 8)


def test_outpainting_with_resize_and_fill(sd1):
    init = blocks(6, 64, 32)
    mask = Image.new("L", (64, 64), 255)
    mask.paste(0, (0, 16, 64, 48))  # everything but the band where the image lands
    filled = pixels(images_ops.resize_image(2, init, 64, 64))
    _, res = run(init_images=[init], mask=mask, resize_mode=2, inpaint_full_res=False, mask_blur=0,
                 inpainting_fill=1, denoising_strength=0.9, steps=2)
    out = pixels(res.images[0])
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[16:48], pixels(init))  # the original, untouched
    assert np.abs(out[:16] - filled[:16]).mean() > 5 and np.abs(out[48:] - filled[48:]).mean() > 5  # new content


def test_timestep_sampler_inpainting_keeps_the_unmasked_area(sd1):
    init = blocks(7)
    _, res = run(init_images=[init], mask=square_mask(), mask_blur=0, inpaint_full_res=False, sampler_name="DDIM",
                 steps=3, denoising_strength=0.75, inpainting_fill=1)
    out = pixels(res.images[0])
    keep = np.asarray(square_mask()) == 0
    assert np.array_equal(out[keep], pixels(init)[keep])


def test_latent_resize_mode(sd1):
    p = prepare(make(init_images=[blocks(8, 32, 32)], resize_mode=3))
    assert p.init_latent.shape == (1, 4, 8, 8)
    direct = sd_vae.encode_images(sd1, as_tensor(blocks(8, 32, 32)))
    assert torch.allclose(p.init_latent, torch.nn.functional.interpolate(direct, size=(8, 8), mode="bilinear"))


def test_mask_of_another_size_is_stretched_over_the_image(sd1):
    small = prepare(make(mask=square_mask((8, 8, 24, 24), (32, 32)), mask_blur=0, inpaint_full_res=False))
    same = prepare(make(mask=square_mask(), mask_blur=0, inpaint_full_res=False))
    assert torch.equal(small.nmask, same.nmask)
    crop = prepare(make(mask=square_mask((8, 8, 24, 24), (32, 32)), mask_blur=0, inpaint_full_res=True))
    assert crop.paste_to == (16, 16, 32, 32)


def test_all_black_mask(sd1):
    init = blocks(9)
    _, res = run(init_images=[init], mask=Image.new("L", (64, 64), 0), inpaint_full_res=False, steps=2)
    assert np.array_equal(pixels(res.images[0]), pixels(init))  # nothing inpainted, the original kept
    assert "mask is empty" in res.comments
    p = prepare(make(init_images=[init], mask=Image.new("L", (64, 64), 0), inpaint_full_res=True))
    assert not p.inpaint_full_res and p.paste_to is None and p.mask is None  # plain img2img instead
    assert "Unable to perform \"Inpaint Only mask\"" in "".join(p.comments)


def test_one_pixel_image_and_bad_parameters(sd1):
    p = prepare(make(init_images=[Image.new("RGB", (1, 1), (200, 10, 10))]))
    assert p.init_latent.shape == (1, 4, 8, 8)
    for kwargs, message in (
        ({"init_images": []}, "needs an init image"),
        ({"init_images": ["x"]}, "must be an image"),
        ({"resize_mode": 7}, "Resize mode must be one of 0 Just resize"),
        ({"inpainting_fill": 9}, "Masked content"),
        ({"denoising_strength": 1.5}, "between 0 and 1"),
        ({"mask": "x"}, "mask must be an image"),
        ({"init_images": [blocks(0)] * 3, "batch_size": 2}, "bad number of images passed: 3"),
        ({"inpaint_full_res_padding": 2.5}, "padding: whole pixels"),
    ):
        with pytest.raises(UserError, match=message):
            processing.process_images(make(**kwargs))


def test_a1111_api_payload_fields(sd1):
    """A1111's own API test request: booleans for int fields, mask_blur setting both directions."""
    p = make(mask=square_mask(), mask_blur=4, inpainting_mask_invert=False, inpainting_fill=0, inpaint_full_res=False,
             inpaint_full_res_padding=0, resize_mode=0)
    assert p.mask_blur_x == p.mask_blur_y == 4 and p.mask_blur == 4
    p.mask_blur_x = 3
    assert p.mask_blur is None
    p = prepare(make(mask=square_mask(), inpainting_mask_invert=True, inpaint_full_res=False, mask_blur=0))
    assert p.extra_generation_params["Mask mode"] == "Inpaint not masked"
    assert p.nmask[0, 0, 0] == 1 and p.nmask[0, 4, 4] == 0  # the square is kept, the rest inpainted


def test_batch_from_directory(sd1, tmp_path):
    from modules import images

    inputs, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    inputs.mkdir()
    masks.mkdir()
    images.save_image(blocks(1), str(inputs), "", forced_filename="first", info="from png\nSteps: 2, Seed: 77",
                      save_to_dirs=False)
    blocks(2).save(inputs / "second.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    square_mask().save(masks / "first.png")
    square_mask((0, 0, 8, 8)).save(masks / "second.jpg")
    p = make(prompt="base", steps=2, do_not_save_samples=False)
    res = img2img.process_batch(p, str(inputs), str(out), inpaint_mask_dir=str(masks), use_png_info=True,
                                png_info_props=["Prompt", "Seed"])
    assert len(res.images) == 2
    names = sorted(os.listdir(out))
    assert len(names) == 2 and names[0].endswith("-first.png") and names[1].endswith("-second.png")
    first_info = Image.open(out / names[0]).info["parameters"]
    assert first_info.startswith("base from png\n") and "Seed: 77" in first_info
    assert "Mask blur: 4" in first_info
