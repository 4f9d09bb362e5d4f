"""The built-in selectable scripts: X/Y/Z plot (value syntax, grids, labels, Z grids, seeds, order, infotext),
Prompt matrix, Prompts from file or textbox, Loopback, Outpainting mk2 and Poor man's outpainting.

Grid logic is checked with a stand-in for process_images that paints each cell a colour coding its parameters
(fast, exact); real generations on the tiny SD1 checkpoint check the same paths end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from modules import (
    devices,
    images_grid,
    loopback,
    outpainting,
    processing,
    prompt_matrix,
    prompts_from_file,
    scripts,
    sd_models,
    shared,
    xyz_grid,
)
from modules.errors import UserError

XYZ_ARGS = 18


@pytest.fixture(scope="module", autouse=True)
def runners(tiny_checkpoints):
    """The repository's scripts loaded into fresh runners with their UI laid out headless; tiny SD1 loaded.
    Per-image garbage collection is skipped here (it dominates the time of tiny generations)."""
    from modules import extensions, gradio_compat

    mp = pytest.MonkeyPatch()
    mp.setattr(devices, "torch_gc", lambda: None)
    saved_opts = dict(shared.opts.data)
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    sd_models.reload_model_weights(info=sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    extensions.list_extensions()
    gradio_compat.install()
    scripts.load_scripts()
    for runner, img2img in ((scripts.scripts_txt2img, False), (scripts.scripts_img2img, True)):
        runner.initialize_scripts(is_img2img=img2img)
        runner.ensure_ui()
    yield
    mp.undo()
    shared.opts.data.clear()
    shared.opts.data.update(saved_opts)


def txt2img(**kwargs) -> processing.StableDiffusionProcessingTxt2Img:
    args = dict(prompt="a cat", steps=1, width=64, height=64, sampler_name="Euler", seed=1234,
                do_not_save_samples=True, do_not_save_grid=True)
    args.update(kwargs)
    return processing.StableDiffusionProcessingTxt2Img(**args)


def img2img(image: Image.Image, **kwargs) -> processing.StableDiffusionProcessingImg2Img:
    args = dict(init_images=[image], prompt="a cat", steps=1, width=64, height=64, sampler_name="Euler", seed=77,
                denoising_strength=0.75, do_not_save_samples=True, do_not_save_grid=True)
    args.update(kwargs)
    return processing.StableDiffusionProcessingImg2Img(**args)


def gradient(w: int = 64, h: int = 64) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(arr.astype(np.uint8))


class FakeRun:
    """Stands in for process_images: records what each call got and returns solid images whose colour is
    `colour(p)`, one per image of the job."""

    def __init__(self, colour=lambda p: (0, 0, 0)):
        self.colour = colour
        self.calls: list[dict] = []

    def __call__(self, p):
        self.calls.append({
            "p": p, "steps": p.steps, "cfg_scale": p.cfg_scale, "seed": p.seed, "prompt": p.prompt,
            "negative_prompt": p.negative_prompt, "sampler_name": p.sampler_name, "styles": list(p.styles),
            "override_settings": dict(p.override_settings), "width": p.width, "height": p.height,
            "init_images": list(getattr(p, "init_images", None) or []),
            "image_mask": getattr(p, "image_mask", None), "latent_mask": getattr(p, "latent_mask", None),
            "denoising_strength": p.denoising_strength, "batch_size": p.batch_size, "n_iter": p.n_iter,
        })
        n = p.batch_size * p.n_iter
        images = [Image.new("RGB", (p.width, p.height), self.colour(p)) for _ in range(n)]
        p.all_prompts = [p.prompt] * n
        p.all_seeds = [p.seed] * n
        p.all_subseeds = [p.subseed] * n
        return processing.Processed(p, images, seed=p.seed, info=f"cell {len(self.calls)}",
                                    infotexts=[f"cell {len(self.calls)}"] * n)


@pytest.fixture()
def fake(monkeypatch):
    run = FakeRun()
    monkeypatch.setattr(processing, "process_images", run)
    # grid infotexts: the extra parameters the plot added, as JSON (the real text is checked with real runs)
    monkeypatch.setattr(processing, "create_infotext", lambda p, *a, **k: json.dumps(p.extra_generation_params))
    return run


# -- X/Y/Z plot: values ----------------------------------------------------------------------------------


def axis(label: str, img2img: bool = False) -> xyz_grid.AxisOption:
    options = xyz_grid.axis_options_for(xyz_grid.default_axis_options(), img2img)
    return next(o for o in options if o.label == label)


@pytest.mark.parametrize(("text", "expected"), [
    ("1-5", [1, 2, 3, 4, 5]),
    ("1-5 (+2)", [1, 3, 5]),
    ("1-6 (+2)", [1, 3, 5]),
    ("10-1 (-3)", [10, 7, 4]),  # A1111: range(10, 1 + 1, -3)
    ("5-1 (-1)", [5, 4, 3]),  # the end + 1 rule stops short going down
    ("1-10 [5]", [1, 3, 5, 7, 10]),  # evenly spaced, truncated
    ("0-100 [3]", [0, 50, 100]),
    ("1, 2,3 , 10-12", [1, 2, 3, 10, 11, 12]),
    ("-1, 7", [-1, 7]),
    (" 3 - 5 ", [3, 4, 5]),
    ("1,,2", [1, 2]),
])
def test_int_range_syntax(text, expected):
    assert xyz_grid.parse_axis_values(axis("Steps"), text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("0.25-1 (+0.25)", [0.25, 0.5, 0.75, 1.0]),
    ("1-3 (+0.5)", [1.0, 1.5, 2.0, 2.5, 3.0]),
    ("1-0 (-0.5)", [1.0, 0.5, 0.0]),
    ("0-1 [5]", [0.0, 0.25, 0.5, 0.75, 1.0]),
    ("1-3", [1.0, 2.0, 3.0]),
    ("7, 7.5, 1e1", [7.0, 7.5, 10.0]),
])
def test_float_range_syntax(text, expected):
    got = xyz_grid.parse_axis_values(axis("CFG Scale"), text)
    assert got == pytest.approx(expected) and all(type(v) is float for v in got)


def test_float_step_range_is_numpys_arange_past_the_end():
    # A1111 uses arange(start, end + step, step): rounding can add a value past the end
    assert xyz_grid.parse_axis_values(axis("CFG Scale"), "0.1-1 (+0.2)") == np.arange(0.1, 1.2, 0.2).tolist()


def test_string_values_permutations_and_labels():
    assert xyz_grid.parse_axis_values(axis("Prompt S/R"), 'cat, "dog, big" , bird') == ["cat", "dog, big", "bird"]
    perms = xyz_grid.parse_axis_values(axis("Prompt order"), "a, b, c")
    assert len(perms) == 6 and perms[0] == ("a", "b", "c") and perms[-1] == ("c", "b", "a")
    opt = axis("CFG Scale")
    assert opt.format_value(None, opt, 0.30000000000000004) == "CFG Scale: 0.3"
    assert axis("Sampler").format_value(None, axis("Sampler"), "Euler") == "Euler"
    assert axis("Prompt order").format_value(None, axis("Prompt order"), ("b", "a")) == "b, a"
    assert axis("Checkpoint name").format_value(None, axis("Checkpoint name"), "sub/m.safetensors") == "m.safetensors"
    assert xyz_grid.parse_axis_values(axis("Nothing"), "anything") == [0]
    # dropdown axes take the dropdown's values, or the text when the dropdown is empty (API callers)
    assert xyz_grid.parse_axis_values(axis("Sampler"), "", ["Euler", "DDIM"]) == ["Euler", "DDIM"]
    assert xyz_grid.parse_axis_values(axis("Sampler"), "Euler a, DPM++ 2M") == ["Euler a", "DPM++ 2M"]


def test_axis_lists_follow_a1111_order_per_tab():
    t2i = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)]
    i2i = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), True)]
    assert t2i[:12] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler", "Hires sampler", "Checkpoint name"]
    assert i2i[:10] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale",
                        "Prompt S/R", "Prompt order", "Sampler"]
    for name in ("Negative Guidance minimum sigma", "Sigma Churn", "Sigma min", "Sigma max", "Sigma noise",
                 "Schedule type", "Schedule min sigma", "Schedule max sigma", "Schedule rho", "Eta", "Clip skip",
                 "Denoising", "Initial noise multiplier", "Extra noise", "VAE", "Styles", "UniPC Order",
                 "Face restore", "Token merging ratio", "Always discard next-to-last sigma", "SGM noise multiplier",
                 "Refiner checkpoint", "Refiner switch at", "RNG source", "Size"):
        assert name in t2i and name in i2i, name
    assert "Hires upscaler" in t2i and "Hires upscaler" not in i2i
    assert "Cond. Image Mask Weight" in i2i and t2i[-1] == i2i[-1] == "Size"


def test_axes_apply_what_a1111_applies():
    p = txt2img(prompt="a cat on a mat", negative_prompt="blurry cat", styles=["s0"])
    axis("Prompt S/R").apply(p, "dog", ["cat", "dog"])
    assert (p.prompt, p.negative_prompt) == ("a dog on a mat", "blurry dog")
    p = txt2img(prompt="one, two, three, four")
    axis("Prompt order").apply(p, ("three", "one", "two"), None)
    assert p.prompt == "three, one, two, four"
    axis("Clip skip").apply(p, 2, [2])
    axis("Always discard next-to-last sigma").apply(p, "True", None)
    axis("UniPC Order").apply(p, 5, None)
    axis("VAE").apply(p, "automatic", None)
    axis("Size").apply(p, "96x128", None)
    axis("Styles").apply(p, "a, b", None)
    axis("Face restore").apply(p, "codeformer", None)
    assert p.override_settings == {"CLIP_stop_at_last_layers": 2, "always_discard_next_to_last_sigma": True,
                                   "uni_pc_order": 0, "sd_vae": "Automatic"}  # UniPC order ≤ steps - 1
    assert (p.width, p.height, p.styles, p.restore_faces) == (96, 128, ["a", "b"], True)
    axis("Size").apply(p, "big", None)  # A1111 ignores a bad size
    assert (p.width, p.height) == (96, 128)
    axis("Checkpoint name").apply(p, "tiny-sd1", None)
    assert p.override_settings["sd_model_checkpoint"] == "tiny-sd1.safetensors"


@pytest.mark.parametrize(("axes", "message"), [
    ([(4, "1-x", None)], r"'1-x' in the X \(Steps\) values is not a whole number"),
    ([(4, "1-5 (2)", None)], "range such as 1-5, 1-5 \\(\\+2\\)"),
    ([(4, "1-5 (+0)", None)], "must not be 0"),
    ([(6, "3, seven", None)], "'seven' in the X \\(CFG Scale\\) values is not a number"),
    ([(4, "1-1000000", None)], "would be 1000000; at most 10000"),
    ([(4, "1-2 [99999999999]", None)], "at most 10000"),
    ([(6, "0-1 (+0.00001)", None)], "at most 10000"),
    ([(8, "a,b,c,d,e,f,g,h,i,j,k,l", None)], "at most 10000"),
    ([(99, "1", None)], "X type 99 does not exist"),
    ([("Zoom", "1", None)], "X type 'Zoom' does not exist"),
    ([("Prompt S/R", "horse, pony", None)], "Prompt S/R did not find horse in prompt or negative prompt"),
    ([("Sampler", "Euler, Nope", None)], "Unknown sampler: Nope"),
    ([("Checkpoint name", "missing-model", None)], "Unknown checkpoint: missing-model"),
    ([(4, "", None)], "no values given for the X \\(Steps\\) axis"),
])
def test_bad_axis_input_is_one_clear_error(fake, axes, message):
    options = xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)
    axes = axes + [(0, "", None)] * (3 - len(axes))
    with pytest.raises(UserError, match=message):
        xyz_grid.run(txt2img(), options, axes)
    assert fake.calls == []


def test_grid_size_limit(fake, monkeypatch):
    monkeypatch.setitem(shared.opts.data, "img_max_size_mp", 2)
    options = xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)
    with pytest.raises(UserError, match=r"Resulting grid would be too large \(2 MPixels\) \(max configured size is "
                                        r"2 MPixels\)"):
        xyz_grid.run(txt2img(width=512, height=512), options, [(4, "1-8", None), (0, "", None), (0, "", None)])


def test_processing_order_puts_costly_axes_outermost():
    assert xyz_grid.processing_order(0, 0, 0) == ("z", "y")
    assert xyz_grid.processing_order(1.0, 0, 0) == ("x", "z")
    assert xyz_grid.processing_order(1.0, 0.7, 0) == ("x", "y")
    assert xyz_grid.processing_order(0.5, 1.0, 0) == ("y", "x")
    assert xyz_grid.processing_order(0, 0.7, 1.0) == ("z", "y")
    assert xyz_grid.processing_order(0.9, 0, 1.0) == ("z", "x")
    assert xyz_grid.processing_order(1.0, 1.0, 0) == ("z", "y")  # ties: A1111's default order


# -- X/Y/Z plot: grids ------------------------------------------------------------------------------------


def colour(steps: int, cfg_scale: float, sampler_name: str) -> tuple[int, int, int]:
    return steps * 40, int(cfg_scale * 20), 200 if sampler_name == "DDIM" else 50


def colour_of(p) -> tuple[int, int, int]:
    return colour(p.steps, p.cfg_scale, p.sampler_name)


def expected_grids(xs, ys, zs, labels, margin=0):
    """The plot's images put together here: cell images (colour_of each combination) in X-then-Y order per Z,
    labelled sub-grids, and the Z grid titled by the Z labels."""
    x_labels, y_labels, z_labels = labels
    subs = []
    for z in zs:
        cells = [Image.new("RGB", (64, 64), colour(x, y, z)) for y in ys for x in xs]
        grid = images_grid.image_grid(cells, rows=len(ys))
        grid = images_grid.draw_grid_annotations(grid, 64, 64, [[images_grid.GridAnnotation(t)] for t in x_labels],
                                                 [[images_grid.GridAnnotation(t)] for t in y_labels], margin)
        subs.append(grid)
    z_grid = images_grid.image_grid(subs, rows=1)
    z_grid = images_grid.draw_grid_annotations(z_grid, subs[0].width, subs[0].height,
                                               [[images_grid.GridAnnotation(t)] for t in z_labels],
                                               [[images_grid.GridAnnotation()]])
    return z_grid, subs


def run_xyz(p, *args, img2img=False):
    runner = scripts.scripts_img2img if img2img else scripts.scripts_txt2img
    return runner.run_for_api(p, "X/Y/Z plot", list(args))


def test_2x3x2_plot_grids_labels_and_z_grid(fake):
    fake.colour = colour_of
    t2i = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)]
    steps, cfg, sampler = t2i.index("Steps"), t2i.index("CFG Scale"), t2i.index("Sampler")
    res = run_xyz(txt2img(), steps, "1-2", [], cfg, "3-7 (+2)", [], sampler, "", ["Euler", "DDIM"],
                  True, True, True, False, False, False, False, 4, False)
    labels = (["Steps: 1", "Steps: 2"], ["CFG Scale: 3.0", "CFG Scale: 5.0", "CFG Scale: 7.0"], ["Euler", "DDIM"])
    z_grid, subs = expected_grids([1, 2], [3.0, 5.0, 7.0], ["Euler", "DDIM"], labels, margin=4)
    assert len(res.images) == 1 + 2 + 12  # Z grid, one sub-grid per Z value, the cells
    assert [im.size for im in res.images[:3]] == [z_grid.size, subs[0].size, subs[1].size]
    assert subs[0].width > 2 * 64 + 4 and subs[0].height > 3 * 64 + 2 * 4  # labels on the left and on top
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(z_grid))
    assert np.array_equal(np.asarray(res.images[1]), np.asarray(subs[0]))
    assert np.array_equal(np.asarray(res.images[2]), np.asarray(subs[1]))
    # cells in X-then-Y-then-Z order, each made with its own values (Z outermost: all costs are 0)
    made = [(c["steps"], c["cfg_scale"], c["sampler_name"]) for c in fake.calls]
    assert made == [(x, y, z) for z in ("Euler", "DDIM") for y in (3.0, 5.0, 7.0) for x in (1, 2)]
    assert res.images[3 + 5].getpixel((0, 0)) == colour_of(fake.calls[5]["p"])
    assert len(set(c["seed"] for c in fake.calls)) == 1  # the seed was fixed once for the whole plot

    main, first_sub = json.loads(res.infotexts[0]), json.loads(res.infotexts[1])
    assert main["Script"] == "X/Y/Z plot" and main["X Type"] == "Steps" and main["X Values"] == "1-2"
    assert main["Y Type"] == "CFG Scale" and main["Y Values"] == "3-7 (+2)"
    assert main["Z Type"] == "Sampler" and main["Z Values"] == "Euler,DDIM"
    assert "Z Type" not in first_sub and first_sub["X Type"] == "Steps"
    assert json.loads(res.infotexts[2])["Script"] == "X/Y/Z plot"
    assert res.infotexts[3:] == [f"cell {i}" for i in range(1, 13)]

    fake.calls.clear()
    res = run_xyz(txt2img(), steps, "1-2", [], cfg, "3-7 (+2)", [], sampler, "", ["Euler", "DDIM"])
    z_grid, _ = expected_grids([1, 2], [3.0, 5.0, 7.0], ["Euler", "DDIM"], labels)
    assert len(res.images) == 1 and res.images[0].size == z_grid.size  # defaults: only the Z grid (no margins)
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(z_grid))
    assert len(res.infotexts) == 1 and res.index_of_first_image == 1


def test_plot_without_legend_and_one_z_value(fake):
    res = run_xyz(txt2img(), 4, "1, 2, 3", [], 0, "", [], 0, "", [], False)
    assert [im.size for im in res.images] == [(192, 64)]  # no labels; Z grid of one sub-grid is that sub-grid


def test_seeds_fixed_kept_or_varied(fake):
    res = run_xyz(txt2img(seed=-1), 1, "-1, -1, 5", [], 0, "", [], 0, "", [], True, True)
    seeds = [c["seed"] for c in fake.calls]
    assert seeds[2] == 5 and seeds[0] != -1 and seeds[1] != -1 and seeds[0] != seeds[1]
    assert json.loads(res.infotexts[0])["Fixed X Values"] == ", ".join(map(str, seeds))

    fake.calls.clear()
    res = run_xyz(txt2img(seed=-1), 1, "-1, 5", [], 0, "", [], 0, "", [], True, False, False, True)
    assert [c["seed"] for c in fake.calls] == [-1, 5]  # "Keep -1 for seeds"
    assert "Fixed X Values" not in json.loads(res.infotexts[0])

    fake.calls.clear()
    sampler = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)].index("Sampler")
    run_xyz(txt2img(seed=100), 4, "1-2", [], 6, "1-3", [], sampler, "Euler, DDIM", [], True, False, False, False,
            True, True, True)
    seeds = {(c["steps"], c["cfg_scale"], c["sampler_name"]): c["seed"] for c in fake.calls}
    assert seeds == {(x, y, z): 100 + ix + iy * 2 + iz * 6 for iz, z in enumerate(("Euler", "DDIM"))
                     for iy, y in enumerate((1.0, 2.0, 3.0)) for ix, x in enumerate((1, 2))}


def test_costly_axis_is_outermost(fake):
    t2i = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)]
    run_xyz(txt2img(), t2i.index("Checkpoint name"), "", ["tiny-sd1", "tiny-sd2v"], t2i.index("Steps"), "1-2", [],
            0, "", [])
    models = [c["override_settings"]["sd_model_checkpoint"] for c in fake.calls]
    assert models == ["tiny-sd1.safetensors"] * 2 + ["tiny-sd2v.safetensors"] * 2
    assert [c["steps"] for c in fake.calls] == [1, 2, 1, 2]


def test_a_failed_cell_is_black_and_all_failed_is_the_error(fake, monkeypatch):
    def flaky(p):
        if p.steps == 2:
            raise UserError("cell failed")
        return FakeRun(lambda p: (255, 255, 255))(p)

    monkeypatch.setattr(processing, "process_images", flaky)
    res = run_xyz(txt2img(), 4, "1-2", [], 0, "", [], 0, "", [], False, True)
    assert res.images[1].getpixel((0, 0)) == (255, 255, 255) and res.images[2].getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(UserError, match="cell failed"):
        run_xyz(txt2img(), 4, "2", [], 0, "", [], 0, "", [])


def test_real_2x3x2_plot_through_the_api_arguments(tmp_path):
    """Real generations: grid sizes, A1111's infotext keys, and a cell equal to the same generation alone."""
    res = run_xyz(txt2img(), 4, "1-2", [], 6, "3-7 (+2)", [], 1, "1,2", [], True, True, True)
    assert len(res.images) == 15
    subs = res.images[1:3]
    z_grid, expected_subs = expected_grids([1, 2], [3.0, 5.0, 7.0], ["Euler", "DDIM"],
                                           (["Steps: 1", "Steps: 2"],
                                            ["CFG Scale: 3.0", "CFG Scale: 5.0", "CFG Scale: 7.0"],
                                            ["Seed: 1", "Seed: 2"]))
    assert [im.size for im in subs] == [s.size for s in expected_subs] and res.images[0].size == z_grid.size
    main = res.infotexts[0]
    assert ('Script: X/Y/Z plot, X Type: Steps, X Values: 1-2, Y Type: CFG Scale, Y Values: 3-7 (+2), '
            'Z Type: Seed, Z Values: "1,2", Fixed Z Values: "1, 2"') in main
    assert "Z Type" not in res.infotexts[1] and "Script: X/Y/Z plot" in res.infotexts[2]
    last = res.infotexts[-1]
    assert "Steps: 2," in last and "CFG scale: 7.0" in last and "Seed: 2," in last
    alone = processing.process_images(txt2img(steps=2, cfg_scale=7.0, seed=2))
    assert np.array_equal(np.asarray(alone.images[0]), np.asarray(res.images[-1]))


