"""Scripts: A1111's `modules.scripts` — the Script base class, loading scripts/*.py of the repository and of the
active extensions, and the runner that calls their hooks at A1111's points of `process_images()`.

A script file may define any number of `Script` (and `scripts_postprocessing.ScriptPostprocessing`) subclasses; each
tab (txt2img, img2img) gets its own instances. Always-on scripts (`show()` returns `AlwaysVisible`) take part in
every generation through their hooks; selectable ones appear in the Script dropdown and replace processing with
their `run()`. The values of all scripts' UI controls form one argument list: `p.script_args[0]` is the index of
the selected script (0 = none) and each script reads its slice `[args_from:args_to]`.

Gradio is imported only where a UI is built (`setup_ui*`), so processing can use the runner without it.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from modules import errors, extensions, paths_internal, script_callbacks, script_loading, scripts_postprocessing
from modules.extensions import ScriptFile, topological_sort  # noqa: F401  (A1111 names)

log = logging.getLogger(__name__)

AlwaysVisible = object()
"""Returned by `Script.show()` for scripts whose UI is always shown and whose hooks always run."""


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.is_final_blend = denoiser is None
        self.sigma = sigma


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostProcessMaskOverlayArgs:
    def __init__(self, index, mask_for_overlay, overlay_image):
        self.index = index
        self.mask_for_overlay = mask_for_overlay
        self.overlay_image = overlay_image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


@dataclasses.dataclass
class OnComponent:
    component: Any


@dataclasses.dataclass
class ScriptArg:
    """One UI control of a script, as /sdapi/v1/script-info describes it."""

    label: str | None = None
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list | None = None

    def dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ScriptInfo:
    name: str | None = None
    is_alwayson: bool | None = None
    is_img2img: bool | None = None
    args: list[ScriptArg] = dataclasses.field(default_factory=list)

    def dict(self) -> dict:
        return {"name": self.name, "is_alwayson": self.is_alwayson, "is_img2img": self.is_img2img,
                "args": [a.dict() for a in self.args]}


class Script:
    """Base class of A1111 scripts. Every method except `title()` is optional."""

    name: str | None = None
    """Internal name: the lower-cased title (set when the UI is built)."""
    section: str | None = None
    """UI section of an always-on script ("accordions", "seed", "inpaint", ...); None: with the scripts."""
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname: str | None = None
    group = None
    """The gr.Group holding the script's UI."""
    create_group = True
    """False: an always-on script's controls are not wrapped in a group."""
    infotext_fields: list | None = None
    """(component, infotext key or function of the parsed params) pairs used when pasting infotext."""
    paste_field_names: list | None = None
    api_info: ScriptInfo | None = None
    on_before_component_elem_id: list | None = None
    on_after_component_elem_id: list | None = None
    setup_for_ui_only = False
    """True: `setup()` runs only for UI requests, not for API ones."""
    controls: list | None = None
    sorting_priority = 0

    def title(self) -> str:
        raise NotImplementedError()

    def ui(self, is_img2img: bool):
        """Create gradio components; their values are passed to `run()` and the hooks as `*args`."""

    def show(self, is_img2img: bool):
        """False: hidden; True: selectable in the Script dropdown; `AlwaysVisible`: always shown and run."""
        return True

    def run(self, p, *args):
        """Selectable scripts: do all processing (usually through process_images) and return a Processed."""

    def setup(self, p, *args):
        """Called when the processing object gets its scripts, before anything else."""

    def before_process(self, p, *args):
        """Very early in process_images, before settings overrides are applied."""

    def process(self, p, *args):
        """After prompts and seeds are set up, before the first batch."""

    def before_process_batch(self, p, *args, **kwargs):
        """Before extra networks are parsed from the batch's prompts (kwargs: batch_number, prompts, seeds, subseeds)."""

    def after_extra_networks_activate(self, p, *args, **kwargs):
        """After extra networks are activated, before conditioning (kwargs add extra_network_data)."""

    def process_batch(self, p, *args, **kwargs):
        """Like process(), for every batch."""

    def process_before_every_sampling(self, p, *args, **kwargs):
        """Right before each sampler run (kwargs: x, noise, c, uc)."""

    def postprocess_batch(self, p, *args, **kwargs):
        """After a batch is decoded (kwargs: images — a tensor in [0, 1] — and batch_number)."""

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        """Like postprocess_batch, with the images as a list that may be changed (kwargs: batch_number)."""

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args):
        """Inpainting: when the original is blended with the inpainted latent (each step and at the end)."""

    def post_sample(self, p, ps: PostSampleArgs, *args):
        """After sampling, before the VAE decodes `ps.samples`."""

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        """For every image: replace `pp.image` to change it."""

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs, *args):
        """For every image, before the inpainting overlay is composited."""

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        """For every image, after the inpainting overlay is composited."""

    def postprocess(self, p, processed, *args):
        """After processing ends, with the Processed result."""

    def before_component(self, component, **kwargs):
        """Before any gradio component is created (kwargs are its constructor's keyword arguments)."""

    def after_component(self, component, **kwargs):
        """After any gradio component is created."""

    def on_before_component(self, callback: Callable, *, elem_id: str) -> None:
        """Call `callback(OnComponent(component))` before the component with this elem_id is created."""
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback: Callable, *, elem_id: str) -> None:
        """Call `callback(OnComponent(component))` after the component with this elem_id is created."""
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """`script_[txt2img_|img2img_]<title>_<item_id>`; the tab part only if the script shows on both tabs."""
        need_tabname = self.show(True) == self.show(False)
        tabname = f"{'img2img' if self.is_img2img else 'txt2img'}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tabname}{title}_{item_id}"

    def before_hr(self, p, *args):
        """Before the hires fix pass starts."""


