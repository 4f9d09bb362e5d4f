"""Gradio 3 compatibility for extensions written against A1111's Gradio 3.41, and the component callbacks.

This is the one module that adapts gradio's classes, and it does so by wrapping, once, in `install()`:

* component construction (the metaclass's `__call__`): Gradio 3 keyword arguments are translated
  (`source=` → `sources=[...]`, Gallery `grid=` → `columns=`, File `type="file"` → `"filepath"`, `tooltip=` kept
  as an attribute), removed ones (`tool=`, `shape=`, `brush_radius=`, ...) and any other unknown keyword are
  dropped with one warning per class and name; A1111's `before_component` / `after_component` callbacks fire
  around every component and layout block created while building the UI, and each gets A1111's
  `gradio-<type>` CSS class;
* event listeners (`.click`, `.change`, ..., `.then`, `Blocks.load`): `_js=` → `js=`, `api_name=False` →
  private, `show_api=False` → undocumented, removed keywords (`every=`, `status_tracker=`) dropped with a warning;
* `Component.update(...)` class methods return `gr.update(...)` dicts; `.style(...)` is accepted and does nothing;
* names: `gr.Box` → `gr.Group`, `gr.Variable` → `gr.State`, `gr.inputs.*` / `gr.outputs.*` (with `default=` →
  `value=`), `gr.components.IOComponent` → `Component`;
* component subclasses whose `__init__` takes `**kwargs` (A1111's ToolButton and many extensions' own) are
  serialised with their Gradio base class's properties, so elem_id, label and visibility reach the page;
* gradio's developer hook that writes `.pyi` files next to every component subclass is switched off (it would
  write into extension folders and ours).

What cannot be shimmed is listed in docs/extensions.md.
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

_installed = False
_warned: set[tuple[str, str]] = set()
_signature_cache: dict[type, tuple[frozenset[str], bool]] = {}

# Keywords Gradio 3.41 components took that Gradio 6 removed without a replacement.
_REMOVED_COMPONENT_KWARGS = {"tool", "shape", "brush_radius", "brush_color", "mask_opacity", "mirror_webcam",
                             "max_rows", "overflow_row_behaviour", "show_edit_button", "show_share_button",
                             "show_download_button", "show_copy_button", "allow_flagging", "color_map"}
_REMOVED_EVENT_KWARGS = {"every", "status_tracker"}


def _warn_once(owner: str, name: str, message: str) -> None:
    if (owner, name) not in _warned:
        _warned.add((owner, name))
        log.warning(message)


def _init_signatures(cls: type) -> Iterator[tuple[type, list[inspect.Parameter]]]:
    """(class, its own __init__'s parameters) along the MRO, for the classes that define __init__; ends at an
    __init__ without a readable signature."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            yield klass, list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return


def _takes_var_keyword(params: list[inspect.Parameter]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _accepted_kwargs(cls: type) -> tuple[frozenset[str], bool]:
    """Keyword names cls() accepts and whether it takes any: a subclass's `__init__(*args, **kwargs)` passes them
    on, so the MRO is followed to the first `__init__` without **kwargs."""
    cached = _signature_cache.get(cls)
    if cached is not None:
        return cached
    names: set[str] = set()
    cached = (frozenset(), True)
    for _klass, params in _init_signatures(cls):
        names |= {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
        if not _takes_var_keyword(params):
            cached = (frozenset(names), False)
            break
    _signature_cache[cls] = cached
    return cached


def translate_component_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Gradio 3 constructor keywords → Gradio 6 ones for `cls`; unknown ones dropped with a warning."""
    names, var_kw = _accepted_kwargs(cls)
    kwargs = dict(kwargs)
    if "source" in kwargs and "sources" in names and "source" not in names:
        source = kwargs.pop("source")
        if source == "canvas":
            _warn_once(cls.__name__, "source", f"{cls.__name__}(source='canvas'): sketching needs gr.ImageEditor; "
                                               "showing an upload field instead")
            source = "upload"
        kwargs["sources"] = [source] if isinstance(source, str) else source
    if "grid" in kwargs and "columns" in names and "grid" not in names:
        grid = kwargs.pop("grid")
        kwargs["columns"] = grid[0] if isinstance(grid, (list, tuple)) and grid else grid
    if kwargs.get("type") == "file" and "type" in names and cls.__name__ in ("File", "UploadButton"):
        kwargs["type"] = "filepath"
    if var_kw:
        return kwargs
    for key in [k for k in kwargs if k not in names]:
        value = kwargs.pop(key)
        if key in ("tooltip", "_js"):
            continue
        why = "removed in Gradio 4" if key in _REMOVED_COMPONENT_KWARGS else "unknown to Gradio 6"
        _warn_once(cls.__name__, key, f"gr.{cls.__name__}: ignoring keyword '{key}={value!r}' ({why})")
    return kwargs


def translate_event_kwargs(event: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if "_js" in kwargs:
        js = kwargs.pop("_js")
        kwargs.setdefault("js", js)
    if kwargs.get("api_name") is False:
        kwargs["api_name"] = None
        kwargs.setdefault("api_visibility", "private")
    if "show_api" in kwargs:
        if kwargs.pop("show_api") is False:
            kwargs.setdefault("api_visibility", "undocumented")
    for key in _REMOVED_EVENT_KWARGS & kwargs.keys():
        kwargs.pop(key)
        _warn_once(event, key, f".{event}(): ignoring keyword '{key}' (removed in Gradio 4/5)")
    return kwargs


def _component_callbacks():
    """(before, after): A1111's component callbacks, for the current tab's scripts and for script_callbacks."""
    from modules import script_callbacks, scripts

    def before(component, kwargs):
        if scripts.scripts_current is not None:
            scripts.scripts_current.before_component(component, **kwargs)
        script_callbacks.before_component_callback(component, **kwargs)

    def after(component, kwargs):
        script_callbacks.after_component_callback(component, **kwargs)
        if scripts.scripts_current is not None:
            scripts.scripts_current.after_component(component, **kwargs)

    return before, after


def _add_css_class(component) -> None:
    """A1111 gives every component a `gradio-<type>` class (extension CSS and JS select on it)."""
    try:
        name = component.get_block_name()
    except Exception:  # some third-party components cannot name themselves before they are configured
        return
    classes = component.elem_classes
    classes = [classes] if isinstance(classes, str) else list(classes or [])
    extra = [f"gradio-{name}"]
    if getattr(component, "multiselect", False):
        extra.append("multiselect")
    component.elem_classes = classes + [c for c in extra if c not in classes]


def _positional_to_keywords(cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Gradio's __init__ wrapper drops positional arguments a subclass takes as `*args` (A1111's
    `ToolButton("🔄")`): name them after the base class's parameters instead."""
    init = next((k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__), None)
    try:
        takes_var_args = init is not None and any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(init).parameters.values())
    except (TypeError, ValueError):
        return args, kwargs
    if not takes_var_args:
        return args, kwargs
    base = inspect.signature(_config_class(cls).__init__).parameters.values()
    names = [p.name for p in base if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "self"]
    named = dict(zip(names, args, strict=False))
    return args[len(named):], {**named, **kwargs}


def _make_metaclass_call(original_call):
    from gradio.context import LocalContext

    before, after = _component_callbacks()

    def __call__(cls, *args, **kwargs):
        tooltip = kwargs.get("tooltip")
        if args:
            args, kwargs = _positional_to_keywords(cls, args, kwargs)
        kwargs = translate_component_kwargs(cls, kwargs)
        if LocalContext.in_event_listener.get(False):
            # A component returned from an event handler is an update, not a new part of the page.
            return original_call(cls, *args, **kwargs)
        component = cls.__new__(cls)
        before(component, kwargs)
        component.__init__(*args, **kwargs)
        if tooltip is not None and not hasattr(component, "webui_tooltip"):
            component.webui_tooltip = tooltip
        _add_css_class(component)
        after(component, kwargs)
        return component

    return __call__


def _wrap_listener(name: str, listener):
    if getattr(listener, "_sd_webui_compat", False):
        return listener

    @functools.wraps(listener)
    def wrapped(*args, **kwargs):
        return listener(*args, **translate_event_kwargs(name, kwargs))

    wrapped._sd_webui_compat = True
    return wrapped


def _all_subclasses(cls: type) -> list[type]:
    res, stack = [], [cls]
    while stack:
        current = stack.pop()
        for sub in current.__subclasses__():
            if sub not in res:
                res.append(sub)
                stack.append(sub)
    return res


def _patch_events(gr) -> None:
    from gradio.blocks import Block
    from gradio.events import Dependency

    for cls in [Block, *_all_subclasses(Block)]:
        for event in getattr(cls, "EVENTS", None) or []:
            event_name = str(getattr(event, "event_name", event))
            listener = cls.__dict__.get(event_name)
            if callable(listener):
                setattr(cls, event_name, _wrap_listener(event_name, listener))
    gr.Blocks.load = _wrap_listener("load", gr.Blocks.load)

    original_init = Dependency.__init__

    @functools.wraps(original_init)
    def dependency_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        for name in ("then", "success", "failure"):
            setattr(self, name, _wrap_listener(name, getattr(self, name)))

    Dependency.__init__ = dependency_init


_config_class_cache: dict[type, type] = {}


def _config_class(cls: type) -> type:
    """The class whose __init__ signature lists the component's properties.

    Gradio serialises a component from its own class's __init__ parameters; a subclass written the Gradio 3 way,
    `__init__(self, *args, **kwargs)`, would lose elem_id, label, visible... — use the nearest base whose
    __init__ names its parameters."""
    found = _config_class_cache.get(cls)
    if found is None:
        found = cls
        for klass, params in _init_signatures(cls):
            if klass.__module__.split(".")[0] == "gradio" or not _takes_var_keyword(params):
                found = klass  # gradio's own classes serialise themselves correctly (gr.HTML takes **props)
                break
        _config_class_cache[cls] = found
    return found


def _patch_get_config(block_cls) -> None:
    original = block_cls.get_config

    @functools.wraps(original)
    def get_config(self, cls=None):
        return original(self, cls if cls is not None else _config_class(type(self)))

    block_cls.get_config = get_config


def _style(self, *args, **kwargs):
    """Gradio 3's `.style(...)`: styling moved into constructor arguments; accepted and ignored."""
    return self


def _make_update(gr):
    def update(*args, **kwargs):
        if args:
            kwargs.setdefault("value", args[0])
        return gr.update(**kwargs)

    return staticmethod(update)


def _legacy_namespace(gr, name: str, members: list[str]) -> types.SimpleNamespace:
    """gr.inputs / gr.outputs: Gradio 2/3 factories taking `default=` for the value."""

    def factory(component_name: str):
        component = getattr(gr, component_name)

        def create(*args, **kwargs):
            if "default" in kwargs:
                kwargs.setdefault("value", kwargs.pop("default"))
            kwargs.pop("optional", None)
            return component(*args, **kwargs)

        create.__name__ = component_name
        return create

    return types.SimpleNamespace(**{m: factory(m) for m in members if hasattr(gr, m)}, __name__=f"gradio.{name}")


def install() -> None:
    """Apply the shims (idempotent). Call before any UI or extension code creates components."""
    global _installed
    if _installed:
        return
    import gradio as gr
    import gradio.component_meta as component_meta
    from gradio.blocks import Block

    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    component_meta.ComponentMeta.__call__ = _make_metaclass_call(type.__call__)
    _patch_events(gr)

    _patch_get_config(Block)
    if "update" not in Block.__dict__:
        Block.update = _make_update(gr)  # classes with their own update (gr.Row) keep it
    Block.style = _style

    if not hasattr(gr, "Box"):
        gr.Box = gr.Group
    if not hasattr(gr, "Variable"):
        gr.Variable = gr.State
    if not hasattr(gr.components, "IOComponent"):
        gr.components.IOComponent = gr.components.Component
    if not hasattr(gr, "inputs"):
        gr.inputs = _legacy_namespace(gr, "inputs", ["Textbox", "Number", "Slider", "Checkbox", "CheckboxGroup",
                                                     "Radio", "Dropdown", "Image", "Video", "Audio", "File",
                                                     "Dataframe"])
    if not hasattr(gr, "outputs"):
        gr.outputs = _legacy_namespace(gr, "outputs", ["Textbox", "Image", "Video", "Audio", "File", "Dataframe",
                                                       "Label", "HTML", "HighlightedText", "JSON", "Gallery"])
    _installed = True
    log.debug("Gradio 3 compatibility shims installed")


def installed() -> bool:
    return _installed
