"""End to end: the real server on a free port, a real client, generated files on disk."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def client(server):
    c = gradio_client.Client(server.url, verbose=False, download_files=False)
    yield c
    c.close()


def generate(client, prompt="a photo of a cat", negative="", steps=3, sampler="Euler a", scheduler="Automatic",
             width=64, height=64, n_iter=1, batch_size=1, cfg=7.0, seed=1234):
    return client.predict(prompt, negative, steps, sampler, scheduler, width, height, n_iter, batch_size, cfg, seed,
                          api_name="/txt2img")


def outputs_today(data_dir: Path) -> list[Path]:
    folder = data_dir / "outputs" / "txt2img-images" / datetime.date.today().strftime("%Y-%m-%d")
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_server_starts_quickly_and_serves_the_page(server):
    import requests

    page = requests.get(server.url + "/", timeout=10)
    assert page.status_code == 200
    assert server.ready_after < 60, f"UI took {server.ready_after:.1f}s to become ready"


def test_generate_saves_png_with_infotext(server, client, data_dir):
    before = set(outputs_today(data_dir))
    gallery, info_js, info_html, log_html = generate(client, seed=4321, width=64, height=96)
    assert log_html == "", log_html
    info = json.loads(info_js)
    assert info["all_seeds"] == [4321]
    assert info["width"] == 64 and info["height"] == 96
    new = sorted(set(outputs_today(data_dir)) - before)
    assert len(new) == 1
    path = new[0]
    assert path.name.endswith("-4321.png")  # NNNNN-SEED.png with save_to_dirs (A1111's default)
    with Image.open(path) as im:
        assert im.size == (64, 96)
        text = im.info["parameters"]
    assert text.startswith("a photo of a cat\n")
    params = text.splitlines()[-1]
    for expected in ("Steps: 3", "Sampler: Euler a", "CFG scale: 7.0", "Seed: 4321", "Size: 64x96", "Model hash: ",
                     "Model: tiny-"):
        assert expected in params, params


def test_same_seed_same_pixels_other_seed_different(server, client, data_dir):
    def run(seed):
        before = set(outputs_today(data_dir))
        generate(client, seed=seed)
        (path,) = sorted(set(outputs_today(data_dir)) - before)
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.int16)

    a, b, c = run(77), run(77), run(78)
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 0


def test_batch_gives_a_grid_and_per_image_seeds(server, client, data_dir):
    gallery, info_js, _, log_html = generate(client, seed=10, batch_size=2, n_iter=1)
    assert log_html == ""
    info = json.loads(info_js)
    assert info["all_seeds"] == [10, 11]
    assert len(gallery) == 3  # grid first, then both images
    assert info["index_of_first_image"] == 1


def test_page_loads_in_time(server):
    import requests

    t = time.perf_counter()
    assert requests.get(server.url + "/config", timeout=10).status_code in (200, 404)
    assert time.perf_counter() - t < 5


def test_xyz_plot_from_the_ui(server, client, data_dir):
    """The Script dropdown and the X/Y/Z controls as the page sends them (looked up by label: other scripts may
    add controls before them): one labelled grid, saved to the grids folder with its infotext."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/txt2img"]["parameters"]
    names = {(p["label"], p["component"]): p["parameter_name"] for p in reversed(params)}  # first one wins
    kwargs = {names[("Script", "Dropdown")]: "X/Y/Z plot", names[("X type", "Dropdown")]: "Steps",
              names[("X values", "Textbox")]: "1-2", names[("Y type", "Dropdown")]: "CFG Scale",
              names[("Y values", "Textbox")]: "4, 8"}
    grids = data_dir / "outputs" / "txt2img-grids"
    before = set(grids.rglob("*.png")) if grids.exists() else set()
    gallery, info_js, _, log_html = client.predict("a cat", "", 1, "Euler", "Automatic", 64, 64, 1, 1, 7.0, 3,
                                                   api_name="/txt2img", **kwargs)
    assert log_html == "", log_html
    info = json.loads(info_js)
    assert len(gallery) == 1 and info["infotexts"][0].count("Script: X/Y/Z plot, X Type: Steps, X Values: 1-2") == 1
    (saved,) = sorted(set(grids.rglob("*.png")) - before)
    with Image.open(saved) as im:
        assert im.width > 128 and im.height > 128  # 2 x 2 cells of 64 plus labels
        assert "Y Type: CFG Scale" in im.info["parameters"]