def test_xyz_ui_arguments_and_infotext_fields():
    info = {(i["name"], i["is_img2img"]): i for i in scripts.api_script_info()}
    xyz = info[("x/y/z plot", False)]
    assert len(xyz["args"]) == XYZ_ARGS
    labels = [o.label for o in xyz_grid.axis_options_for(xyz_grid.default_axis_options(), False)]
    assert xyz["args"][0]["choices"] == labels and xyz["args"][0]["value"] == "Seed"
    script = scripts.scripts_txt2img.script("X/Y/Z plot")
    assert [key for _, key in script.infotext_fields if isinstance(key, str)] == [
        "X Type", "X Values", "Y Type", "Y Values", "Z Type", "Z Values"]
    titles = {"txt2img": [s.title() for s in scripts.scripts_txt2img.selectable_scripts],
              "img2img": [s.title() for s in scripts.scripts_img2img.selectable_scripts]}
    assert titles["txt2img"] == ["Prompt matrix", "Prompts from file or textbox", "X/Y/Z plot"]
    assert titles["img2img"] == ["Loopback", "Outpainting mk2", "Poor man's outpainting", "Prompt matrix",
                                 "Prompts from file or textbox", "SD upscale", "X/Y/Z plot"]
    # every control has a default, so clients may leave script arguments out (gradio_client, the API)
    assert all(arg["value"] is not None for i in info.values() for arg in i["args"])
    upscale = info[("sd upscale", True)]["args"]
    assert [a["label"] for a in upscale[1:]] == ["Tile overlap", "Upscaler", "Scale Factor"]


