"""Fixture extensions written by the tests as local git repositories, installed through the real Install-from-URL
path (file:// URLs are allowed only because the tests set SD_WEBUI_EXTENSIONS_ALLOW_FILE_URLS=1).

Each is a small but real A1111 extension: scripts/*.py using modules.scripts / script_callbacks / shared,
javascript/*.js, style.css, preload.py, install.py, metadata.ini.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": os.environ.get("HOME", "/tmp"),
}


def git(path: Path, *args: str) -> str:
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", f"safe.directory={path}", "-C", str(path),
                           *args], check=True, capture_output=True, text=True, env=env).stdout


def make_repo(path: Path, files: dict[str, str]) -> str:
    """A git repository with `files` committed on branch main; returns its file:// URL."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    write_files(path, files)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path.resolve().as_uri()


def commit(path: Path, files: dict[str, str], message: str = "change") -> str:
    write_files(path, files)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def build_wheel(folder: Path, name: str = "tinypkg_sdwebui", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel written by hand (no build backend, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    records = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        records.append(f"{path},sha256={digest},{len(text.encode())}")
    records.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel


REWRITER = {
    "scripts/rewriter.py": '''
        import gradio as gr

        from modules import script_callbacks, scripts, shared
        from modules.ui_components import InputAccordion
        from scripts.rewriter_lib import rewrite  # the extension's own scripts/rewriter_lib.py

        BASEDIR = scripts.basedir()
        seen = {"after_component": 0, "elem_ids": set(), "script_after_component": []}


        class RewriterScript(scripts.Script):
            def title(self):
                return "Prompt rewriter"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                with InputAccordion(False, label="Prompt rewriter", elem_id=self.elem_id("enabled")) as enabled:
                    suffix = gr.Textbox(label="Suffix", value="", elem_id=self.elem_id("suffix"))
                return [enabled, suffix]

            def after_component(self, component, **kwargs):
                if kwargs.get("elem_id") == "txt2img_prompt":
                    seen["script_after_component"].append(self.tabname)

            def process(self, p, enabled, suffix):
                if not enabled:
                    return
                suffix = suffix or getattr(shared.cmd_opts, "rewriter_suffix", None) or shared.opts.rewriter_suffix
                p.all_prompts = [rewrite(x, suffix) for x in p.all_prompts]
                p.extra_generation_params["Rewriter"] = suffix


        def on_ui_settings():
            section = ("rewriter", "Prompt rewriter")
            shared.opts.add_option("rewriter_suffix", shared.OptionInfo(
                "rewritten", "Suffix the prompt rewriter adds", section=section).info("any text"))


        def on_after_component(component, **kwargs):
            seen["after_component"] += 1
            if kwargs.get("elem_id"):
                seen["elem_ids"].add(kwargs["elem_id"])


        def on_app_started(demo, app):
            @app.get("/rewriter/info")
            def info():
                return {
                    "demo": type(demo).__name__,
                    "app": type(app).__name__,
                    "suffix_flag": shared.cmd_opts.rewriter_suffix,
                    "basedir": BASEDIR,
                    "after_component": seen["after_component"],
                    "saw_prompt": "txt2img_prompt" in seen["elem_ids"],
                    "script_after_component": seen["script_after_component"],
                }


        script_callbacks.on_ui_settings(on_ui_settings)
        script_callbacks.on_after_component(on_after_component)
        script_callbacks.on_app_started(on_app_started)
    ''',
    "scripts/rewriter_lib.py": '''
        def rewrite(prompt, suffix):
            return f"{prompt}, {suffix}"
    ''',
    "javascript/rewriter.js": '''
        onUiLoaded(function() {
            const textarea = gradioApp().querySelector('#txt2img_prompt textarea');
            textarea.value = 'set by rewriter.js: ' + opts.rewriter_suffix;
            updateInput(textarea);
        });
    ''',
    "style.css": '''
        #txt2img_prompt textarea { caret-color: rgb(1, 2, 3); }
    ''',
    "preload.py": '''
        def preload(parser):
            parser.add_argument("--rewriter-suffix", type=str, default=None, help="suffix for the prompt rewriter")
    ''',
    "metadata.ini": '''
        [Extension]
        Name = rewriter
    ''',
    "localizations/Test-Lang.json": '''
        {"Generate": "Erzeugen"}
    ''',
}

REPEAT = {
    "scripts/repeat.py": '''
        import gradio as gr

        from modules import processing, scripts


        class RepeatScript(scripts.Script):
            def title(self):
                return "Prompt repeat"

            def ui(self, is_img2img):
                times = gr.Slider(minimum=1, maximum=4, step=1, value=2, label="Times", elem_id=self.elem_id("times"))
                word = gr.Textbox(value="again", label="Word", elem_id=self.elem_id("word"))
                return [times, word]

            def run(self, p, times, word):
                p.prompt = " ".join([p.prompt] + [word] * int(times))
                p.extra_generation_params["Repeat"] = int(times)
                return processing.process_images(p)
    ''',
}

TAB = {
    "scripts/tab.py": '''
        import gradio as gr

        from modules import script_callbacks


        def on_ui_tabs():
            with gr.Blocks(analytics_enabled=False) as tab:
                gr.Markdown("Hello from an extension tab", elem_id="ext_tab_text")
                button = gr.Button("Press", elem_id="ext_tab_button")
                out = gr.Textbox(label="Result", elem_id="ext_tab_out")
                button.click(lambda: "pressed", outputs=[out])
            return [(tab, "Extension Tab", "ext_tab")]


        script_callbacks.on_ui_tabs(on_ui_tabs)
    ''',
}

GRADIO3 = {
    "scripts/gradio3.py": '''
        import gradio as gr

        from modules import scripts


        class Gradio3Script(scripts.Script):
            def title(self):
                return "Gradio 3 script"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                with gr.Box():
                    image = gr.Image(source="upload", type="pil", tool="editor", label="Gradio 3 image")
                    choice = gr.Dropdown(choices=["a", "b"], value="a", label="Gradio 3 choice",
                                         elem_id="gradio3_choice", an_unknown_keyword=1)
                    swap = gr.Button("Swap", elem_id="gradio3_swap").style(full_width=True)
                    note = gr.Textbox(label="Gradio 3 note", elem_id="gradio3_note").style(container=False)
                    swap.click(fn=lambda: gr.Dropdown.update(choices=["x", "y"], value="x"), inputs=[],
                               outputs=[choice], _js="() => []")
                    inputs_slider = gr.inputs.Slider(minimum=0, maximum=10, default=3, label="legacy slider")
                return [choice, note, inputs_slider]
    ''',
}

BROKEN = {
    "scripts/broken.py": '''
        raise RuntimeError("this extension fails at import on purpose")
    ''',
}


def installer(wheel_dir: Path) -> dict[str, str]:
    """An extension whose install.py installs a tiny wheel (into the extension's own folder: no venv changes)."""
    return {
        "install.py": f'''
            import os

            import launch

            here = os.path.dirname(os.path.abspath(__file__))
            target = os.path.join(here, "site")
            if not launch.is_installed("tinypkg_sdwebui"):
                launch.run_pip('install --no-index --no-deps --find-links "{wheel_dir}" --target "' + target + '" '
                               'tinypkg_sdwebui', "tinypkg_sdwebui")
            with open(os.path.join(here, "installed.txt"), "w") as f:
                f.write("ok")
        ''',
        "scripts/uses_package.py": '''
            import os
            import sys

            from modules import scripts

            sys.path.append(os.path.join(scripts.basedir(), "site"))
            import tinypkg_sdwebui  # noqa: E402  (installed by install.py)

            VERSION = tinypkg_sdwebui.VERSION
        ''',
    }
