"""The API's building blocks in-process: credentials, image fields, live preview, infotext → request fields,
settings checks, flag redaction, SSRF-safe URL fetching."""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import socket
import ssl
import struct
import subprocess
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from modules import credentials, images, infotext_paste, infotext_utils, live_preview, shared, url_fetch
from modules.api import api, image_codec
from modules.errors import UserError
from tests.opts_defaults import make_opts

FIXTURES = Path(__file__).parent / "fixtures"


def png_bytes(image: Image.Image, **info: str) -> bytes:
    pnginfo = None
    if info:
        from PIL import PngImagePlugin

        pnginfo = PngImagePlugin.PngInfo()
        for k, v in info.items():
            pnginfo.add_text(k, v)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=pnginfo)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size and has no pixels: what a decompression bomb looks like to a decoder."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---- credentials ----


def test_credentials_parse_and_check_in_constant_time_style():
    creds = credentials.parse_credentials("alice:pa:ss, bob:secret\ncarol:x", "--api-auth")
    assert creds == {"alice": "pa:ss", "bob": "secret", "carol": "x"}
    assert credentials.check_credentials(creds, "alice", "pa:ss")
    assert credentials.check_credentials(creds, "bob", "secret")
    assert not credentials.check_credentials(creds, "bob", "pa:ss")
    assert not credentials.check_credentials(creds, "mallory", "secret")
    assert not credentials.check_credentials(creds, "bob", "")
    assert credentials.check_credentials({"zoë": "pässword"}, "zoë", "pässword")
    assert not credentials.check_credentials({}, "", "")


def test_malformed_credential_names_the_flag_but_not_the_secret():
    with pytest.raises(UserError) as e:
        credentials.parse_credentials("alice:x,hunter2", "--api-auth")
    assert "--api-auth" in str(e.value) and "entry 2" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_api_uses_ui_credentials_when_no_api_auth(tmp_path):
    auth_file = tmp_path / "auth.txt"
    auth_file.write_text("dave:one\n\neve:two\n", encoding="utf-8")
    flags = SimpleNamespace(api_auth=None, gradio_auth="carol:c", gradio_auth_path=str(auth_file))
    assert credentials.api_credentials(flags) == {"carol": "c", "dave": "one", "eve": "two"}
    flags.api_auth = "api:key"
    assert credentials.api_credentials(flags) == {"api": "key"}
    assert credentials.api_credentials(SimpleNamespace(api_auth=None, gradio_auth=None, gradio_auth_path=None)) == {}


# ---- image fields ----


def test_decode_accepts_raw_base64_data_urls_urlsafe_and_missing_padding():
    image = Image.new("RGB", (5, 3), (10, 200, 30))
    raw = base64.b64encode(png_bytes(image)).decode()
    for encoding in (
        raw,
        "data:image/png;base64," + raw,
        raw.rstrip("="),
        "  " + raw[:20] + "\n" + raw[20:],
        base64.urlsafe_b64encode(png_bytes(image)).decode(),
    ):
        decoded = image_codec.decode_base64_to_image(encoding)
        assert decoded.size == (5, 3)
        assert decoded.convert("RGB").getpixel((0, 0)) == (10, 200, 30)


@pytest.mark.parametrize(
    "encoding,message",
    [
        ("", "empty"),
        ("!!!not base64!!!", "not valid base64"),
        (base64.b64encode(b"hello, I am not an image").decode(), "not a valid image"),
        ("data:image/png,rawtext", "without base64"),
        (base64.b64encode(png_bytes(Image.new("RGB", (64, 64)))[:60]).decode(), "not a valid image"),
        (base64.b64encode(png_header_only(20000, 20000)).decode(), "too large"),
        (base64.b64encode(png_header_only(9000, 9000)).decode(), "9000x9000 pixels; the largest accepted"),
        (base64.b64encode(png_header_only(100, 20000)).decode(), "100x20000"),
    ],
)
def test_bad_image_fields_are_clear_user_errors(encoding, message):
    with pytest.raises(image_codec.InvalidImage) as e:
        image_codec.decode_base64_to_image(encoding, "init image")
    assert message in str(e.value)
    assert e.value.status_code == 400