# -- Prompt matrix --------------------------------------------------------------------------------------------


def test_prompt_matrix_combinations():
    assert prompt_matrix.combinations("a cat|in a hat|on a mat") == [
        "a cat", "a cat, in a hat", "a cat, on a mat", "a cat, in a hat, on a mat"]
    assert prompt_matrix.combinations("a|b|c", put_at_start=True, delimiter=" ") == ["a", "b a", "c a", "b c a"]
    assert prompt_matrix.combinations("a| b, |c ") == ["a", "a, b", "a, c", "a, b, c"]
    for n in range(1, 8):
        combos = prompt_matrix.combinations("|".join(f"p{i}" for i in range(n)))
        assert len(combos) == 2 ** (n - 1) and len(set(combos)) == len(combos)
        assert all(c.startswith("p0") for c in combos)
    with pytest.raises(UserError, match="at most 12"):
        prompt_matrix.combinations("|".join("x" * 14))


def test_prompt_matrix_run_grid_and_seeds():
    res = scripts.scripts_txt2img.run_for_api(txt2img(prompt="a cat|red|big", batch_size=2, seed=50),
                                             "Prompt matrix", [False, True, "positive", "comma", 0])
    assert len(res.images) == 5 and res.index_of_first_image == 1
    assert res.all_prompts == ["a cat", "a cat, red", "a cat, big", "a cat, red, big"]
    assert res.all_seeds == [50, 51, 52, 53]
    expected = images_grid.draw_prompt_matrix(images_grid.image_grid(res.images[1:], 2, rows=2), 64, 64,
                                              ["a cat", "red", "big"])
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(expected))
    assert res.images[0].size[0] > 128 and res.images[0].size[1] > 128

    # the negative prompt varies, with a batch size that does not divide the image count
    p = txt2img(prompt="a cat", negative_prompt="blurry|dark", batch_size=3, seed=9)
    res = scripts.scripts_txt2img.run_for_api(p, "Prompt matrix", [False, False, "negative", "space", 0])
    assert res.all_prompts == ["a cat", "a cat"] and res.all_seeds == [9, 9]
    assert res.all_negative_prompts == ["blurry", "blurry dark"]
    assert "Negative prompt: blurry dark" in res.infotexts[2]


