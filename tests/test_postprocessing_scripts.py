"""Extension postprocessing scripts (ScriptPostprocessing) in the Extras work: discovery and order, the Extras tab's
controls and argument wiring, single / batch / directory runs, pp.info in the saved text, extra images, captions,
and a failing script."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import postprocessing, scripts, shared, upscaler
from modules.scripts_postprocessing import PostprocessingScriptError
from tests import extension_fixtures as fx

EXTENSION = {
    "scripts/pp_ops.py": '''
        import gradio as gr
        from PIL import ImageOps

        from modules import scripts_postprocessing
        from modules.ui_components import InputAccordion


        class ScriptPostprocessingInvert(scripts_postprocessing.ScriptPostprocessing):
            name = "Invert"
            order = 5000

            def ui(self):
                with InputAccordion(False, label="Invert") as enable:
                    note = gr.Textbox(value="full", label="Note")
                return {"enable": enable, "note": note}

            def process_firstpass(self, pp, enable, note):
                if enable:
                    pp.shared.target_width = pp.image.width

            def process(self, pp, enable, note):
                if not enable:
                    return
                pp.image = ImageOps.invert(pp.image.convert("RGB"))
                pp.info["Postprocess invert"] = note
                pp.caption = f"inverted {note}"


        class ScriptPostprocessingMirrorCopy(scripts_postprocessing.ScriptPostprocessing):
            name = "Mirror copy"
            order = 4030

            def ui(self):
                return {"mirror": gr.Checkbox(False, label="Add a mirrored copy")}

            def process(self, pp, mirror):
                if mirror:
                    pp.extra_images.append(pp.create_copy(ImageOps.mirror(pp.image), nametags=["mirrored"]))


        class ScriptPostprocessingBoom(scripts_postprocessing.ScriptPostprocessing):
            name = "Boom"
            order = 100

            def ui(self):
                return {"explode": gr.Checkbox(False, label="Explode")}

            def process(self, pp, explode):
                if explode:
                    raise ValueError("kaboom")
        ''',
}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """The fixture extension installed in an extensions folder of its own and the scripts loaded from it."""
    from modules import extensions, gradio_compat

    root = tmp_path_factory.mktemp("ppscripts")
    fx.write_files(root / "extensions" / "sd-webui-pp-ops", EXTENSION)
    mp = pytest.MonkeyPatch()
    mp.setattr(extensions, "extensions_dir", str(root / "extensions"))
    mp.setattr(extensions, "extensions_builtin_dir", str(root / "none"))
    extensions.list_extensions()
    gradio_compat.install()
    scripts.load_scripts()
    upscaler.load_upscalers()
    yield scripts.scripts_postproc
    mp.undo()
    extensions.list_extensions()
    scripts.load_scripts()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch, tmp_path):
    """Default order and filters; saved images go to this test's own folder."""
    for key, value in (("outdir_samples", ""), ("outdir_extras_samples", str(tmp_path / "extras")),
                       ("postprocessing_operation_order", []), ("postprocessing_disable_in_extras", []),
                       ("postprocessing_existing_caption_action", "Ignore")):
        monkeypatch.setitem(shared.opts.data, key, value)


def picture(seed: int, w: int = 24, h: int = 16) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


NO_UPSCALE = postprocessing.UpscaleArgs(upscaler_1_name="None")


def run(runner, extras_mode=0, image=None, folder=None, input_dir="", output_dir="", save=False, **script_values):
    args = runner.create_args_for_run(script_values)
    return postprocessing.run_postprocessing(extras_mode, image, folder, input_dir, output_dir, True, NO_UPSCALE,
                                             save_output=save, script_args=args)


def test_discovered_at_start_up_in_a1111_order(runner, monkeypatch):
    assert [s.name for s in runner.scripts] == ["Invert", "Mirror copy", "Boom"]  # file order
    assert all(s.filename.endswith("pp_ops.py") for s in runner.scripts)
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Boom", "Mirror copy", "Invert"]  # by order
    monkeypatch.setitem(shared.opts.data, "postprocessing_operation_order", ["Invert"])
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Invert", "Boom", "Mirror copy"]
    monkeypatch.setitem(shared.opts.data, "postprocessing_disable_in_extras", ["Boom"])
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Invert", "Mirror copy"]
    choices = shared.opts.data_labels["postprocessing_disable_in_extras"].component_args()["choices"]
    assert choices == ["Invert", "Mirror copy", "Boom"]


def test_single_image_inverted_exactly_with_info_in_saved_text(runner, tmp_path):
    source = picture(1)
    shown, html, _ = run(runner, image=source, save=True, Invert={"enable": True, "note": "all channels"})
    assert len(shown) == 1
    assert np.array_equal(pixels(shown[0]), 255 - pixels(source))
    assert "Postprocess invert: all channels" in html
    [saved] = (tmp_path / "extras").glob("*.png")
    with Image.open(saved) as im:
        assert np.array_equal(pixels(im), 255 - pixels(source))
        assert im.info["postprocessing"] == "Postprocess invert: all channels"
    assert saved.with_suffix(".txt").read_text() == "inverted all channels"  # pp.caption


def test_unticked_leaves_the_image_and_api_defaults_run_nothing(runner):
    source = picture(2)
    shown, html, _ = run(runner, image=source, Invert={"enable": False, "note": "x"})
    assert np.array_equal(pixels(shown[0]), pixels(source))
    assert "invert" not in html
    # The API's route: A1111 passes None for every extension control.
    shown, _, _ = postprocessing.run_extras(0, 0, source, None, "", "", True, 0, 0, 0, 2, 64, 64, True, "None",
                                            "None", 0, save_output=False)
    assert np.array_equal(pixels(shown[0]), pixels(source))


