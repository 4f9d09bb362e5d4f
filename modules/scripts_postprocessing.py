"""Extras (postprocessing) scripts: A1111's `modules.scripts_postprocessing`.

A `ScriptPostprocessing` subclass returns a dict name → component from `ui()`; its `process(pp, **args)` gets
those names as keyword arguments and changes `pp.image` / `pp.info` / `pp.extra_images`. The runner orders the
scripts by the postprocessing_operation_order setting, then `order`, then name, leaving out those named in
postprocessing_disable_in_extras. Gradio is imported only to build a UI.

As in A1111, a script that raises ends the Extras job (images already saved stay saved); the error names the
script.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from modules import errors

log = logging.getLogger(__name__)


class PostprocessingScriptError(errors.UserError):
    """An Extras script raised: the message names the script and its file."""

    status_code = 500


class PostprocessedImageSharedInfo:
    """State shared by an image and the copies made from it (e.g. the size an upscaler aims at)."""

    target_width: int | None = None
    target_height: int | None = None


class PostprocessedImage:
    def __init__(self, image):
        self.image = image
        self.info: dict[str, Any] = {}
        self.shared = PostprocessedImageSharedInfo()
        self.extra_images: list = []
        self.nametags: list[str] = []
        self.disable_processing = False
        self.caption: str | None = None

    def get_suffix(self, used_suffixes: set[str] | None = None) -> str:
        """A file-name suffix from the nametags (`-tag1-tag2`), made unique against `used_suffixes`."""
        used_suffixes = set() if used_suffixes is None else used_suffixes
        suffix = "-".join(self.nametags)
        if suffix:
            suffix = "-" + suffix
        if suffix not in used_suffixes:
            used_suffixes.add(suffix)
            return suffix
        for i in range(1, 100):
            candidate = f"{suffix}-{i}"
            if candidate not in used_suffixes:
                used_suffixes.add(candidate)
                return candidate
        return suffix

    def create_copy(self, new_image, *, nametags: list[str] | None = None, disable_processing: bool = False):
        pp = PostprocessedImage(new_image)
        pp.shared = self.shared
        pp.nametags = self.nametags.copy()
        pp.info = self.info.copy()
        pp.disable_processing = disable_processing
        if nametags is not None:
            pp.nametags += nametags
        return pp


class ScriptPostprocessing:
    filename: str | None = None
    controls: dict | None = None
    args_from: int | None = None
    args_to: int | None = None
    extra_only: bool | None = None
    """Only in the Extras tab (not in txt2img/img2img postprocessing)."""
    main_ui_only: bool | None = None
    """Only in txt2img/img2img postprocessing (not in the Extras tab)."""
    order = 1000
    """Scripts are ordered by this value in the postprocessing UI."""
    name: str | None = None
    group = None

    def ui(self) -> dict:
        """Create gradio components; returns name → component. Their values reach process() as keyword args."""
        return {}

    def process(self, pp: PostprocessedImage, **args) -> None:
        """Change pp.image (and pp.info, which ends up in the infotext)."""

    def process_firstpass(self, pp: PostprocessedImage, **args) -> None:
        """Called for every script before any process(); e.g. to set pp.shared.target_width/height."""

    def image_changed(self) -> None:
        """The input image changed (clear caches)."""


def wrap_call(func, filename, funcname, *args, default=None, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception:
        errors.report(f"Error calling: {filename}/{funcname}", exc_info=True)
    return default


def _call_script(script: ScriptPostprocessing, funcname: str, pp: PostprocessedImage, kwargs: dict) -> None:
    try:
        getattr(script, funcname)(pp, **kwargs)
    except Exception as e:
        where = script.filename or type(script).__name__
        errors.report(f"Error running postprocessing script {script.name!r}: {where}/{funcname}", exc_info=True)
        raise PostprocessingScriptError(
            f"Postprocessing script {script.name or type(script).__name__!r} ({os.path.basename(where)}) failed: "
            f"{type(e).__name__}: {e}. Turn it off in the Extras tab, or update or disable its extension.") from e


class ScriptPostprocessingRunner:
    def __init__(self) -> None:
        self.scripts: list[ScriptPostprocessing] | None = None
        self.ui_created = False

    def initialize_scripts(self, scripts_data: list) -> None:
        self.scripts = []
        for data in scripts_data:
            try:
                script = data.script_class()
            except Exception:
                errors.report(f"Error creating postprocessing script from {data.path}", exc_info=True)
                continue
            script.filename = data.path
            self.scripts.append(script)

    def create_script_ui(self, script: ScriptPostprocessing, inputs: list) -> None:
        script.args_from = len(inputs)
        script.args_to = len(inputs)
        script.controls = wrap_call(script.ui, script.filename, "ui") or {}
        for control in script.controls.values():
            control.custom_script_source = os.path.basename(script.filename or "")
        inputs += list(script.controls.values())
        script.args_to = len(inputs)

    def scripts_in_preferred_order(self) -> list[ScriptPostprocessing]:
        from modules import scripts, shared

        if self.scripts is None:
            self.initialize_scripts(scripts.postprocessing_scripts_data)
        order = list(shared.opts.postprocessing_operation_order or [])
        excluded = set(shared.opts.postprocessing_disable_in_extras or [])
        candidates = [s for s in self.scripts if s.name not in excluded and not s.main_ui_only]

        def score(item: tuple[int, ScriptPostprocessing]):
            index, script = item
            position = order.index(script.name) if script.name in order else len(self.scripts)
            return position, script.order, script.name or "", index

        return [s for _, s in sorted(enumerate(candidates), key=score)]

    def setup_ui(self) -> list:
        import gradio as gr

        inputs: list = []
        for script in self.scripts_in_preferred_order():
            with gr.Row() as group:
                self.create_script_ui(script, inputs)
            script.group = group
        self.ui_created = True
        return inputs

    def run(self, pp: PostprocessedImage, args: list) -> None:
        """process_firstpass for every script, then process for the image and every extra image they add."""
        from modules import shared

        selected = []
        for script in self.scripts_in_preferred_order():
            # A control without a value (a shorter argument list) gets None, as the API's controls do.
            start = script.args_from or 0
            kwargs = {name: args[start + i] if start + i < len(args) else None
                      for i, name in enumerate(script.controls or {})}
            selected.append((script, kwargs))
        for script, kwargs in selected:
            _call_script(script, "process_firstpass", pp, kwargs)
        all_images = [pp]
        for script, kwargs in selected:
            if shared.state.skipped:
                break
            shared.state.job = script.name or ""
            for single in all_images.copy():
                if not single.disable_processing:
                    _call_script(script, "process", single, kwargs)
                for extra in single.extra_images:
                    all_images.append(extra if isinstance(extra, PostprocessedImage) else single.create_copy(extra))
                single.extra_images.clear()
        pp.extra_images = all_images[1:]

    def create_args_for_run(self, scripts_args: dict[str, dict]) -> list:
        """Arguments for run() from `{script name: {control name: value}}` (the API's form); controls not given
        are None. Builds the scripts' UI once, off-screen, when no tab has (needs gradio)."""
        if not self.scripts_in_preferred_order():
            return []
        if not self.ui_created:
            import gradio as gr

            from modules import gradio_compat

            gradio_compat.install()  # extensions' ui() may use Gradio 3 arguments
            with gr.Blocks(analytics_enabled=False):
                self.setup_ui()
        ordered = self.scripts_in_preferred_order()
        args: list = [None] * max([0] + [s.args_to or 0 for s in ordered])
        for script in ordered:
            given = scripts_args.get(script.name or "")
            if given is not None:
                for i, name in enumerate(script.controls or {}):
                    args[script.args_from + i] = given.get(name)
        return args

    def image_changed(self) -> None:
        for script in self.scripts_in_preferred_order():
            script.image_changed()