def test_image_urls_follow_the_settings(monkeypatch):
    opts = make_opts(api_enable_requests=False, api_forbid_local_requests=True, api_useragent="")
    monkeypatch.setattr(image_codec, "_options", lambda: opts)
    with pytest.raises(image_codec.InvalidImage, match="api_enable_requests"):
        image_codec.decode_base64_to_image("https://example.com/a.png")
    opts.api_enable_requests = True
    with pytest.raises(url_fetch.UrlRefused, match="Only https"):
        image_codec.decode_base64_to_image("http://example.com/a.png")
    with pytest.raises(url_fetch.UrlRefused, match="local or private"):
        image_codec.decode_base64_to_image("https://127.0.0.1/a.png")


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_encoded_images_carry_their_infotext(fmt, monkeypatch):
    opts = make_opts(samples_format=fmt)
    monkeypatch.setattr(image_codec, "_options", lambda: opts)
    image = Image.new("RGB", (16, 8), (1, 2, 3))
    data = base64.b64decode(image_codec.encode_pil_to_base64(image, "a cat\nSteps: 3, Seed: 7, Size: 16x8"))
    back = Image.open(io.BytesIO(data))
    assert back.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt]
    assert back.size == (16, 8)
    assert images.read_info_from_image(back)[0] == "a cat\nSteps: 3, Seed: 7, Size: 16x8"


def test_image_text_items_are_json_safe():
    image = Image.open(
        io.BytesIO(png_bytes(Image.new("RGB", (4, 4)), parameters="x\nSteps: 1, Seed: 2, Size: 4x4", Comment="hello"))
    )
    image.info["icc_profile"] = b"\x00binary"
    image.info["dpi"] = (72, 72)
    geninfo, items = api.image_text_items(image)
    assert geninfo.startswith("x\n")
    assert items["Comment"] == "hello"
    assert "icc_profile" not in items
    json.dumps(items)


# ---- live preview ----


def test_cheap_approximation_is_the_published_linear_map():
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 3, 5)
    for is_sdxl, table in ((False, live_preview.CHEAP_RGB_SD), (True, live_preview.CHEAP_RGB_SDXL)):
        out = live_preview.cheap_approximation(latents, is_sdxl=is_sdxl)
        assert out.shape == (2, 3, 3, 5)
        for b, y, x, r in ((0, 0, 0, 0), (1, 2, 4, 2), (0, 1, 3, 1)):
            expected = sum(float(latents[b, c, y, x]) * table[c][r] for c in range(4))
            assert abs(float(out[b, r, y, x]) - expected) < 1e-5


def test_preview_images_are_at_latent_size_and_clamped():
    latents = torch.full((1, 4, 6, 10), 50.0)
    (image,) = live_preview.latents_to_images(latents, "Approx cheap")
    assert image.size == (10, 6)
    arr = np.asarray(image)
    # channel sums of the SD1 table: R 0.143, G 0.411, B 0.172 → all far above 1 after ×50 → white
    assert (arr == 255).all()


def test_refresh_current_image_every_n_steps_and_grid():
    state = shared_state_copy()
    opts = make_opts(
        live_previews_enable=True,
        show_progress_every_n_steps=5,
        show_progress_type="Approx NN",
        show_progress_grid=True,
        live_preview_allow_lowvram_full=False,
    )
    live_preview.refresh_current_image(state, opts)
    assert state.current_image is None  # no latent yet
    state.current_latent = torch.zeros(2, 4, 8, 8)
    state.sampling_step = 1
    live_preview.refresh_current_image(state, opts)
    first = state.current_image
    assert first is not None and first.size[1] == 8 and first.size[0] >= 16  # a grid of the batch of two
    state.sampling_step = 4
    live_preview.refresh_current_image(state, opts)
    assert state.current_image is first  # fewer than 5 steps since the last preview
    state.sampling_step = 6
    live_preview.refresh_current_image(state, opts)
    assert state.current_image is not first and state.current_image_sampling_step == 6
    opts.live_previews_enable = False
    state.sampling_step = 20
    live_preview.refresh_current_image(state, opts)
    assert state.current_image_sampling_step == 6


def shared_state_copy():
    from modules.shared_state import State

    return State()


# ---- infotext → request fields ----


