"""Gradio 3 shims, component callbacks, A1111's ui_components, the page head and the file= allow-list."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")


@pytest.fixture(scope="module", autouse=True)
def shims():
    from modules import gradio_compat

    gradio_compat.install()
    gradio_compat.install()  # idempotent
    assert gradio_compat.installed()


def dependency_configs(demo) -> list[dict]:
    return [fn.get_config() for fn in demo.fns.values()]


def test_gradio3_names_and_update_classmethods():
    assert gr.Box is gr.Group and gr.Variable is gr.State
    assert gr.components.IOComponent is gr.components.Component
    update = gr.Dropdown.update(choices=["x"], value="x")
    assert update == {"__type__": "update", "choices": ["x"], "value": "x"}
    assert gr.Textbox.update("v") == {"__type__": "update", "value": "v"}
    assert gr.Row.update(visible=False) == {"__type__": "update", "visible": False}
    with gr.Blocks():
        slider = gr.inputs.Slider(minimum=0, maximum=10, default=3, label="legacy")
        text = gr.outputs.Textbox(label="out")
    assert isinstance(slider, gr.Slider) and slider.value == 3
    assert isinstance(text, gr.Textbox)


def test_component_keywords_are_translated_or_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING), gr.Blocks():
        image = gr.Image(source="webcam", tool="sketch", type="pil")
        sketch = gr.Image(source="canvas")
        gallery = gr.Gallery(grid=[3, 4])
        file = gr.File(type="file")
        button = gr.Button("x", tooltip="hint", not_a_real_keyword=5).style(full_width=True)
        row = gr.Row().style(equal_height=True)
    assert image.sources == ["webcam"]
    assert sketch.sources == ["upload"]
    assert gallery.columns == 3
    assert file.type == "filepath"
    assert isinstance(button, gr.Button) and button.webui_tooltip == "hint"
    assert isinstance(row, gr.Row)
    assert "gr.Image: ignoring keyword 'tool='sketch'' (removed in Gradio 4)" in caplog.text
    assert "gr.Button: ignoring keyword 'not_a_real_keyword=5' (unknown to Gradio 6)" in caplog.text
    assert "tooltip" not in caplog.text


def test_event_keywords_js_api_name_and_then():
    with gr.Blocks() as demo:
        a = gr.Textbox()
        b = gr.Button()
        b.click(fn=None, _js="() => ['from js']", inputs=[], outputs=[a]).then(
            fn=lambda: "x", inputs=[], outputs=[a], _js="(x) => x", api_name=False)
        demo.load(fn=lambda: None, _js="() => []", show_api=False, every=1)
    configs = dependency_configs(demo)
    assert configs[0]["js"] == "() => ['from js']"
    assert configs[1]["js"] == "(x) => x" and configs[1]["api_visibility"] == "private"
    assert configs[2]["js"] == "() => []" and configs[2]["api_visibility"] == "undocumented"


def test_component_callbacks_fire_for_every_component_with_kwargs():
    from modules import script_callbacks, scripts

    before, after = [], []

    def on_before(component, **kwargs):
        before.append((type(component).__name__, kwargs.get("elem_id")))
        if kwargs.get("elem_id") == "target":
            gr.HTML("inserted before", elem_id="inserted")  # A1111 extensions add UI this way

    def on_after(component, **kwargs):
        after.append((type(component).__name__, component.elem_id))

    class Watcher(scripts.Script):
        def title(self):
            return "watcher"

    watcher = Watcher()
    watched = []
    watcher.on_after_component(lambda c: watched.append(c.component.elem_id), elem_id="target")
    runner = scripts.ScriptRunner()
    runner.scripts = [watcher]
    runner.apply_on_before_component_callbacks()

    script_callbacks.on_before_component(on_before)
    script_callbacks.on_after_component(on_after)
    old_current = scripts.scripts_current
    scripts.scripts_current = runner
    try:
        with gr.Blocks() as demo:
            with gr.Row(elem_id="row"):
                gr.Textbox(elem_id="target")
    finally:
        scripts.scripts_current = old_current
        script_callbacks.remove_callbacks_for_function(on_before)
        script_callbacks.remove_callbacks_for_function(on_after)
    assert ("Row", "row") in before and ("Textbox", "target") in before
    created = [x for x in after if x[0] != "Form"]  # gradio wraps form fields in its own Form block
    assert created == [("Row", "row"), ("HTML", "inserted"), ("Textbox", "target")]  # as A1111: after __init__
    assert watched == ["target"]
    ids = [c.elem_id for c in demo.blocks.values()]
    assert ids.index("inserted") < ids.index("target")  # created before the component it was aimed at


def test_components_get_a1111_css_classes():
    with gr.Blocks():
        text = gr.Textbox()
        multi = gr.Dropdown(choices=["a"], multiselect=True, elem_classes="mine")
    assert "gradio-textbox" in text.elem_classes
    assert {"mine", "gradio-dropdown", "multiselect"} <= set(multi.elem_classes)


def test_ui_components_and_refresh_button(tmp_path):
    from modules import ui, ui_components

    refreshed = []
    with gr.Blocks() as demo:
        with ui_components.FormRow(elem_id="form_row"):
            tool = ui_components.ToolButton("🔄", elem_id="tool")
            multi = ui_components.DropdownMulti(choices=["a", "b"], value=["a"], label="multi")
            editable = ui_components.DropdownEditable(choices=["a"], value="zzz", label="editable")
        with ui_components.FormGroup(), ui_components.FormColumn():
            form_html = ui_components.FormHTML("<b>x</b>")
            plain_html = gr.HTML("<i>y</i>")
        with ui_components.InputAccordion(True, label="Extra", elem_id="acc") as acc:
            with acc.extra():
                gr.HTML("in the header")
            inner = gr.Textbox(label="inside")
        dropdown = gr.Dropdown(choices=["old"], label="Choice")
        button = ui.create_refresh_button(dropdown, lambda: refreshed.append(1), lambda: {"choices": ["new"]},
                                          "refresh_choice")
        with ui_components.ResizeHandleRow():
            gr.Column()
    assert tool.get_block_name() == "button" and "tool" in tool.elem_classes
    # Serialised with the gradio base class's properties (their __init__ only takes **kwargs).
    assert tool.get_config()["elem_id"] == "tool" and tool.get_config()["value"] == "🔄"
    assert acc.get_config()["elem_id"] == "acc-checkbox" and acc.get_config()["visible"] == "hidden"
    assert form_html.get_config()["value"] == "<b>x</b>" and plain_html.get_config()["value"] == "<i>y</i>"

    class Gradio3Style(gr.Textbox):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    with gr.Blocks():
        custom = Gradio3Style(elem_id="custom", label="Custom", lines=3)
    assert {"elem_id": "custom", "label": "Custom", "lines": 3}.items() <= custom.get_config().items()
    assert multi.multiselect and editable.allow_custom_value
    assert isinstance(acc, gr.Checkbox) and acc.value is True and acc.elem_id == "acc-checkbox"
    assert acc.accordion.open is True and acc.accordion.elem_id == "acc"
    assert inner.parent.parent is acc.accordion  # (gradio's Form in between)
    assert button.elem_id == "refresh_choice" and button.webui_tooltip == "Choice: refresh"
    refresh_fn = next(f for f in demo.fns.values() if f.name == "refresh").fn
    assert refresh_fn() == {"__type__": "update", "choices": ["new"]} and refreshed == [1]
    assert dropdown.choices == ["new"]
    assert not list(Path(ui_components.__file__).parent.glob("*.pyi"))  # gradio's .pyi writer is off


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """An active extension with assets and secrets, an outputs folder, and a symlink escaping it."""
    from modules import extensions, paths_internal, shared

    ext = tmp_path / "extensions" / "assets-ext"
    files = {
        "javascript/a.js": "1", "javascript/b.mjs": "2", "style.css": "x{}", "tags/list.csv": "a,b",
        "scripts/code.py": "secret = 1", ".git/config": "[remote] url=https://user:token@x", "config.json": "{}",
        "api_token.txt": "t", "page.html": "<script>", "icons/i.svg": "<svg/>",
    }
    for name, text in files.items():
        (ext / name).parent.mkdir(parents=True, exist_ok=True)
        (ext / name).write_text(text)
    outputs = tmp_path / "outputs"
    (outputs / "txt2img-images").mkdir(parents=True)
    (outputs / "txt2img-images" / "x.png").write_bytes(b"png")
    (outputs / "evil.html").write_text("<script>alert(1)</script>")
    (outputs / "link.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "outside.png").write_bytes(b"secret")
    monkeypatch.setattr(extensions, "extensions_dir", str(tmp_path / "extensions"))
    monkeypatch.setattr(extensions, "extensions_builtin_dir", str(tmp_path / "none"))
    monkeypatch.setattr(paths_internal, "default_output_dir", str(outputs))
    for key in ("outdir_samples", "outdir_txt2img_samples", "outdir_grids", "outdir_txt2img_grids", "outdir_save"):
        monkeypatch.setitem(shared.opts.data, key, "")
    extensions.list_extensions()
    yield ext, outputs
    monkeypatch.undo()
    extensions.list_extensions()


def test_file_route_allow_list(assets):
    from modules import paths_internal, ui_gradio_extensions

    ext, outputs = assets
    resolve = ui_gradio_extensions.resolve_file
    for name in ("javascript/a.js", "javascript/b.mjs", "style.css", "tags/list.csv", "icons/i.svg", "page.html"):
        assert resolve(str(ext / name)) == (os.path.realpath(ext / name), False), name
    assert resolve("script.js") == (os.path.join(paths_internal.script_path, "script.js"), False)  # relative: repo
    assert resolve(str(outputs / "txt2img-images" / "x.png"))[1] is False
    assert resolve(str(outputs / "evil.html"))[1] is True  # active content from outputs: download only
    refused = [ext / "scripts" / "code.py", ext / ".git" / "config", ext / "config.json", ext / "api_token.txt",
               outputs / "link.png", outputs / ".." / "outside.png", Path("/etc/passwd"),
               Path(paths_internal.script_path) / "webui.py", Path(paths_internal.script_path) / "modules" / "shared.py"]
    for path in refused:
        with pytest.raises(PermissionError):
            resolve(str(path))
    with pytest.raises(FileNotFoundError):
        resolve(str(ext / "javascript" / "missing.js"))


def test_file_route_over_http(assets):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules import ui_gradio_extensions

    ext, outputs = assets
    app = FastAPI()
    ui_gradio_extensions.add_file_route(app)
    client = TestClient(app)
    ok = client.get(f"/file={ext}/javascript/a.js")
    assert ok.status_code == 200 and ok.text == "1" and "javascript" in ok.headers["content-type"]
    assert ok.headers["x-content-type-options"] == "nosniff"
    html = client.get(f"/file={outputs}/evil.html")
    assert html.status_code == 200 and html.headers["content-disposition"].startswith("attachment")
    assert client.get(f"/file={ext}/.git/config").status_code == 403
    assert client.get(f"/file={ext}/../../outside.png").status_code == 403
    assert client.get(f"/file={ext}/javascript/nope.js").status_code == 404
    assert client.get("/file=%2Fetc%2Fpasswd").status_code == 403


def test_head_loads_script_js_first_then_extension_assets(assets, monkeypatch):
    from modules import localization, shared, ui_gradio_extensions

    ext, _ = assets
    monkeypatch.setitem(localization.localizations, "Test", [])
    monkeypatch.setitem(shared.opts.data, "localization", "Test")
    head = ui_gradio_extensions.head_html()
    scripts = [line for line in head.splitlines() if "<script" in line and "src=" in line]
    assert "src='file=script.js?" in scripts[0]
    assert any(f"file={ext}/javascript/a.js?" in s and "text/javascript" in s for s in scripts)
    assert any(f"file={ext}/javascript/b.mjs?" in s and "type='module'" in s for s in scripts)
    assert f"href='file={ext}/style.css?" in head
    assert head.startswith("<script type='text/javascript'>window.localization = {};</script>")