# -- Prompts from file ---------------------------------------------------------------------------------------


def test_per_line_options_are_parsed_with_a1111_types():
    args = prompts_from_file.cmdargs(
        '--prompt a cat in a hat --negative_prompt "blurry, dark" low --steps 30 --cfg_scale 7.5 --seed 5 '
        '--restore_faces true --tiling yes --sampler_name "euler a" --width 64 --height 96 --n_iter 2 '
        '--styles "s1, s2" --sd_model tiny-sd1 --subseed_strength 0.25 --do_not_save_samples true '
        '--outpath_samples "/tmp/x y"')
    assert args == {
        "prompt": "a cat in a hat", "negative_prompt": "blurry, dark low", "steps": 30, "cfg_scale": 7.5,
        "seed": 5, "restore_faces": True, "tiling": False, "sampler_name": "Euler a", "width": 64, "height": 96,
        "n_iter": 2, "styles": ["s1", "s2"], "sd_model": "tiny-sd1.safetensors", "subseed_strength": 0.25,
        "do_not_save_samples": True, "outpath_samples": "/tmp/x y",
    }
    assert prompts_from_file.cmdargs("--sampler_name nope") == {"sampler_name": None}  # A1111: default sampler
    for line, message in (("--steps", "missing argument"), ("--steps ten", "bad value 'ten' for --steps"),
                          ("--zoom 2", "unknown commandline option: --zoom"), ("cat --steps 2", 'must start with "--"'),
                          ('--prompt "open', "cannot split"), ("--sd_model nothing-like-it", "Unknown checkpoint")):
        with pytest.raises(UserError, match=message):
            prompts_from_file.cmdargs(line)
    jobs = prompts_from_file.parse_lines("a dog\n\n  --prompt a cat --steps 3\n--steps ten -- weird\n")
    assert jobs == [{"prompt": "a dog"}, {"prompt": "a cat", "steps": 3},
                    {"prompt": "--steps ten -- weird"}]  # A1111: an unreadable line is the prompt