def assert_same_schedule(sampler: str, scheduler: str, expected: str) -> None:
    """Paste turns a schedule type equal to the sampler's own default into "Automatic" (as A1111): same sigmas."""
    if scheduler == expected:
        return
    from modules import sd_samplers, sd_schedulers

    assert scheduler == "Automatic"
    assert (
        sd_samplers.find_sampler_config(sampler).options.get("scheduler") == sd_schedulers.schedulers_map[expected].name
    )


CREATE_CASES = json.loads((FIXTURES / "infotext.json").read_text(encoding="utf-8"))["create_cases"]


@pytest.mark.parametrize("case", CREATE_CASES, ids=lambda c: c["expected"].splitlines()[-1][:40])
def test_infotext_round_trip_gives_back_the_processing_fields(case):
    """A1111's infotexts (parity data) → parse → processing arguments equal to the fields they came from."""
    p = case["p"]
    opts = make_opts()
    params = infotext_utils.parse_generation_parameters(case["expected"], opts=opts)
    kwargs, overrides = infotext_paste.processing_args_from_infotext(params, opts)
    index = case["args"].get("iteration", 0) * p["batch_size"] + case["args"].get("position_in_batch", 0)
    if case["args"].get("use_main_prompt"):
        index = 0
        assert kwargs["prompt"] == p["main_prompt"]
    else:
        assert kwargs["prompt"] == p["all_prompts"][min(index, len(p["all_prompts"]) - 1)]
    assert kwargs["steps"] == p["steps"]
    assert kwargs["cfg_scale"] == p["cfg_scale"]
    assert kwargs["seed"] == p["all_seeds"][index]
    assert (kwargs["width"], kwargs["height"]) == (p["width"], p["height"])
    extra = p["extra_generation_params"]
    assert kwargs["sampler_name"] == p["sampler_name"]
    assert_same_schedule(kwargs["sampler_name"], kwargs["scheduler"], extra.get("Schedule type", p["scheduler"]))
    if p["subseed_strength"]:
        assert kwargs["subseed"] == p["all_subseeds"][index]
        assert kwargs["subseed_strength"] == p["subseed_strength"]
    if p["seed_resize_from_w"] > 0:
        assert (kwargs["seed_resize_from_w"], kwargs["seed_resize_from_h"]) == (
            p["seed_resize_from_w"],
            p["seed_resize_from_h"],
        )
    assert kwargs.get("enable_hr", False) == ("Hires upscale" in extra)
    if "Hires upscale" in extra:
        assert kwargs["hr_scale"] == extra["Hires upscale"]
        assert kwargs["hr_second_pass_steps"] == extra["Hires steps"]
        assert kwargs["hr_upscaler"] == extra["Hires upscaler"]
        assert kwargs["denoising_strength"] == extra["Denoising strength"]
    # "Use same ..." defaults are left out (None in the processing classes: "same as the first pass")
    assert {"hr_sampler_name", "hr_checkpoint_name"}.isdisjoint(kwargs)
    if "hr_scheduler" in kwargs:
        assert_same_schedule(kwargs["sampler_name"], kwargs["hr_scheduler"], extra.get("Schedule type", p["scheduler"]))
    if "Eta" in extra:
        assert overrides["eta_ancestral"] == extra["Eta"]
    if "ENSD: " in case["expected"]:
        assert overrides["eta_noise_seed_delta"] == case["opts"]["eta_noise_seed_delta"]


def test_infotext_settings_and_img2img_fields():
    opts = make_opts()
    text = (
        "a dog\nNegative prompt: ugly\nSteps: 4, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 77, Size: 64x96, "
        "Clip skip: 2, Seed resize from: 640x480, Mask blur: 6, Masked content: latent noise, Inpaint area: "
        "Only masked, Masked area padding: 12, Mask mode: Inpaint not masked, Image CFG scale: 1.5, "
        "Hires sampler: Euler, Hires checkpoint: other.safetensors"
    )
    kwargs, overrides = infotext_paste.processing_args_from_infotext(
        infotext_utils.parse_generation_parameters(text, opts=opts), opts
    )
    assert kwargs["prompt"] == "a dog" and kwargs["negative_prompt"] == "ugly"
    assert kwargs["sampler_name"] == "DPM++ 2M"
    assert_same_schedule("DPM++ 2M", kwargs["scheduler"], "Karras")
    assert (kwargs["seed_resize_from_w"], kwargs["seed_resize_from_h"]) == (640, 480)
    assert kwargs["mask_blur"] == 6 and kwargs["inpainting_fill"] == 2 and kwargs["inpaint_full_res"] is True
    assert kwargs["inpaint_full_res_padding"] == 12 and kwargs["inpainting_mask_invert"] == 1
    assert kwargs["image_cfg_scale"] == 1.5
    assert kwargs["hr_sampler_name"] == "Euler" and kwargs["hr_checkpoint_name"] == "other.safetensors"
    assert not kwargs.get("enable_hr")  # no hires keys: an img2img infotext does not turn hires fix on
    assert overrides == {"CLIP_stop_at_last_layers": 2}


