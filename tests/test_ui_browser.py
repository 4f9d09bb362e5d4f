"""The page in a real browser (Debian's chromium through Playwright) against one real server with a login:
log in, type a prompt (token counter), generate (image + infotext), interrupt, PNG Info round trip into the
txt2img fields, save and apply a style, click an extra-network card, change a setting that survives a restart,
visit every tab without a JavaScript error. The tests share one server and one page and run in file order.

Screenshots of every tab go to a temporary folder; with UI_SCREENSHOTS=docs/screenshots they refresh the
committed ones (small palette PNGs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server

pytestmark = pytest.mark.browser

USER, PASSWORD = "tester", "pw:secret"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
TABS = [("txt2img", "txt2img"), ("img2img", "img2img"), ("extras", "Extras"), ("pnginfo", "PNG Info"),
        ("modelmerger", "Checkpoint Merger"), ("settings", "Settings"), ("extensions", "Extensions")]
LONG = 60_000


@pytest.fixture(scope="module")
def ui_data(tmp_path_factory, tiny_checkpoints):
    """A data folder: the tiny SD1 checkpoint, a LoRA with a side-car (preferred weight), a style file."""
    import torch
    from safetensors.torch import save_file

    data = tmp_path_factory.mktemp("browser-data")
    ckpt_dir = data / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    source = tiny_checkpoints["sd1"]
    shutil.copy(source, ckpt_dir / source.name)
    shutil.copy(source.with_suffix(".yaml"), ckpt_dir / source.with_suffix(".yaml").name)
    lora_dir = data / "models" / "Lora"
    lora_dir.mkdir(parents=True)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(4, 1)},
              str(lora_dir / "tiny_lora.safetensors"), metadata={"ss_network_dim": "1"})
    (lora_dir / "tiny_lora.json").write_text(json.dumps({"preferred weight": 0.6, "activation text": "shiny"}))
    (data / "config.json").write_text(json.dumps({"lora_show_all": True, "sd_model_checkpoint": source.name}))
    return data


def start(data: Path) -> Server:
    return Server(data, ["--skip-torch-cuda-test", "--use-cpu", "all", "--gradio-auth", f"{USER}:{PASSWORD}",
                         "--no-download-sd-model"])


@pytest.fixture(scope="module")
def server(ui_data):
    srv = start(ui_data)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (run_tests.sh installs it as root)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


class Page:
    """One browser page for all the tests, with the JavaScript errors it saw since the login."""

    def __init__(self, browser, server: Server):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(LONG)
        self.errors: list[str] = []
        self.watching = False
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                     if m.type == "error" and self.watching else None)
        self.login(server)

    def login(self, server: Server) -> None:
        """Gradio's login form (the page's own files load without a login), then the app."""
        self.watching = False
        self.page.goto(server.url)
        self.page.get_by_label("username").fill(USER)
        self.page.get_by_label("password").fill(PASSWORD)
        self.page.get_by_role("button", name="Login").click()
        self.page.wait_for_selector("#txt2img_prompt textarea")
        self.page.wait_for_function("typeof onUiLoaded === 'function' && document.querySelector('#quicksettings')")
        self.watching = True

    def value(self, selector: str) -> str:
        return self.page.locator(selector).first.input_value()

    def set_number(self, elem_id: str, value: float) -> None:
        box = self.page.locator(f"#{elem_id} input[type=number]")
        box.fill(str(value))
        box.press("Enter")

    def wait_text(self, selector: str, text: str) -> None:
        self.page.wait_for_function("([s, t]) => { const e = document.querySelector(s); "
                                    "return !!e && (e.value ?? e.innerText).includes(t); }", arg=[selector, text])

    def tab(self, ifid: str) -> None:
        self.page.click(f"#tab_{ifid}-button")
        self.page.wait_for_selector(f"#tab_{ifid}", state="visible")

    def screenshot(self, name: str, folder: Path) -> int:
        """A small palette PNG of the viewport; its size in bytes."""
        from PIL import Image

        self.page.evaluate("window.scrollTo(0, 0)")
        picture = Image.open(io.BytesIO(self.page.screenshot())).convert("RGB")
        picture = picture.quantize(colors=96, method=Image.Quantize.MEDIANCUT)
        path = folder / f"{name}.png"
        picture.save(path, optimize=True)
        return path.stat().st_size


@pytest.fixture(scope="module")
def ui(browser, server):
    page = Page(browser, server)
    yield page
    page.page.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("UI_SCREENSHOTS")
    if folder:
        path = (ROOT / folder).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


def test_routes_need_the_login(server):
    import requests

    for path in ("/config", "/internal/pending-tasks", "/gradio_api/info", "/sd_extra_networks/thumb?filename=x"):
        assert requests.get(server.url + path, timeout=10).status_code == 401, path
    assert requests.get(server.url + "/internal/pending-tasks", auth=(USER, PASSWORD), timeout=10).status_code == 200


def test_prompt_token_counter_and_generate(ui, shots):
    page = ui.page
    page.fill("#txt2img_prompt textarea", "a photo of a cat")
    ui.wait_text("#txt2img_token_counter", "5/75")
    for elem_id, value in (("txt2img_steps", 3), ("txt2img_width", 64), ("txt2img_height", 64)):
        ui.set_number(elem_id, value)
    ui.set_number("txt2img_seed", 1234)
    page.click("#txt2img_generate")
    ui.wait_text("#html_info_txt2img", "Seed: 1234")
    info = page.inner_text("#html_info_txt2img")
    assert info.startswith("a photo of a cat") and "Steps: 3" in info and "Size: 64x64" in info
    page.wait_for_selector("#txt2img_gallery img")
    page.wait_for_selector("#txt2img_results .progressDiv", state="detached")
    assert ui.screenshot("txt2img", shots) < 150_000


def test_interrupt_stops_a_long_generation(ui):
    page = ui.page
    page.fill("#txt2img_prompt textarea", "interrupt me")
    ui.set_number("txt2img_steps", 150)
    page.click("#txt2img_generate")
    ui.wait_text(".progressDiv .progress", "/150")
    progress_text = page.inner_text(".progressDiv .progress")
    started = time.perf_counter()
    page.click("#txt2img_interrupt")
    ui.wait_text("#html_info_txt2img", "interrupt me")
    assert time.perf_counter() - started < 30, progress_text
    page.wait_for_function("!document.querySelector('#txt2img_generate_box').classList.contains('generating')")


def test_reload_reattaches_to_the_running_task(ui):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page = ui.page
    page.fill("#txt2img_prompt textarea", "follow me")
    page.click("#txt2img_generate")
    running = "/step [1-9][0-9]*\\/150/.test(document.querySelector('.progressDiv .progress')?.innerText ?? '')"
    page.wait_for_function(running)
    ui.watching = False  # Gradio logs the event stream the reload cuts off
    page.reload()  # the login cookie stays; the task id is in localStorage
    page.wait_for_selector("#txt2img_restore_progress.shown")
    ui.watching = True
    page.click("#txt2img_restore_progress")
    page.wait_for_timeout(1000)
    interrupt = page.locator("#txt2img_interrupt")
    if page.locator(".progressDiv").count() and interrupt.is_visible():  # still running: don't wait for 150 steps
        try:
            interrupt.click(timeout=5000)
        except PlaywrightTimeoutError:  # the task ended meanwhile and the button went away: nothing to interrupt
            pass
    ui.wait_text("#html_info_txt2img", "follow me")  # the result of the task started before the reload
    assert "Steps: 150" in page.inner_text("#html_info_txt2img")


def test_png_info_round_trip_into_txt2img(ui, ui_data, shots):
    page = ui.page
    pictures = sorted((ui_data / "outputs" / "txt2img-images").rglob("*.png"), key=lambda p: p.stat().st_mtime)
    first = pictures[0]
    # a picture dropped on the prompt gives its infotext
    page.set_input_files("#txt2img_prompt_image input[type=file]", str(first))
    ui.wait_text("#txt2img_prompt textarea", "Seed: 1234")
    page.fill("#txt2img_prompt textarea", "something else")  # the paste must replace it
    ui.tab("pnginfo")
    page.set_input_files("#pnginfo_image input[type=file]", str(first))
    ui.wait_text("#pnginfo_html2", "Seed: 1234")
    assert ui.screenshot("pnginfo", shots) < 150_000
    page.click("#txt2img_tab")
    ui.wait_text("#txt2img_prompt textarea", "a photo of a cat")
    page.wait_for_function("document.querySelector('#txt2img_seed input').value === '1234'")
    assert ui.value("#txt2img_steps input[type=number]") == "3"
    assert ui.value("#txt2img_width input[type=number]") == "64"
    assert ui.value("#txt2img_prompt textarea") == "a photo of a cat"


def test_save_and_apply_a_style(ui, ui_data):
    page = ui.page
    page.click("#txt2img_styles_edit_button")
    name = page.locator("#txt2img_styles_edit_select input")
    name.fill("oil")
    name.press("Enter")
    page.wait_for_timeout(1000)  # choosing a name loads that style's prompts (none for a new one) first
    page.fill("#txt2img_edit_style_prompt textarea", "{prompt}, oil painting")
    page.click("#txt2img_edit_style_save")
    page.wait_for_selector("#txt2img_edit_style_delete", state="visible")
    assert "oil,\"{prompt}, oil painting\"" in (ui_data / "styles.csv").read_text()
    page.click("#txt2img_edit_style_close")
    page.locator("#txt2img_styles input").click()
    page.get_by_role("option", name="oil", exact=True).click()
    page.keyboard.press("Escape")
    page.fill("#txt2img_prompt textarea", "a castle")
    page.click("#txt2img_style_apply")
    ui.wait_text("#txt2img_prompt textarea", "a castle, oil painting")


def test_extra_network_card_inserts_its_tag(ui):
    page = ui.page
    page.fill("#txt2img_prompt textarea", "a dog")
    page.click("#txt2img_lora-button")
    card = page.locator("#txt2img_lora_cards_html .card", has_text="tiny_lora")
    card.click()
    ui.wait_text("#txt2img_prompt textarea", "<lora:tiny_lora:0.6>")
    assert ui.value("#txt2img_prompt textarea") == "a dog <lora:tiny_lora:0.6> shiny"
    card.click()  # a second click takes it out again (A1111)
    ui.wait_text("#txt2img_prompt textarea", "a dog")
    page.wait_for_function("!document.querySelector('#txt2img_prompt textarea').value.includes('lora')")


def test_every_tab_and_a_setting_that_survives_a_restart(ui, server, ui_data, shots):
    page = ui.page
    for ifid, _label in TABS[1:]:
        ui.tab(ifid)
        if ifid == "settings":
            page.fill("#settings_search textarea, #settings_search input", "jpeg")
            box = page.locator("#setting_jpeg_quality input[type=number]")
            box.wait_for(state="visible")
            box.fill("77")
            box.press("Enter")
            page.click("#settings_submit")
            ui.wait_text("#settings_result", "1 settings changed")
        if ifid != "pnginfo":
            page.wait_for_timeout(300)  # let the tab finish drawing
            assert ui.screenshot(ifid, shots) < 150_000, ifid
    assert json.loads((ui_data / "config.json").read_text())["jpeg_quality"] == 77
    assert ui.errors == []

    server.stop()
    restarted = start(ui_data)
    try:
        ui.login(restarted)
        ui.tab("settings")
        page.fill("#settings_search textarea, #settings_search input", "jpeg")
        box = page.locator("#setting_jpeg_quality input[type=number]")
        box.wait_for(state="visible")
        assert box.input_value() == "77"
        assert ui.errors == []
    finally:
        restarted.stop()
