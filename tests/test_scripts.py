"""The script runner: loading extension scripts, argument layout, API arguments, and every hook at its point of
process_images (in process, on the tiny SD1 checkpoint)."""

from __future__ import annotations

import logging
import os
import sys

import pytest
from PIL import Image

from tests import extension_fixtures as fx

HOOKS = {
    "scripts/hooks.py": '''
        import gradio as gr

        from modules import scripts

        calls = []


        class HookRecorder(scripts.Script):
            def title(self):
                return "Hook recorder"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                return [gr.Checkbox(True, label="Paint red"), gr.Number(5, label="Marker", precision=0)]

            def setup(self, p, *args):
                calls.append(("setup", args))

            def before_process(self, p, *args):
                calls.append(("before_process", args))

            def process(self, p, *args):
                calls.append(("process", args))

            def before_process_batch(self, p, *args, **kwargs):
                calls.append(("before_process_batch", args, sorted(kwargs)))

            def process_batch(self, p, *args, **kwargs):
                calls.append(("process_batch", args, sorted(kwargs)))

            def process_before_every_sampling(self, p, *args, **kwargs):
                calls.append(("process_before_every_sampling", args, sorted(kwargs)))

            def post_sample(self, p, ps, *args):
                calls.append(("post_sample", args, tuple(ps.samples.shape)))

            def postprocess_batch(self, p, *args, **kwargs):
                calls.append(("postprocess_batch", args, sorted(kwargs)))

            def postprocess_batch_list(self, p, pp, *args, **kwargs):
                calls.append(("postprocess_batch_list", args, len(pp.images)))

            def postprocess_image(self, p, pp, *args):
                calls.append(("postprocess_image", args))
                if args[0]:
                    pp.image = Image.new("RGB", pp.image.size, (255, 0, 0))

            def postprocess_image_after_composite(self, p, pp, *args):
                calls.append(("postprocess_image_after_composite", args, pp.image.getpixel((0, 0))))

            def postprocess(self, p, processed, *args):
                calls.append(("postprocess", args, len(processed.images)))


        from PIL import Image  # noqa: E402
    ''',
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, tiny_checkpoints):
    """Fixture extensions (rewriter, repeat, broken, gradio 3, hook recorder) loaded into fresh runners."""
    from modules import devices, extensions, gradio_compat, scripts, sd_models, shared

    root = tmp_path_factory.mktemp("script-exts")
    for name, files in (("rewriter", fx.REWRITER), ("repeat", fx.REPEAT), ("broken", fx.BROKEN),
                        ("gradio3", fx.GRADIO3), ("hooks", HOOKS)):
        fx.write_files(root / "extensions" / name, files)
    mp = pytest.MonkeyPatch()
    mp.setattr(extensions, "extensions_dir", str(root / "extensions"))
    mp.setattr(extensions, "extensions_builtin_dir", str(root / "builtin"))
    saved_opts = dict(shared.opts.data)
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    extensions.list_extensions()
    gradio_compat.install()
    scripts.load_scripts()
    from modules import script_callbacks

    script_callbacks.ui_settings_callback()
    yield root
    mp.undo()
    shared.opts.data.clear()
    shared.opts.data.update(saved_opts)
    extensions.list_extensions()
    scripts.load_scripts()


def module_of(title_fragment: str):
    from modules import scripts

    return next(d.module for d in scripts.scripts_data if title_fragment in os.path.basename(d.path))


def txt2img_p(prompt="a cat", **kwargs):
    from modules import processing

    args = dict(prompt=prompt, steps=1, width=64, height=64, sampler_name="Euler", seed=1234,
                do_not_save_samples=True, do_not_save_grid=True)
    args.update(kwargs)
    return processing.StableDiffusionProcessingTxt2Img(**args)