def test_prompts_from_file_run(fake):
    text = "a dog\n--prompt a cat --negative_prompt ugly --steps 3 --seed 9\n--n_iter 2 --prompt bird"
    runner = scripts.scripts_txt2img
    res = runner.run_for_api(txt2img(prompt="photo", negative_prompt="blurry", seed=-1, batch_size=2),
                             "Prompts from file or textbox", [True, False, "end", text])
    calls = fake.calls
    assert [c["prompt"] for c in calls] == ["photo a dog", "photo a cat", "photo bird"]
    assert [c["negative_prompt"] for c in calls] == ["blurry", "blurry ugly", "blurry"]
    assert calls[1]["steps"] == 3 and calls[2]["n_iter"] == 2 and calls[0]["steps"] == 1
    first = calls[0]["seed"]
    assert first != -1 and calls[1]["seed"] == 9 and calls[2]["seed"] == first + 2 * 2  # iterated by batch size
    assert len(res.images) == 2 + 2 + 4 and res.all_prompts[:2] == ["photo a dog"] * 2
    assert all(c["p"].do_not_save_grid for c in calls)


# -- Loopback ------------------------------------------------------------------------------------------------


def test_loopback_strength_curves():
    for curve, ease in (("Linear", lambda t: t), ("Aggressive", lambda t: math.sin(t * math.pi / 2)),
                        ("Lazy", lambda t: 1 - math.cos(t * math.pi / 2))):
        got = [loopback.denoising_strength(i, 5, 0.8, 0.3, curve) for i in range(5)]
        assert got == pytest.approx([0.8 + (0.3 - 0.8) * ease(i / 4) for i in range(5)])
    assert loopback.denoising_strength(1, 1, 0.8, 0.3, "Linear") == 0.8