class ScriptBuiltinUI(Script):
    """Built-in scripts whose controls keep A1111's plain ids (`txt2img_seed`, ...)."""

    setup_for_ui_only = True

    def elem_id(self, item_id: str) -> str:
        need_tabname = self.show(True) == self.show(False)
        tabname = f"{'img2img' if self.is_img2img else 'txt2img'}_" if need_tabname else ""
        return f"{tabname}{item_id}"


current_basedir = paths_internal.script_path


def basedir() -> str:
    """The folder of the script being loaded: the repository for scripts/, the extension's folder otherwise."""
    return current_basedir


ScriptClassData = collections.namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list[ScriptClassData] = []
postprocessing_scripts_data: list[ScriptClassData] = []


@dataclasses.dataclass
class ScriptLoadError:
    """A script file that could not be imported: shown in the Extensions tab and logged with its traceback."""

    extension: str
    filename: str
    traceback: str


load_errors: list[ScriptLoadError] = []


@dataclasses.dataclass
class ScriptWithDependencies:
    script_canonical_name: str
    file: ScriptFile
    requires: list[str]
    load_before: list[str]
    load_after: list[str]


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """Files of `<repo>/<scriptdirname>` then of every active extension, ordered by metadata.ini Before/After.

    Canonical names: `x.py` for the repository's files, `[builtin/]<extension>/x.py` for extensions'.
    """
    scripts: dict[str, ScriptWithDependencies] = {}
    active = extensions.active() if include_extensions else []
    loaded = {ext.canonical_name: ext for ext in active}
    by_extension: dict[str, list[ScriptWithDependencies]] = {ext.canonical_name: [] for ext in active}

    root = os.path.join(paths_internal.script_path, scriptdirname)
    if os.path.isdir(root):
        for filename in sorted(os.listdir(root)):
            path = os.path.join(root, filename)
            if os.path.isfile(path) and os.path.splitext(filename)[1].lower() == extension:
                scripts[filename] = ScriptWithDependencies(
                    filename, ScriptFile(paths_internal.script_path, filename, path), [], [], [])

    for ext in active:
        for file in ext.list_files(scriptdirname, extension):
            name = ("builtin/" if ext.is_builtin else "") + ext.canonical_name + "/" + file.filename
            relative = scriptdirname + "/" + file.filename
            meta = ext.metadata
            script = ScriptWithDependencies(
                name, file,
                requires=meta.get_script_requirements("Requires", relative, scriptdirname),
                load_before=meta.get_script_requirements("Before", relative, scriptdirname),
                load_after=meta.get_script_requirements("After", relative, scriptdirname),
            )
            scripts[name] = script
            by_extension[ext.canonical_name].append(script)

    for name, script in scripts.items():
        # "Before x" is "x after this": add this script to the load_after of x (a script or all of an extension's).
        for target in script.load_before:
            if target in scripts:
                scripts[target].load_after.append(name)
            for other in by_extension.get(target, []):
                other.load_after.append(name)
        # "After <extension>" means after each of that extension's scripts.
        for target in list(script.load_after):
            if target not in scripts and target in by_extension:
                script.load_after.remove(target)
                script.load_after += [other.script_canonical_name for other in by_extension[target]]

    dependencies = {}
    for name, script in scripts.items():
        for required in script.requires:
            if required not in scripts and required not in loaded:
                log.error('Script "%s" requires "%s" to be loaded, but it is not.', name, required)
        dependencies[name] = script.load_after
    return [scripts[name].file for name in topological_sort(dependencies)]


