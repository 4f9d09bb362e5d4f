"""Upscalers: A1111's list and names, ESRGAN / Real-ESRGAN files in their real key layouts, tiling, bad files."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modules import images_ops, paths_internal, shared, upscaler, upscaler_nets, upscaler_utils
from modules.errors import NotFoundError, UserError

MODELS = Path(paths_internal.models_path)


def tiny_rrdb_state(seed: int, nf=8, nb=1, gc=4, n_up=2, in_ch=3, weight_std=0.05) -> dict[str, torch.Tensor]:
    """Random weights in the BasicSR / Real-ESRGAN key layout, written out by hand."""
    g = torch.Generator().manual_seed(seed)

    def conv(name, cin, cout):
        sd[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * weight_std
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01

    sd: dict[str, torch.Tensor] = {}
    conv("conv_first", in_ch, nf)
    for i in range(nb):
        for k in (1, 2, 3):
            for j in range(1, 5):
                conv(f"body.{i}.rdb{k}.conv{j}", nf + (j - 1) * gc, gc)
            conv(f"body.{i}.rdb{k}.conv5", nf + 4 * gc, nf)
    conv("conv_body", nf, nf)
    for u in range(1, n_up + 1):
        conv(f"conv_up{u}", nf, nf)
    conv("conv_hr", nf, nf)
    conv("conv_last", nf, 3)
    sd["conv_last.bias"] = torch.full((3,), 0.5)
    return sd


def to_old_layout(sd: dict[str, torch.Tensor], nb: int, n_up: int) -> dict[str, torch.Tensor]:
    """The same weights under the original ESRGAN ("model.N") names."""
    hr = 2 + 3 * n_up
    names = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_hr": f"model.{hr}",
             "conv_last": f"model.{hr + 2}", **{f"conv_up{u}": f"model.{3 * u}" for u in range(1, n_up + 1)}}
    out = {}
    for key, value in sd.items():
        module, param = key.rsplit(".", 1)
        if module.startswith("body."):
            _, i, rdb, conv = module.split(".")
            out[f"model.1.sub.{i}.RDB{rdb[-1]}.{conv}.0.{param}"] = value
        else:
            out[f"{names[module]}.{param}"] = value
    return out


def reference_rrdb(sd: dict[str, torch.Tensor], x: torch.Tensor, nb: int, n_up: int, shuffle: int = 1) -> torch.Tensor:
    """ESRGAN's forward pass written out with functional convolutions (independent of modules.upscaler_nets)."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    if shuffle > 1:
        x = F.pixel_unshuffle(x, shuffle)
    feat = conv("conv_first", x)
    trunk = feat
    for i in range(nb):
        block_in = trunk
        for k in (1, 2, 3):
            rdb_in = trunk
            xs = [rdb_in]
            for j in range(1, 5):
                xs.append(lrelu(conv(f"body.{i}.rdb{k}.conv{j}", torch.cat(xs, 1))))
            trunk = conv(f"body.{i}.rdb{k}.conv5", torch.cat(xs, 1)) * 0.2 + rdb_in
        trunk = trunk * 0.2 + block_in
    feat = feat + conv("conv_body", trunk)
    for u in range(1, n_up + 1):
        feat = lrelu(conv(f"conv_up{u}", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def compact_state(seed: int, num_feat=8, num_conv=2, upscale=4) -> dict[str, torch.Tensor]:
    """Real-ESRGAN compact (SRVGGNetCompact) weights: convs at even body indices, PReLU weights at odd ones."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    cin = 3
    index = 0
    for _ in range(num_conv + 1):
        sd[f"body.{index}.weight"] = torch.randn(num_feat, cin, 3, 3, generator=g) * 0.05
        sd[f"body.{index}.bias"] = torch.zeros(num_feat)
        sd[f"body.{index + 1}.weight"] = torch.full((num_feat,), 0.25)
        cin = num_feat
        index += 2
    sd[f"body.{index}.weight"] = torch.randn(3 * upscale * upscale, num_feat, 3, 3, generator=g) * 0.05
    sd[f"body.{index}.bias"] = torch.zeros(3 * upscale * upscale)
    return sd


def sample_image(w=24, h=20, seed=0) -> Image.Image:
    rs = np.random.RandomState(seed)
    base = np.kron(rs.randint(0, 256, (h // 4 + 1, w // 4 + 1, 3)), np.ones((4, 4, 1)))[:h, :w]
    return Image.fromarray(base.astype(np.uint8))


@pytest.fixture
def model_dirs():
    """Model folders that tests write into; emptied and the list reloaded afterwards."""
    written: list[Path] = []

    def write(folder: str, name: str, obj) -> Path:
        path = MODELS / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, bytes):
            path.write_bytes(obj)
        else:
            torch.save(obj, path)
        written.append(path)
        return path

    yield write
    for path in written:
        path.unlink(missing_ok=True)
    upscaler.unload_models()
    upscaler.load_upscalers()


def test_list_order_and_names_as_a1111():
    names = [u.name for u in upscaler.load_upscalers()]
    assert names[:3] == ["None", "Lanczos", "Nearest"]
    assert names[3:] == sorted(names[3:], key=str.lower)
    for expected in ("DAT x2", "DAT x3", "DAT x4", "ESRGAN_4x", "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "SwinIR 4x"):
        assert expected in names
    assert "R-ESRGAN 2x+" not in names  # not in realesrgan_enabled_models by default
    assert shared.sd_upscalers[1].name == "Lanczos"
    api = upscaler.api_upscalers()
    assert api[0] == {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4}
    esrgan = next(x for x in api if x["name"] == "ESRGAN_4x")
    assert esrgan["model_path"].startswith("https://") and esrgan["model_name"] == "ESRGAN_4x"
    assert [x["name"] for x in upscaler.api_latent_upscale_modes()] == [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
        "Latent (nearest-exact)"]
    rs = upscaler.api_realesrgan_models()
    assert len(rs) == 6 and {"name": "R-ESRGAN 2x+", "path": rs[-1]["path"], "scale": 2} == rs[-1]


def test_find_upscaler_by_name_index_and_errors():
    upscaler.load_upscalers()
    assert upscaler.find_upscaler("lanczos").name == "Lanczos"
    assert upscaler.upscaler_by_name_or_index(2).name == "Nearest"
    with pytest.raises(NotFoundError, match="could not find upscaler named 'nope'.*Lanczos"):
        upscaler.find_upscaler("nope")
    assert upscaler.find_upscaler("nope", fallback=True).name == "None"
    with pytest.raises(NotFoundError, match="out of range"):
        upscaler.upscaler_by_name_or_index(999)


@pytest.mark.parametrize("scale,calls,size", [(4, 2, 64), (3, 2, 48), (2, 1, 32), (1, 1, 16), (2.5, 2, 40)])
def test_upscale_runs_the_model_until_it_covers_the_target(monkeypatch, scale, calls, size):
    """A 2x model: applied up to 3 times until scale × size (floored to a multiple of 8) is covered, then Lanczos."""
    scaler = upscaler.UpscalerNone()
    runs = []

    def twice(img, selected_model):
        runs.append(img.size)
        return img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST)

    monkeypatch.setattr(scaler, "do_upscale", twice)
    out = scaler.upscale(sample_image(16, 16), scale)
    assert len(runs) == calls and out.size == (size, size)


def test_lanczos_and_nearest_are_plain_resizes():
    upscaler.load_upscalers()
    im = sample_image(24, 16)
    lanczos = upscaler.find_upscaler("Lanczos")
    out = lanczos.scaler.upscale(im, 2, lanczos.data_path)
    assert np.array_equal(np.asarray(out), np.asarray(im.resize((48, 32), Image.Resampling.LANCZOS)))
    nearest = upscaler.find_upscaler("Nearest")
    out = nearest.scaler.upscale(im, 2, nearest.data_path)
    assert np.array_equal(np.asarray(out), np.asarray(im.resize((48, 32), Image.Resampling.NEAREST)))


def test_esrgan_layouts_load_and_match_the_reference_forward(model_dirs):
    sd = tiny_rrdb_state(1)
    new = model_dirs("ESRGAN", "tiny-new.pth", sd)
    old = model_dirs("ESRGAN", "tiny-old.pth", to_old_layout(sd, nb=1, n_up=2))
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    expected = reference_rrdb(sd, x, nb=1, n_up=2)
    for path in (new, old):
        loaded = upscaler_nets.load_model(str(path), torch.device("cpu"))
        assert loaded.scale == 4 and loaded.architecture == "RRDBNet"
        with torch.no_grad():
            assert torch.allclose(loaded.model(x), expected, atol=1e-6)
    names = [u.name for u in upscaler.load_upscalers()]
    assert "tiny-new" in names and "tiny-old" in names and "ESRGAN_4x" not in names  # files replace the default


def test_real_esrgan_x2_pixel_unshuffle_and_compact(model_dirs):
    sd = tiny_rrdb_state(2, in_ch=12)
    path = model_dirs("RealESRGAN", "x2.pth", {"params_ema": sd})
    loaded = upscaler_nets.load_model(str(path), torch.device("cpu"))
    assert loaded.scale == 2
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference_rrdb(sd, x, nb=1, n_up=2, shuffle=2), atol=1e-6)
        assert loaded.model(x).shape == (1, 3, 16, 24)

    csd = compact_state(3)
    path = model_dirs("RealESRGAN", "compact.pth", {"params": csd})
    loaded = upscaler_nets.load_model(str(path), torch.device("cpu"))
    assert loaded.scale == 4 and loaded.architecture == "SRVGGNetCompact"
    with torch.no_grad():
        h = x
        for i in range(0, 6, 2):
            h = F.prelu(F.conv2d(h, csd[f"body.{i}.weight"], csd[f"body.{i}.bias"], padding=1), csd[f"body.{i + 1}.weight"])
        h = F.conv2d(h, csd["body.6.weight"], csd["body.6.bias"], padding=1)
        expected = F.pixel_shuffle(h, 4) + F.interpolate(x, scale_factor=4, mode="nearest")
        assert torch.allclose(loaded.model(x), expected, atol=1e-6)


def test_builtin_entry_uses_a_local_file_offline(model_dirs):
    model_dirs("RealESRGAN", "RealESRGAN_x4plus.pth", {"params_ema": tiny_rrdb_state(4)})
    upscaler.load_upscalers()
    data = upscaler.find_upscaler("R-ESRGAN 4x+")
    out = data.scaler.upscale(sample_image(16, 16), 4, data.data_path)
    assert out.size == (64, 64)


def test_tiled_upscale_matches_untiled_within_tolerance(model_dirs):
    """A 4x ESRGAN (original key layout) with a receptive field smaller than the overlap: tiles cut at x = 0, 16 and
    y = 0, 12 (24-pixel tiles, 8 overlapping) give the untiled result outside the blend bands; inside them only the
    tiles' zero-padded edges differ, faded out by the blend ramp."""
    sd = tiny_rrdb_state(6, nb=0, weight_std=0.3)
    path = model_dirs("ESRGAN", "tiled.pth", to_old_layout(sd, nb=0, n_up=2))
    model = upscaler_nets.load_model(str(path), torch.device("cpu")).model
    im = sample_image(40, 36, seed=1)
    whole = np.asarray(upscaler_utils.upscale_with_model(model, im, tile_size=0)).astype(int)
    tiled = np.asarray(upscaler_utils.upscale_with_model(model, im, tile_size=24, tile_overlap=8)).astype(int)
    assert tiled.shape == whole.shape == (144, 160, 3)
    assert np.abs(whole - np.asarray(im.resize((160, 144), Image.Resampling.NEAREST))).mean() > 50  # not trivial
    diff = np.abs(tiled - whole).max(axis=-1)
    bands = np.zeros_like(diff, dtype=bool)
    bands[:, 64:96] = True  # columns 16..24 of the input, ×4
    bands[48:80, :] = True  # rows 12..20
    assert diff[~bands].max() <= 1
    assert diff[bands].mean() < 16 and (diff <= 1).mean() > 0.85


def test_model_upscaler_through_the_list_and_resize_image(model_dirs):
    model_dirs("ESRGAN", "listed.pth", compact_state(7, upscale=2))
    upscaler.load_upscalers()
    data = upscaler.find_upscaler("listed")
    im = sample_image(16, 16)
    out = data.scaler.upscale(im, 4, data.data_path)  # a 2x model applied twice
    assert out.size == (64, 64)
    assert images_ops.resize_image(0, im, 40, 40, upscaler_name="listed").size == (40, 40)


def test_files_that_are_not_models_give_one_clear_message(model_dirs):
    model_dirs("ESRGAN", "garbage.pth", b"not a model at all")
    model_dirs("ESRGAN", "other.pth", {"encoder.weight": torch.zeros(2, 2)})
    upscaler.load_upscalers()
    im = sample_image(16, 16)
    for name, message in (("garbage", "Upscaler model garbage.pth could not be loaded"),
                          ("other", "other.pth is not an upscaler model this installation can run")):
        data = upscaler.find_upscaler(name)
        with pytest.raises(UserError, match=message):
            data.scaler.upscale(im, 2, data.data_path)


def test_missing_builtin_weights_offline_give_one_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(upscaler.urllib.request, "urlopen", offline)
    upscaler.load_upscalers()
    data = upscaler.find_upscaler("R-ESRGAN 4x+ Anime6B")
    with pytest.raises(UserError, match="Could not download the upscaler model RealESRGAN_x4plus_anime_6B.pth.*"
                                        "put it into"):
        data.scaler.upscale(sample_image(16, 16), 4, data.data_path)
    assert not (MODELS / "RealESRGAN" / "RealESRGAN_x4plus_anime_6B.pth").exists()