def test_loopback_feeds_outputs_back(fake):
    fake.colour = lambda p: (len(fake.calls) * 30, 0, 0)
    init = gradient()
    res = scripts.scripts_img2img.run_for_api(img2img(init, seed=10), "Loopback", [3, 0.25, "Linear", "None"])
    calls = fake.calls
    assert [c["denoising_strength"] for c in calls] == pytest.approx([0.75, 0.5, 0.25])
    assert [c["seed"] for c in calls] == [10, 11, 12]
    assert calls[0]["init_images"][0] is init
    assert [c["init_images"][0].getpixel((0, 0)) for c in calls[1:]] == [(30, 0, 0), (60, 0, 0)]
    assert len(res.images) == 4 and res.images[0].size == (192, 64)  # one-row grid, then every loop
    assert calls[0]["p"].extra_generation_params == {"Final denoising strength": 0.25, "Denoising curve": "Linear"}

    fake.calls.clear()
    res = scripts.scripts_img2img.run_for_api(img2img(init, seed=10, n_iter=2), "Loopback", [2, 0.5, "Lazy", "None"])
    assert [c["init_images"][0] is init for c in fake.calls] == [True, False, True, False]
    assert len(res.images) == 3 and res.images[0].size == (128, 64)  # each chain's last image
    with pytest.raises(UserError, match="no CLIP or DeepBooru interrogator"):
        loopback.run(img2img(init), 2, 0.5, "Linear", "CLIP")