def test_runs_after_the_builtin_upscale(runner):
    source = picture(3)
    args = runner.create_args_for_run({"Invert": {"enable": True, "note": "n"}})
    upscale = postprocessing.UpscaleArgs(upscale_by=2, upscaler_1_name="Nearest")
    shown, html, _ = postprocessing.run_postprocessing(0, source, None, "", "", True, upscale, save_output=False,
                                                       script_args=args)
    expected = 255 - np.kron(pixels(source), np.ones((2, 2, 1), dtype=int))
    assert np.array_equal(pixels(shown[0]), expected)
    assert "Postprocess upscale by: 2, Postprocess upscaler: Nearest, Postprocess invert: n" in html


def test_batch_and_directory(runner, tmp_path):
    sources = [picture(4), picture(5, 16, 16)]
    shown, _, _ = run(runner, extras_mode=1, folder=sources, Invert={"enable": True, "note": "b"})
    assert [np.array_equal(pixels(a), 255 - pixels(b)) for a, b in zip(shown, sources, strict=True)] == [True, True]

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i, im in enumerate(sources):
        im.save(src / f"img{i}.png")
    shown, _, _ = run(runner, extras_mode=2, input_dir=str(src), output_dir=str(out), save=True,
                      Invert={"enable": True, "note": "d"}, **{"Mirror copy": {"mirror": True}})
    # Invert runs after Mirror copy (order 5000 > 4030) on the image and on the copy Mirror copy added.
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["img0-mirrored.png", "img0.png", "img1-mirrored.png", "img1.png"]
    with Image.open(out / "img0-mirrored.png") as im:
        assert np.array_equal(pixels(im), 255 - pixels(sources[0])[:, ::-1])
        assert im.info["postprocessing"] == "Postprocess invert: d"
    assert len(shown) == 4


def test_failing_script_is_named_and_ends_the_job(runner, tmp_path, caplog):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    picture(6).save(src / "a.png")
    with pytest.raises(PostprocessingScriptError, match=r"'Boom' \(pp_ops.py\) failed: ValueError: kaboom"):
        run(runner, extras_mode=2, input_dir=str(src), output_dir=str(out), save=True, Boom={"explode": True})
    assert "Error running postprocessing script 'Boom'" in caplog.text
    assert not out.exists() or not list(out.iterdir())


def test_extras_tab_shows_the_controls_and_passes_their_values(runner):
    import gradio as gr

    from modules import ui_postprocessing

    with gr.Blocks() as demo:
        ui_postprocessing.create_ui()
    [dep] = [fn for fn in demo.fns.values() if getattr(fn, "api_name", None) == "extras"]
    labels = [getattr(c, "label", None) for c in dep.inputs[len(ui_postprocessing.FIELDS):]]
    assert labels == ["Explode", "Add a mirrored copy", "Invert", "Note"]  # A1111 order, after the built-in ones

    source = picture(7)
    defaults = {"extras_mode": 0, "image": source, "image_batch": None, "input_dir": "", "output_dir": "",
                "show_extras_results": True, "upscale_enabled": False, "upscale_mode": 0, "upscale_by": 2,
                "max_side_length": 0, "upscale_to_width": 64, "upscale_to_height": 64, "upscale_crop": True,
                "upscaler_1_name": "None", "upscaler_2_name": "None", "upscaler_2_visibility": 0, "id_task": ""}
    values = [defaults[name] for name in ui_postprocessing.FIELDS]
    shown, html, _ = ui_postprocessing.run(*values, False, False, True, "tab")
    assert np.array_equal(pixels(shown[0]), 255 - pixels(source))
    assert "Postprocess invert: tab" in html
    *_, log_html = ui_postprocessing.run(*values, True, False, True, "tab")
    assert "kaboom" in log_html and "Boom" in log_html


def test_enabled_in_main_ui_runs_on_generated_images(runner, sd1, monkeypatch):
    from modules import processing
    from modules.scripts_auto_postprocessing import ScriptPostprocessingForMainUI

    monkeypatch.setitem(shared.opts.data, "postprocessing_enable_in_main_ui", ["Invert"])
    tab = scripts.ScriptRunner(is_img2img=False)
    tab.initialize_scripts(is_img2img=False)
    tab.ensure_ui()
    [wrapper] = [s for s in tab.alwayson_scripts if isinstance(s, ScriptPostprocessingForMainUI)]
    assert wrapper.title() == "Invert"
    args = tab.default_script_args()
    assert args[wrapper.args_from:wrapper.args_to] == [False, "full"]
    args[wrapper.args_from:wrapper.args_to] = [True, "main"]

    def generate(with_scripts: bool) -> processing.Processed:
        p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat", steps=1, width=64, height=64, seed=3,
                                                        sampler_name="Euler", do_not_save_samples=True,
                                                        do_not_save_grid=True)
        if with_scripts:
            p.scripts, p.script_args = tab, args
        return processing.process_images(p)

    plain, inverted = generate(False), generate(True)
    assert np.array_equal(pixels(inverted.images[0]), 255 - pixels(plain.images[0]))
    assert "Postprocess invert: main" in inverted.infotexts[0]
    assert "Postprocess invert" not in plain.infotexts[0]
