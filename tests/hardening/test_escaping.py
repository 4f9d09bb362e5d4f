"""Model and image metadata from strangers shown in the UI: PNG Info and extra-network cards and metadata tables
escape every key and value (the loaders return them as plain text: test_hostile_models.py). The views belong to
the web UI (modules/ui_pnginfo.py, modules/ui_extra_networks.py); these tests run once they exist."""

from __future__ import annotations

from PIL import Image, PngImagePlugin

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\"'><svg onload=alert(1)>",
    "</textarea><iframe src=javascript:alert(1)>",
    "&lt;already&gt; <b>bold</b>",
]
# A tag can only start with a raw "<"; escaped text such as "&lt;img onerror=…&gt;" in an attribute is inert.
RAW = ("<script", "<img", "<svg", "<iframe", "<b>bold")  # the views use <b> for their own labels


def assert_inert(html_text: str) -> None:
    lowered = html_text.lower()
    assert not [r for r in RAW if r in lowered], html_text[:500]


def test_png_info_view_escapes_every_text_chunk(tmp_path):
    from modules import ui_pnginfo
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "\n".join(PAYLOADS) + "\nSteps: 20, Sampler: <b>Euler</b>")
    for i, payload in enumerate(PAYLOADS):
        info.add_text(f"{payload}-{i}", payload)
    path = tmp_path / "evil.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    _, geninfo, html_text = ui_pnginfo.run_pnginfo(str(path))
    assert PAYLOADS[0] in geninfo  # the text itself is kept, for pasting
    assert_inert(html_text)
    assert "&lt;script&gt;" in html_text


def test_extra_network_card_and_metadata_escape_names_and_values(tmp_path):
    from modules import shared, ui_extra_networks

    page = ui_extra_networks.ExtraNetworksPage()
    page.title, page.extra_networks_tabname = "Lora", "lora"
    file = tmp_path / "x.safetensors"
    file.write_bytes(b"")
    for payload in PAYLOADS:
        item = ui_extra_networks.Item(
            name=payload,
            filename=str(file),
            prompt=payload,
            negative_prompt=payload,
            description=payload,
            search_terms=[payload],
            metadata={payload: payload},
        )
        old = shared.opts.extra_networks_card_description_is_html
        shared.opts.extra_networks_card_description_is_html = False
        try:
            card = ui_extra_networks.card_html("txt2img", page, item)
        finally:
            shared.opts.extra_networks_card_description_is_html = old
        assert_inert(card)
        assert_inert(ui_extra_networks.metadata_html({payload: payload, "nested": {"k": payload}}))