def list_files_with_name(filename: str) -> list[str]:
    """`<repo>/<filename>` and `<extension>/<filename>` for every active extension, where they exist."""
    dirs = [paths_internal.script_path] + [ext.path for ext in extensions.active()]
    return [os.path.join(d, filename) for d in dirs if os.path.isfile(os.path.join(d, filename))]


_BASE_CLASSES = (Script, ScriptBuiltinUI, scripts_postprocessing.ScriptPostprocessing)


def _register_scripts_from_module(module, scriptfile: ScriptFile) -> int:
    # As A1111: every Script subclass found in the module counts, also one imported from the extension's own
    # package (several extensions register their script that way); only the base classes are skipped.
    count = 0
    for obj in list(module.__dict__.values()):
        if not inspect.isclass(obj) or obj in _BASE_CLASSES:
            continue
        if issubclass(obj, Script):
            scripts_data.append(ScriptClassData(obj, scriptfile.path, scriptfile.basedir, module))
            count += 1
        elif issubclass(obj, scripts_postprocessing.ScriptPostprocessing):
            postprocessing_scripts_data.append(ScriptClassData(obj, scriptfile.path, scriptfile.basedir, module))
            count += 1
    return count


def load_scripts() -> None:
    """Import scripts/*.py of the repository and of every active extension; build fresh runners.

    Each extension's folder is first on sys.path while its files load, so `from scripts import x` finds its own
    scripts/x.py (A1111's namespace-package behaviour). A file that fails to import is reported with its
    extension's name and the traceback; the others still load. Load time per extension is logged.
    """
    global current_basedir, scripts_txt2img, scripts_img2img, scripts_postproc
    scripts_data.clear()
    postprocessing_scripts_data.clear()
    load_errors.clear()
    script_callbacks.clear_callbacks()

    timings: dict[str, float] = collections.defaultdict(float)
    for scriptfile in list_scripts("scripts", ".py"):
        ext = extensions.extension_paths.get(scriptfile.basedir)
        ext_name = ext.name if ext is not None else ""
        started = time.perf_counter()
        inserted = scriptfile.basedir != paths_internal.script_path
        if inserted:
            sys.path.insert(0, scriptfile.basedir)
        current_basedir = scriptfile.basedir
        try:
            module = script_loading.load_module(scriptfile.path)
            _register_scripts_from_module(module, scriptfile)
        except Exception:
            tb = traceback.format_exc()
            load_errors.append(ScriptLoadError(ext_name, scriptfile.path, tb))
            if ext is not None:
                ext.load_errors.append(tb)
            where = f"extension {ext_name}" if ext_name else "scripts"
            log.error("Error loading script %s of %s:\n%s", scriptfile.filename, where, tb)
        finally:
            # Remove only the folder we added: paths an extension appends while loading stay.
            if inserted and scriptfile.basedir in sys.path:
                sys.path.remove(scriptfile.basedir)
            current_basedir = paths_internal.script_path
            timings[ext_name] += time.perf_counter() - started

    for name, seconds in timings.items():
        ext = extensions.loaded_extensions.get(name.lower()) if name else None
        if ext is not None:
            ext.load_time = seconds
        log.info("Loaded scripts of %s in %.3f s", f"extension {name}" if name else "the repository", seconds)

    scripts_txt2img = ScriptRunner(is_img2img=False)
    scripts_img2img = ScriptRunner(is_img2img=True)
    scripts_postproc = scripts_postprocessing.ScriptPostprocessingRunner()
    scripts_postproc.initialize_scripts(postprocessing_scripts_data)