def test_bad_infotext_values_are_skipped():
    opts = make_opts()
    kwargs, _ = infotext_paste.processing_args_from_infotext(
        {"Prompt": "x", "Steps": "many", "Masked content": "glitter", "CFG scale": "7 "}, opts
    )
    assert "steps" not in kwargs and "inpainting_fill" not in kwargs
    assert kwargs["cfg_scale"] == 7.0


# ---- settings and flags ----


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("send_seed", False, False),
        ("CLIP_stop_at_last_layers", 2.0, 2),
        ("CLIP_stop_at_last_layers", 3, 3),
        ("samples_format", "jpg", "jpg"),
        ("quicksettings_list", ["sd_model_checkpoint"], ["sd_model_checkpoint"]),
        ("sd_model_checkpoint", "anything", "anything"),
    ],
)
def test_checked_setting_accepts_values_of_the_settings_type(key, value, expected):
    assert api.checked_setting(key, value) == expected
    assert type(api.checked_setting(key, value)) is type(expected)


@pytest.mark.parametrize(
    "key,value",
    [
        ("send_seed", "yes"),
        ("CLIP_stop_at_last_layers", "2"),
        ("CLIP_stop_at_last_layers", True),
        ("CLIP_stop_at_last_layers", float("nan")),
        ("samples_format", 5),
        ("quicksettings_list", "a,b"),
    ],
)
def test_checked_setting_refuses_other_types(key, value):
    with pytest.raises(UserError, match=key):
        api.checked_setting(key, value)


def test_cmd_flags_hide_credentials_and_tokens():
    flags = SimpleNamespace(
        api_auth="u:p",
        gradio_auth="a:b",
        gradio_auth_path="/x",
        ngrok="tok",
        port=7860,
        api=True,
        gradio_auth_empty=None,
    )
    shown = api.redacted_flags(flags)
    assert shown["api_auth"] == shown["gradio_auth"] == shown["ngrok"] == shown["gradio_auth_path"] == "<redacted>"
    assert shown["port"] == 7860 and shown["api"] is True and shown["gradio_auth_empty"] is None
    assert "u:p" not in json.dumps(api.redacted_flags(shared.cmd_opts) | shown)


# ---- URL fetching ----


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.5.5", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("0.0.0.0", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("224.0.0.1", False),
        ("100.64.0.1", False),
    ],
)
def test_public_address_rule(address, public):
    assert url_fetch.is_public_address(address) is public


def fake_resolver(*addresses: str):
    """Every host name resolves to `addresses`; IP literals resolve to themselves."""

    def resolve(host, port, type=0):
        try:
            found = [str(ipaddress.ip_address(host))]
        except ValueError:
            found = list(addresses)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in found]

    return resolve