# -- Outpainting ---------------------------------------------------------------------------------------------


def test_histogram_matching():
    matched = outpainting.match_cumulative_cdf(np.array([3.0, 1.0, 2.0]), np.array([10.0, 20.0, 30.0]))
    assert np.allclose(matched, [30.0, 10.0, 20.0])
    rng = np.random.default_rng(1)
    src, tmpl = rng.random(1000), rng.normal(5, 2, 500)
    matched = outpainting.match_cumulative_cdf(src, tmpl)
    assert np.all(np.diff(matched[np.argsort(src)]) >= 0)  # the order of the values is kept
    assert abs(np.median(matched) - np.median(tmpl)) < 0.05


def test_matched_noise_keeps_the_image_and_matches_its_colours():
    src = np.asarray(gradient(64, 48), dtype=np.float64) / 255.0
    mask = np.zeros_like(src)
    mask[:, 40:] = 1.0
    out = outpainting.get_matched_noise(src.copy(), mask, 1.0, 0.05)
    assert out.shape == src.shape and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(out[:, :40], src[:, :40])
    filled, reference = out[:, 40:].reshape(-1, 3), src[:, :40].reshape(-1, 3)
    assert np.allclose(filled.mean(0), reference.mean(0), atol=0.03)
    assert filled.std() > 0.01  # noise, not a flat colour
    assert np.array_equal(out, outpainting.get_matched_noise(src.copy(), mask, 1.0, 0.05))  # deterministic