@pytest.fixture(scope="module")
def sd1(loaded, tiny_checkpoints):
    from modules import sd_models

    sd_models.reload_model_weights(info=sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    yield


def test_broken_extension_is_reported_and_the_rest_load(loaded, caplog):
    from modules import extensions, scripts

    errors = scripts.load_errors
    assert [(e.extension, os.path.basename(e.filename)) for e in errors] == [("broken", "broken.py")]
    assert "fails at import on purpose" in errors[0].traceback and "Traceback" in errors[0].traceback
    loaded_names = {d.script_class.__name__ for d in scripts.scripts_data}
    assert {"RewriterScript", "RepeatScript", "Gradio3Script", "HookRecorder"} <= loaded_names
    assert extensions.loaded_extensions["broken"].load_errors
    assert extensions.loaded_extensions["rewriter"].load_time > 0


def test_extension_scripts_resolve_their_own_scripts_package_and_basedir(loaded):
    from modules import scripts

    rewriter = module_of("rewriter.py")
    assert rewriter.rewrite("a", "b") == "a, b"  # from scripts.rewriter_lib import rewrite
    assert rewriter.BASEDIR == str(loaded / "extensions" / "rewriter")
    assert str(loaded / "extensions" / "rewriter") not in sys.path
    assert scripts.basedir() == scripts.paths_internal.script_path


def test_runner_layout_and_script_info(loaded):
    from modules import scripts

    runner = scripts.scripts_txt2img
    runner.initialize_scripts(is_img2img=False)
    runner.ensure_ui()
    titles = {s.title(): s for s in runner.scripts}
    # the repository's scripts first, then the extensions'; Custom code is hidden without --allow-code
    assert [s.title() for s in runner.selectable_scripts] == ["Prompt matrix", "Prompts from file or textbox",
                                                              "X/Y/Z plot", "Prompt repeat"]
    assert {"Prompt rewriter", "Gradio 3 script", "Hook recorder"} <= {s.title() for s in runner.alwayson_scripts}
    slices = sorted((s.args_from, s.args_to) for s in runner.scripts)
    assert slices[0][0] == 1 and all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
    assert runner.script("PROMPT REPEAT") is titles["Prompt repeat"]

    defaults = runner.default_script_args()
    assert defaults[0] == 0
    repeat = titles["Prompt repeat"]
    assert defaults[repeat.args_from:repeat.args_to] == [2, "again"]
    rewriter = titles["Prompt rewriter"]
    assert defaults[rewriter.args_from:rewriter.args_to] == [False, ""]
    gradio3 = titles["Gradio 3 script"]
    assert defaults[gradio3.args_from:gradio3.args_to] == ["a", None, 3]  # gr.inputs.Slider(default=3)

    info = {(i["name"], i["is_img2img"]): i for i in scripts.api_script_info()}
    entry = info[("prompt repeat", False)]
    assert entry["is_alwayson"] is False
    assert entry["args"][0] == {"label": "Times", "value": 2, "minimum": 1, "maximum": 4, "step": 1, "choices": None}
    assert info[("gradio 3 script", True)]["args"][0]["choices"] == ["a", "b"]
    assert "prompt repeat" in scripts.api_scripts_list()["txt2img"]


def test_init_script_args_follows_a1111_rules(loaded):
    from modules import scripts

    runner = scripts.scripts_txt2img
    runner.ensure_ui()
    repeat = runner.script("Prompt repeat")
    rewriter = runner.script("Prompt rewriter")
    args = runner.init_script_args("prompt REPEAT", [3], {"Prompt Rewriter": {"args": [True]}})
    assert args[0] == runner.selectable_scripts.index(repeat) + 1
    assert args[repeat.args_from:repeat.args_to] == [3]  # A1111 replaces the slice with what was sent
    assert args[rewriter.args_from:rewriter.args_to] == [True, ""]  # the rest keeps its default
    with pytest.raises(scripts.ScriptNotFoundError, match="Script 'nope' not found") as e:
        runner.init_script_args("nope", [])
    assert e.value.status_code == 422
    with pytest.raises(scripts.ScriptNotFoundError, match="always on script missing not found"):
        runner.init_script_args(None, None, {"missing": {"args": []}})
    with pytest.raises(scripts.ScriptNotFoundError, match="selectable script"):
        runner.init_script_args(None, None, {"Prompt repeat": {"args": [1]}})


def test_alwayson_script_rewrites_prompts_and_adds_infotext(sd1):
    from modules import scripts

    processed = scripts.scripts_txt2img.run_for_api(
        txt2img_p("a cat", batch_size=2), alwayson_scripts={"Prompt rewriter": {"args": [True, "sunny"]}})
    assert processed.all_prompts == ["a cat, sunny", "a cat, sunny"]
    assert processed.infotexts[0].startswith("a cat, sunny\n")
    assert "Rewriter: sunny" in processed.infotexts[0].splitlines()[-1]
    assert processed.extra_generation_params["Rewriter"] == "sunny"

    plain = scripts.scripts_txt2img.run_for_api(txt2img_p("a cat"))
    assert plain.all_prompts == ["a cat"] and "Rewriter" not in plain.infotexts[0]

    from_settings = scripts.scripts_txt2img.run_for_api(
        txt2img_p("a dog"), alwayson_scripts={"prompt rewriter": {"args": [True]}})
    assert from_settings.all_prompts == ["a dog, rewritten"]  # the on_ui_settings option's default


def test_selectable_script_runs_through_script_name(sd1):
    from modules import scripts

    processed = scripts.scripts_txt2img.run_for_api(txt2img_p("a cat"), "Prompt repeat", [3, "more"])
    assert processed.prompt == "a cat more more more"
    assert "Repeat: 3" in processed.infotexts[0]


def test_hooks_are_called_in_a1111_order_with_their_arguments(sd1):
    from modules import scripts

    calls = module_of("hooks.py").calls
    calls.clear()
    processed = scripts.scripts_txt2img.run_for_api(
        txt2img_p("a cat", n_iter=2), alwayson_scripts={"Hook recorder": {"args": [True, 7]}})
    names = [c[0] for c in calls]
    per_batch = ["before_process_batch", "process_batch", "process_before_every_sampling", "post_sample",
                 "postprocess_batch", "postprocess_batch_list", "postprocess_image",
                 "postprocess_image_after_composite"]
    assert names == ["setup", "before_process", "process", *per_batch, *per_batch, "postprocess"]
    assert all(c[1] == (True, 7) for c in calls)
    assert calls[3][2] == ["batch_number", "prompts", "seeds", "subseeds"]
    assert calls[5][2] == ["c", "noise", "uc", "x"]
    assert calls[6][2] == (1, 4, 8, 8)
    assert calls[7][2] == ["batch_number", "images"]
    assert calls[10][2] == (255, 0, 0)  # postprocess_image replaced the image; the next hook sees it
    assert calls[-1][2] == len(processed.images)
    assert all(im.getpixel((0, 0)) == (255, 0, 0) for im in processed.images)


def test_image_saved_callbacks_change_what_is_written(loaded, tmp_path):
    from modules import images, script_callbacks

    seen = []

    def before(params):
        params.pnginfo["extension-key"] = "hello"
        seen.append(("before", os.path.basename(params.filename)))

    def after(params):
        seen.append(("after", params.filename))

    script_callbacks.on_before_image_saved(before)
    script_callbacks.on_image_saved(after)
    try:
        path, _ = images.save_image(Image.new("RGB", (8, 8)), str(tmp_path), "", 1, "p", "png", info="text")
    finally:
        script_callbacks.remove_callbacks_for_function(before)
        script_callbacks.remove_callbacks_for_function(after)
    with Image.open(path) as im:
        assert im.info["extension-key"] == "hello" and im.info["parameters"] == "text"
    assert seen == [("before", os.path.basename(path)), ("after", path)]


def test_image_grid_callback_can_change_the_layout(loaded):
    from modules import images, script_callbacks

    def one_row(params):
        params.cols, params.rows = len(params.imgs), 1

    script_callbacks.on_image_grid(one_row)
    try:
        grid = images.image_grid([Image.new("RGB", (4, 4))] * 4)
    finally:
        script_callbacks.remove_callbacks_for_function(one_row)
    assert grid.size == (16, 4)


def test_custom_code_needs_allow_code(loaded, monkeypatch):
    from modules import scripts, shared
    from modules.errors import UserError

    script_class = next(d.script_class for d in scripts.scripts_data if d.path.endswith("custom_code.py"))
    script = script_class()
    assert script.show(False) is False
    with pytest.raises(UserError, match="--allow-code"):
        script.run(txt2img_p(), "return 1")
    monkeypatch.setattr(shared.cmd_opts, "allow_code", True)
    assert script.show(False) is True
    result = script.run(txt2img_p(), "display([], 5, 'shown')\nreturn None", 2)
    assert (result.seed, result.info) == (5, "shown")


def test_failing_hook_is_reported_and_generation_continues(sd1, caplog, monkeypatch):
    from modules import scripts

    hooks = module_of("hooks.py")

    def boom(self, p, *args):
        raise RuntimeError("hook failed")

    monkeypatch.setattr(hooks.HookRecorder, "process", boom)
    with caplog.at_level(logging.ERROR):
        processed = scripts.scripts_txt2img.run_for_api(txt2img_p(), alwayson_scripts={"Hook recorder": {"args": [False, 1]}})
    assert len(processed.images) == 1
    assert "Error running process" in caplog.text and "hook failed" in caplog.text


def test_postprocessing_runner_orders_and_runs_scripts(loaded, monkeypatch):
    from modules import scripts, scripts_postprocessing, shared

    class Double(scripts_postprocessing.ScriptPostprocessing):
        name = "Double"
        order = 20

        def ui(self):
            import gradio as gr

            return {"factor": gr.Number(2, label="Factor")}

        def process(self, pp, factor):
            pp.image = pp.image.resize((pp.image.width * int(factor), pp.image.height * int(factor)))
            pp.info["Double"] = factor
            pp.extra_images.append(pp.image.copy())

    class Tag(scripts_postprocessing.ScriptPostprocessing):
        name = "Tag"
        order = 10

        def ui(self):
            import gradio as gr

            return {"text": gr.Textbox("t")}

        def process(self, pp, text):
            pp.info.setdefault("order", []).append(text)

    runner = scripts_postprocessing.ScriptPostprocessingRunner()
    runner.initialize_scripts([scripts.ScriptClassData(c, f"{c.__name__}.py", "", None) for c in (Double, Tag)])
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Tag", "Double"]
    monkeypatch.setitem(shared.opts.data, "postprocessing_operation_order", ["Double"])
    assert [s.name for s in runner.scripts_in_preferred_order()] == ["Double", "Tag"]
    args = runner.create_args_for_run({"Double": {"factor": 3}, "Tag": {"text": "x"}})
    pp = scripts_postprocessing.PostprocessedImage(Image.new("RGB", (2, 2)))
    runner.run(pp, args)
    assert pp.image.size == (6, 6) and pp.info["Double"] == 3
    assert len(pp.extra_images) == 1 and pp.extra_images[0].info["order"] == ["x"]  # copies are processed too