reload_scripts = load_scripts  # A1111 alias


def wrap_call(func: Callable, filename: str | None, funcname: str, *args, default=None, **kwargs):
    """Call a script's function; an exception is logged with the script's file and `default` returned."""
    try:
        return func(*args, **kwargs)
    except Exception:
        errors.report(f"Error calling: {filename}/{funcname}", exc_info=True)
    return default


class ScriptNotFoundError(errors.UserError):
    """An API request names a script that does not exist (A1111 answers 422)."""

    status_code = 422


# The order in which A1111's txt2img/img2img tabs lay out script sections; the argument list follows it, so a
# UI built elsewhere (or the API's headless layout) must call setup_ui_for_section in this order too.
UI_SECTIONS = ["prompt", "image", "inpaint", "sampler", "accordions", "checkboxes", "dimensions", "cfg",
               "denoising", "seed", "batch", "override_settings", "scripts"]


class ScriptRunner:
    """The scripts of one tab and the calls into their hooks."""

    def __init__(self, is_img2img: bool = False) -> None:
        self.scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.titles: list[str] = []
        self.title_map: dict[str, Script] = {}
        self.infotext_fields: list = []
        self.paste_field_names: list = []
        self.inputs: list = [None]
        self.is_img2img = is_img2img
        self.ui_created = False
        self.on_before_component_elem_id: dict[str, list] = {}
        self.on_after_component_elem_id: dict[str, list] = {}

    # -- set-up -------------------------------------------------------------------------------------------
    def initialize_scripts(self, is_img2img: bool) -> None:
        """Instantiate every loaded Script class for this tab and sort them into always-on and selectable."""
        self.scripts.clear()
        self.alwayson_scripts.clear()
        self.selectable_scripts.clear()
        self.is_img2img = is_img2img
        self.ui_created = False
        from modules import scripts_auto_postprocessing  # imports this module

        for data in scripts_data + scripts_auto_postprocessing.create_auto_preprocessing_script_data():
            try:
                script = data.script_class()
            except Exception:
                errors.report(f"Error creating script {data.script_class.__name__} from {data.path}", exc_info=True)
                continue
            script.filename = data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            visibility = wrap_call(script.show, script.filename, "show", is_img2img)
            if visibility is AlwaysVisible:
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
                script.alwayson = True
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        self.alwayson_scripts.sort(key=lambda s: s.sorting_priority)
        titles = [wrap_call(s.title, s.filename, "title") or s.filename for s in self.scripts]
        self.title_map = {t.lower(): s for t, s in zip(titles, self.scripts, strict=True)}
        self.titles = [wrap_call(s.title, s.filename, "title") or f"{s.filename} [error]"
                       for s in self.selectable_scripts]
        self.apply_on_before_component_callbacks()

    def apply_on_before_component_callbacks(self) -> None:
        for script in self.scripts:
            for elem_id, callback in script.on_before_component_elem_id or []:
                self.on_before_component_elem_id.setdefault(elem_id, []).append((callback, script))
            for elem_id, callback in script.on_after_component_elem_id or []:
                self.on_after_component_elem_id.setdefault(elem_id, []).append((callback, script))
            if script.on_before_component_elem_id:
                script.on_before_component_elem_id.clear()
            if script.on_after_component_elem_id:
                script.on_after_component_elem_id.clear()

    # -- UI (gradio imported here only) ---------------------------------------------------------------
    def create_script_ui(self, script: Script) -> None:
        script.args_from = len(self.inputs)
        script.args_to = len(self.inputs)
        try:
            self._create_script_ui_inner(script)
        except Exception:
            errors.report(f"Error creating UI for {script.name or script.filename}", exc_info=True)

    def _create_script_ui_inner(self, script: Script) -> None:
        controls = wrap_call(script.ui, script.filename, "ui", script.is_img2img)
        script.controls = controls
        if controls is None:
            return
        controls = list(controls)
        script.controls = controls
        script.name = (wrap_call(script.title, script.filename, "title", default=script.filename) or "").lower()
        api_args = []
        for control in controls:
            control.custom_script_source = os.path.basename(script.filename or "")
            arg = ScriptArg(label=getattr(control, "label", None) or "")
            for field in ("value", "minimum", "maximum", "step"):
                v = getattr(control, field, None)
                if v is not None and not callable(v):
                    setattr(arg, field, v)
            choices = getattr(control, "choices", None)
            if choices is not None:
                arg.choices = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
            api_args.append(arg)
        script.api_info = ScriptInfo(name=script.name, is_alwayson=script.alwayson, is_img2img=script.is_img2img,
                                     args=api_args)
        if script.infotext_fields is not None:
            self.infotext_fields += script.infotext_fields
        if script.paste_field_names is not None:
            self.paste_field_names += script.paste_field_names
        self.inputs += controls
        script.args_to = len(self.inputs)

    def setup_ui_for_section(self, section: str | None, scriptlist: list[Script] | None = None) -> None:
        import gradio as gr

        for script in self.alwayson_scripts if scriptlist is None else scriptlist:
            if script.alwayson and script.section != section:
                continue
            if script.create_group:
                with gr.Group(visible=script.alwayson) as group:
                    self.create_script_ui(script)
                script.group = group
            else:
                self.create_script_ui(script)

    def prepare_ui(self) -> None:
        self.inputs = [None]

    def setup_ui(self) -> list:
        """Always-on scripts without a section, the Script dropdown, then every selectable script (hidden)."""
        import gradio as gr

        self.setup_ui_for_section(None)
        dropdown = gr.Dropdown(label="Script", elem_id="script_list", choices=["None", *self.titles], value="None",
                               type="index")
        self.inputs[0] = dropdown
        self.setup_ui_for_section(None, self.selectable_scripts)

        def select_script(script_index):
            selected = self.selectable_scripts[script_index - 1] if script_index else None
            return [gr.update(visible=selected is s) for s in self.selectable_scripts]

        dropdown.change(fn=select_script, inputs=[dropdown], outputs=[s.group for s in self.selectable_scripts],
                        api_visibility="private")
        self.infotext_fields.append((dropdown, lambda params: gr.update(value=params.get("Script", "None"))))
        self.infotext_fields.extend(
            (s.group, lambda params, title=t: gr.update(visible=params.get("Script") == title))
            for s, t in zip(self.selectable_scripts, self.titles, strict=True)
        )
        self.apply_on_before_component_callbacks()
        self.ui_created = True
        return self.inputs

    def setup_ui_sections(self) -> list:
        """Every section in UI_SECTIONS order ("scripts": the dropdown and selectable scripts); returns the inputs.

        A tab that places sections in different spots must still create them in this order.
        """
        self.prepare_ui()
        for section in UI_SECTIONS:
            if section == "scripts":
                self.setup_ui()
            self.setup_ui_for_section(section)
        return self.inputs

    def setup_ui_headless(self) -> None:
        """Lay the controls out in a throwaway Blocks to learn each script's argument slice and defaults (the API
        without a UI)."""
        import gradio as gr

        from modules import gradio_compat

        gradio_compat.install()
        with gr.Blocks(analytics_enabled=False):
            self.setup_ui_sections()

    def ensure_ui(self) -> None:
        """Make sure script argument slices exist (the UI builds them; without one, lay them out headless)."""
        if not self.scripts and scripts_data:
            self.initialize_scripts(self.is_img2img)
        if self.scripts and not self.ui_created:
            self.setup_ui_headless()

    # -- running ------------------------------------------------------------------------------------------
    def run(self, p, *args):
        """Run the selected script (args[0] is its index + 1); None when no script is selected."""
        script_index = args[0] if args else 0
        if not script_index:
            return None
        script = self.selectable_scripts[script_index - 1]
        script_args = args[script.args_from:script.args_to]
        return script.run(p, *script_args)

    def _call_alwayson(self, hook: str, p, *before_args, **kwargs) -> None:
        """script.<hook>(p, *before_args, *script_args, **kwargs) for each always-on script; errors are reported."""
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, hook)(p, *before_args, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {hook}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui: bool = True) -> None:
        for script in self.alwayson_scripts:
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script.setup(p, *p.script_args[script.args_from:script.args_to])
            except Exception:
                errors.report(f"Error running setup: {script.filename}", exc_info=True)

    setup_scripts = setup_scrips  # A1111 spells it setup_scrips

    def before_process(self, p) -> None:
        self._call_alwayson("before_process", p)

    def process(self, p) -> None:
        self._call_alwayson("process", p)

    def before_process_batch(self, p, **kwargs) -> None:
        self._call_alwayson("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs) -> None:
        self._call_alwayson("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs) -> None:
        self._call_alwayson("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs) -> None:
        self._call_alwayson("process_before_every_sampling", p, **kwargs)

    def before_hr(self, p) -> None:
        self._call_alwayson("before_hr", p)

    def on_mask_blend(self, p, mba: MaskBlendArgs) -> None:
        self._call_alwayson("on_mask_blend", p, mba)

    def post_sample(self, p, ps: PostSampleArgs) -> None:
        self._call_alwayson("post_sample", p, ps)

    def postprocess_batch(self, p, images, **kwargs) -> None:
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                script.postprocess_batch(p, *script_args, images=images, **kwargs)
            except Exception:
                errors.report(f"Error running postprocess_batch: {script.filename}", exc_info=True)

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs) -> None:
        self._call_alwayson("postprocess_batch_list", p, pp, **kwargs)

    def postprocess_image(self, p, pp: PostprocessImageArgs) -> None:
        self._call_alwayson("postprocess_image", p, pp)

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs) -> None:
        self._call_alwayson("postprocess_maskoverlay", p, ppmo)

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs) -> None:
        self._call_alwayson("postprocess_image_after_composite", p, pp)

    def postprocess(self, p, processed) -> None:
        self._call_alwayson("postprocess", p, processed)

    # -- component callbacks (gradio_compat calls these for every component created) -----------------
    def before_component(self, component, **kwargs) -> None:
        for callback, script in self.on_before_component_elem_id.get(kwargs.get("elem_id"), []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_before_component: {script.filename}", exc_info=True)
        for script in self.scripts:
            try:
                script.before_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running before_component: {script.filename}", exc_info=True)

    def after_component(self, component, **kwargs) -> None:
        for callback, script in self.on_after_component_elem_id.get(getattr(component, "elem_id", None), []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_after_component: {script.filename}", exc_info=True)
        for script in self.scripts:
            try:
                script.after_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running after_component: {script.filename}", exc_info=True)

    def script(self, title: str) -> Script | None:
        return self.title_map.get(title.lower())

    def reload_sources(self, cache: dict) -> None:
        """Re-import every script file and replace the instances, keeping their argument slices."""
        for index, script in list(enumerate(self.scripts)):
            module = cache.get(script.filename)
            if module is None:
                module = script_loading.load_module(script.filename)
                cache[script.filename] = module
            for obj in module.__dict__.values():
                if inspect.isclass(obj) and issubclass(obj, Script) and obj.__name__ == type(script).__name__:
                    new = obj()
                    for attr in ("filename", "args_from", "args_to", "alwayson", "is_txt2img", "is_img2img",
                                 "tabname", "group", "controls", "name", "api_info"):
                        setattr(new, attr, getattr(script, attr))
                    self.scripts[index] = new
        self.alwayson_scripts = [s for s in self.scripts if s.alwayson]
        self.selectable_scripts = [s for s in self.scripts if not s.alwayson]

    def set_named_arg(self, args, script_type: str, arg_elem_id: str, value, fuzzy: bool = False):
        """Set the argument of the control whose elem_id matches, in a script found by class name."""
        script = next((x for x in self.scripts if type(x).__name__ == script_type), None)
        if script is None or not script.controls:
            return None
        for i, control in enumerate(script.controls):
            elem_id = getattr(control, "elem_id", None) or ""
            if (arg_elem_id in elem_id) if fuzzy else (elem_id == arg_elem_id):
                index = script.args_from + i
                if isinstance(args, list):
                    args[index] = value
                    return args
                if isinstance(args, tuple):
                    return args[:index] + (value,) + args[index + 1:]
                return None
        return None

    # -- API --------------------------------------------------------------------------------------------
    def default_script_args(self) -> list:
        """Every script's control defaults at its slice, index 0 = no selectable script."""
        size = max([1] + [s.args_to or 0 for s in self.scripts])
        args: list = [None] * size
        args[0] = 0
        for script in self.scripts:
            if script.controls and script.args_from is not None:
                values = [None if callable(getattr(c, "value", None)) else getattr(c, "value", None)
                          for c in script.controls]
                args[script.args_from:script.args_to] = values
        return args

    def find_selectable(self, script_name: str | None) -> tuple[Script | None, int]:
        if not script_name:
            return None, -1
        titles = [(wrap_call(s.title, s.filename, "title") or "").lower() for s in self.selectable_scripts]
        try:
            index = titles.index(script_name.lower())
        except ValueError:
            raise ScriptNotFoundError(f"Script '{script_name}' not found") from None
        return self.selectable_scripts[index], index

    def init_script_args(self, script_name: str | None = None, script_args: list | None = None,
                         alwayson_scripts: dict | None = None) -> list:
        """The full argument list for an API request (A1111's rules).

        Starts from the UI defaults; `script_args` fill the selected script's slice; `alwayson_scripts` is
        `{title: {"args": [...]}}` and overrides each named always-on script's first arguments.
        """
        args = self.default_script_args()
        selected, index = self.find_selectable(script_name)
        if selected is not None:
            given = list(script_args or [])
            args[selected.args_from:selected.args_to] = given
            args[0] = index + 1
        for name, payload in (alwayson_scripts or {}).items():
            script = self.title_map.get(name.lower())
            if script is None:
                raise ScriptNotFoundError(f"always on script {name} not found")
            if not script.alwayson:
                raise ScriptNotFoundError("Cannot have a selectable script in the always on scripts params")
            values = payload.get("args", []) if isinstance(payload, dict) else []
            for i in range(min(script.args_to - script.args_from, len(values))):
                args[script.args_from + i] = values[i]
        return args

    def run_for_api(self, p, script_name: str | None = None, script_args: list | None = None,
                    alwayson_scripts: dict | None = None):
        """Run an API request's processing object with its scripts; returns the Processed.

        A selected script's `run()` replaces processing (A1111: its args as a list); otherwise process_images runs
        with every always-on script's hooks (A1111: args as a tuple).
        """
        from modules import processing

        self.ensure_ui()
        args = self.init_script_args(script_name, script_args, alwayson_scripts)
        p.is_api = True
        selected, _ = self.find_selectable(script_name)
        p.scripts = self
        if selected is not None:
            p.script_args = args
            processed = self.run(p, *args)
            if processed is None:
                raise errors.UserError(f"Script '{script_name}' returned no result.")
            return processed
        p.script_args = tuple(args)
        return processing.process_images(p)


scripts_txt2img: ScriptRunner = ScriptRunner(is_img2img=False)
scripts_img2img: ScriptRunner = ScriptRunner(is_img2img=True)
scripts_postproc: scripts_postprocessing.ScriptPostprocessingRunner = scripts_postprocessing.ScriptPostprocessingRunner()
scripts_current: ScriptRunner | None = None
"""The runner whose tab is being built: its scripts' before/after_component hooks see that tab's components."""


def reload_script_body_only() -> None:
    cache: dict = {}
    scripts_txt2img.reload_sources(cache)
    scripts_img2img.reload_sources(cache)


def api_scripts_list() -> dict[str, list[str]]:
    """/sdapi/v1/scripts: the names of the scripts of each tab."""
    for runner in (scripts_txt2img, scripts_img2img):
        runner.ensure_ui()
    return {
        "txt2img": [s.name for s in scripts_txt2img.scripts if s.name is not None],
        "img2img": [s.name for s in scripts_img2img.scripts if s.name is not None],
    }


def api_script_info() -> list[dict]:
    """/sdapi/v1/script-info: name, is_alwayson, is_img2img and each control's label/value/range/choices."""
    res = []
    for runner in (scripts_txt2img, scripts_img2img):
        runner.ensure_ui()
        res += [s.api_info.dict() for s in runner.scripts if s.api_info is not None]
    return res