def test_expansion_rounds_the_canvas_to_64():
    assert outpainting.expansion((100, 80), 32, outpainting.DIRECTIONS) == (46, 46, 56, 56)
    assert outpainting.expansion((64, 64), 64, ["left"]) == (64, 0, 0, 0)
    assert outpainting.expansion((64, 64), 8, ["right", "down"]) == (0, 64, 0, 64)
    with pytest.raises(UserError, match="unknown direction 'sideways'"):
        outpainting.expansion((64, 64), 8, ["sideways"])


def test_outpainting_mk2_passes(fake):
    init = gradient()
    res = scripts.scripts_img2img.run_for_api(img2img(init), "Outpainting mk2", ["", 64, 8, ["left"], 1.0, 0.05])
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert (call["width"], call["height"]) == (64, 64)  # the new strip, at most the processing size
    assert call["init_images"][0].size == (64, 64) and call["image_mask"].size == (64, 64)
    assert call["p"].mask_blur_x == 32 and call["p"].mask_blur_y == 0 and call["p"].inpainting_fill == 1
    assert np.asarray(call["image_mask"].convert("L")).min() == 255  # the strip is all new (and blur margin)
    assert len(res.images) == 1 and res.images[0].size == (128, 64)
    out = np.asarray(res.images[0], dtype=np.int16)
    assert (out[:, :64] == 0).all()  # what the stand-in drew
    # the image stays from the end of the blur margin (64 + 8) on; float rounding may lose one level
    assert np.abs(out[:, 72:] - np.asarray(init, dtype=np.int16)[:, 8:]).max() <= 1

    fake.calls.clear()
    res = scripts.scripts_img2img.run_for_api(img2img(init, batch_size=2), "Outpainting mk2",
                                             ["", 32, 4, ["right", "down"], 1.0, 0.05])
    assert len(fake.calls) == 2 and len(res.images) == 3 and res.images[1].size == (128, 128)


def test_poor_mans_outpainting_inpaints_border_tiles(fake):
    init = gradient()
    res = scripts.scripts_img2img.run_for_api(img2img(init), "Poor man's outpainting",
                                             [32, 4, 1, list(outpainting.DIRECTIONS)])
    assert len(fake.calls) == 8  # 3x3 tiles of 64 overlapping by 32; the middle one is all original
    assert all(c["init_images"][0].size == (64, 64) and c["image_mask"].size == (64, 64) for c in fake.calls)
    assert fake.calls[0]["p"].inpainting_fill == 1 and fake.calls[0]["p"].mask_blur == 8
    assert [c["seed"] for c in fake.calls] == list(range(77, 85))
    assert len(res.images) == 1 and res.images[0].size == (128, 128)
    with pytest.raises(UserError, match="must be smaller than the tile size"):
        outpainting.run_poor_mans(img2img(init), 64, 4, 0, ["left"])


def test_real_outpainting_keeps_the_original_pixels():
    init = gradient()
    res = scripts.scripts_img2img.run_for_api(img2img(init, denoising_strength=0.8), "Outpainting mk2",
                                             ["", 64, 4, ["right"], 1.0, 0.05])
    out = np.asarray(res.images[0], dtype=np.int16)
    assert res.images[0].size == (128, 64)
    assert np.abs(out[:, :40] - np.asarray(init, dtype=np.int16)[:, :40]).max() <= 1  # outside mask + blur
    res = scripts.scripts_img2img.run_for_api(img2img(init), "Poor man's outpainting", [16, 2, 1, ["up"]])
    assert res.images[0].size == (64, 128)


def test_bad_script_input():
    with pytest.raises(UserError, match="choose at least one direction"):
        outpainting.run_mk2(img2img(gradient()), 64, 8, [])
    with pytest.raises(UserError, match="unknown prompt type"):
        prompt_matrix.run(txt2img(prompt="a|b"), prompt_type="both")
    with pytest.raises(UserError, match="needs an init image"):
        loopback.run(img2img(None, init_images=[]))