def test_every_resolved_address_must_be_public():
    with pytest.raises(url_fetch.UrlRefused, match="local or private"):
        url_fetch.fetch("https://rebind.example/x.png", resolver=fake_resolver("93.184.216.34", "10.0.0.1"))
    with pytest.raises(url_fetch.UrlRefused, match="Only https"):
        url_fetch.fetch("ftp://example.com/x.png")
    with pytest.raises(url_fetch.UrlRefused, match="resolve"):
        url_fetch.fetch("https://does-not-exist.invalid/x.png")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A local HTTPS server whose certificate is for images.example; the tests reach it through a resolver that
    maps that name to 127.0.0.1, so the connection is pinned to the checked address and TLS checks the name."""
    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=images.example",
            "-addext",
            "subjectAltName=DNS:images.example",
        ],
        check=True,
        capture_output=True,
    )
    body = png_bytes(Image.new("RGB", (7, 5), (9, 8, 7)))
    seen_hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen_hosts.append(self.headers.get("Host"))
            routes = {
                "/img.png": (200, {}, body),
                "/hop": (302, {"Location": "/img.png"}, b""),
                "/private": (302, {"Location": "https://10.0.0.5/img.png"}, b""),
                "/plain": (302, {"Location": "http://images.example/img.png"}, b""),
                "/loop": (302, {"Location": "/loop"}, b""),
                "/big": (200, {}, b"x" * 5000),
                "/missing": (404, {}, b"no"),
            }
            status, headers, content = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context(cafile=str(cert))
    yield SimpleNamespace(port=server.server_address[1], context=client_context, body=body, hosts=seen_hosts)
    server.shutdown()


def test_pinned_https_fetch_redirects_and_limits(tls_server, monkeypatch):
    # Treat the loopback test server as "public" so the address rule can be exercised on redirects.
    monkeypatch.setattr(url_fetch, "is_public_address", lambda a: a == "127.0.0.1")
    port = tls_server.port

    def fetch(path, **kw):
        return url_fetch.fetch(
            f"https://images.example:{port}{path}",
            resolver=fake_resolver("127.0.0.1"),
            ssl_context=tls_server.context,
            **kw,
        )

    assert fetch("/img.png") == tls_server.body
    assert tls_server.hosts[-1] == f"images.example:{port}"
    assert fetch("/hop") == tls_server.body
    with pytest.raises(url_fetch.UrlRefused, match="local or private"):
        fetch("/private")
    with pytest.raises(url_fetch.UrlRefused, match="Only https"):
        fetch("/plain")
    with pytest.raises(url_fetch.UrlRefused, match="Too many redirects"):
        fetch("/loop")
    with pytest.raises(url_fetch.UrlRefused, match="larger than"):
        fetch("/big", max_bytes=1000)
    with pytest.raises(url_fetch.UrlRefused, match="HTTP 404"):
        fetch("/missing")
    # The certificate is for images.example: the same server under another name fails TLS verification.
    with pytest.raises(url_fetch.UrlRefused, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        url_fetch.fetch(
            f"https://other.example:{port}/img.png", resolver=fake_resolver("127.0.0.1"), ssl_context=tls_server.context
        )


def test_decode_fetches_https_images(tls_server, monkeypatch):
    opts = make_opts(api_enable_requests=True, api_forbid_local_requests=False, api_useragent="tester")
    monkeypatch.setattr(image_codec, "_options", lambda: opts)
    real_fetch = url_fetch.fetch
    monkeypatch.setattr(
        url_fetch,
        "fetch",
        lambda url, **kw: real_fetch(url, resolver=fake_resolver("127.0.0.1"), ssl_context=tls_server.context, **kw),
    )
    image = image_codec.decode_base64_to_image(f"https://images.example:{tls_server.port}/img.png")
    assert image.size == (7, 5)


# ---- routes whose processing parts other engineers write: the arguments they receive ----


class FakeProcessed:
    def __init__(self, images):
        self.images = images
        self.infotexts = ["fake\nSteps: 1, Seed: 1, Size: 8x8"] * len(images)

    def js(self) -> str:
        return json.dumps({"infotexts": self.infotexts})


@pytest.fixture
def api_client():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    api.Api(app)
    with TestClient(app) as client:
        yield client


def test_img2img_route_gives_a1111_constructor_arguments(api_client, monkeypatch):
    from modules import processing, scripts

    received = {}

    class FakeImg2Img:
        def __init__(self, **kwargs):
            received.update(kwargs)

        def close(self):
            pass

    monkeypatch.setattr(processing, "StableDiffusionProcessingImg2Img", FakeImg2Img, raising=False)
    monkeypatch.setattr(scripts.scripts_img2img, "run_for_api",
                        lambda p, *args: FakeProcessed([Image.new("RGB", (8, 8))]))
    init = "data:image/png;base64," + base64.b64encode(png_bytes(Image.new("RGBA", (64, 48)))).decode()
    mask = base64.b64encode(png_bytes(Image.new("L", (64, 48), 255))).decode()
    r = api_client.post(
        "/sdapi/v1/img2img",
        json={
            "init_images": [init],
            "mask": mask,
            "mask_blur": None,
            "prompt": "p",
            "inpainting_mask_invert": True,
            "steps": 2,
            "sampler_name": "k_euler_a",
            "unknown": 1,
        },
    )
    assert r.status_code == 200, r.text
    assert received["init_images"][0].size == (64, 48) and received["init_images"][0].mode == "RGBA"
    assert received["mask"].size == (64, 48) and received["latent_mask"] is None
    assert "mask_blur" not in received and received["mask_blur_x"] == received["mask_blur_y"] == 4
    # the API's own defaults, not the UI's
    assert received["inpainting_fill"] == 0 and received["inpaint_full_res"] is True
    assert received["inpaint_full_res_padding"] == 0 and received["denoising_strength"] == 0.75
    assert received["inpainting_mask_invert"] == 1 and received["sampler_name"] == "Euler a"
    assert received["do_not_save_samples"] is True and received["do_not_save_grid"] is True
    assert received["outpath_samples"].endswith("img2img-images")
    assert not {"include_init_images", "sampler_index", "script_name", "alwayson_scripts", "unknown"} & set(received)
    assert r.json()["parameters"]["init_images"] is None and len(r.json()["images"]) == 1


def test_extras_routes_call_run_extras_like_a1111(api_client, monkeypatch):
    from modules import postprocessing

    calls = []

    def run_extras(**kwargs):
        calls.append(kwargs)
        pictures = [kwargs["image"]] if kwargs["extras_mode"] == 0 else kwargs["image_folder"]
        return [p.resize((p.width * 2, p.height * 2)) for p in pictures], "<p>info</p>", ""

    monkeypatch.setattr(postprocessing, "run_extras", run_extras)
    image = base64.b64encode(png_bytes(Image.new("RGB", (10, 6)))).decode()
    r = api_client.post("/sdapi/v1/extra-single-image", json={"image": image, "upscaler_1": "Lanczos"})
    assert r.status_code == 200, r.text
    assert decode_b64_size(r.json()["image"]) == (20, 12) and r.json()["html_info"] == "<p>info</p>"
    single = calls[-1]
    assert single["extras_mode"] == 0 and single["save_output"] is False and single["image"].size == (10, 6)
    assert single["extras_upscaler_1"] == "Lanczos" and single["extras_upscaler_2"] == "None"
    assert single["upscaling_resize"] == 2 and single["resize_mode"] == 0 and "upscaler_1" not in single
    r = api_client.post("/sdapi/v1/extra-batch-images", json={"imageList": [{"data": image, "name": "a"}] * 2})
    assert [decode_b64_size(x) for x in r.json()["images"]] == [(20, 12), (20, 12)]
    assert calls[-1]["extras_mode"] == 1 and len(calls[-1]["image_folder"]) == 2 and "imageList" not in calls[-1]


def decode_b64_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


# ---- middleware: error shape, timing, auth before CORS ----


def test_error_shape_timing_and_cors_preflight_before_auth():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.api import middleware
    from modules.errors import NotFoundError

    app = FastAPI()

    @app.get("/sdapi/v1/boom")
    def boom():
        raise RuntimeError("kaput")

    @app.get("/sdapi/v1/missing")
    def missing():
        raise NotFoundError("Thing 'x' not found. Use one of: a, b.")

    middleware.install(app, {"u": "p"}, log_requests=True)
    middleware.setup_cors(app, SimpleNamespace(cors_allow_origins="https://ok.example", cors_allow_origins_regex=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/sdapi/v1/boom", auth=("u", "p"))
        assert r.status_code == 500 and float(r.headers["X-Process-Time"]) >= 0
        assert r.json() == {"error": "RuntimeError", "detail": "kaput", "body": "", "errors": "kaput"}
        r = client.get("/sdapi/v1/missing", auth=("u", "p"))
        assert r.status_code == 404 and r.json()["error"] == "NotFoundError" and "Use one of" in r.json()["detail"]
        assert client.get("/sdapi/v1/missing").status_code == 401
        preflight = {"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"}
        r = client.options("/sdapi/v1/missing", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ok.example"
        r = client.options("/sdapi/v1/missing", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_no_cors_without_the_flags():
    from fastapi import FastAPI

    from modules.api import middleware

    app = FastAPI()
    middleware.setup_cors(app, SimpleNamespace(cors_allow_origins=None, cors_allow_origins_regex=None))
    assert app.user_middleware == []
