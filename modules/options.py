"""Settings: defaults, validation and atomic persistence to config.json (A1111's modules.options surface)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modules.errors import UserError
from modules.fileio import atomic_write_text

log = logging.getLogger(__name__)


class OptionInfo:
    """One setting: default value, label, UI component hints, and how it shows in infotexts."""

    def __init__(
        self,
        default: Any = None,
        label: str = "",
        component: Any = None,
        component_args: Any = None,
        onchange: Callable[[], None] | None = None,
        section: tuple | None = None,
        refresh: Callable[[], None] | None = None,
        comment_before: str = "",
        comment_after: str = "",
        infotext: str | None = None,
        restrict_api: bool = False,
        category_id: str | None = None,
    ):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.category_id = category_id
        self.refresh = refresh
        self.do_not_save = False
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.reload_ui = False
        self.needs_restart_flag = False

    # Chainable decorations used by A1111 extensions.
    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label: str, js_func: str) -> OptionInfo:
        self.comment_before += f"[<a onclick='{js_func}(); return false'>{label}</a>]"
        return self

    def info(self, info: str) -> OptionInfo:
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html: str) -> OptionInfo:
        self.comment_after += html
        return self

    def needs_restart(self) -> OptionInfo:
        self.comment_after += " <span class='info'>(requires restart)</span>"
        self.needs_restart_flag = True
        return self

    def needs_reload_ui(self) -> OptionInfo:
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        self.reload_ui = True
        return self


class OptionHTML(OptionInfo):
    """A block of HTML text shown among the settings; it stores no value."""

    def __init__(self, text: str):
        super().__init__(str(text).strip(), label="", component=None)
        self.do_not_save = True


def options_section(section_identifier: tuple, options_dict: dict[str, OptionInfo]) -> dict[str, OptionInfo]:
    """Attach a section (id, label[, category]) to every option of the dict."""
    for v in options_dict.values():
        if len(section_identifier) == 2:
            v.section = section_identifier
        elif len(section_identifier) == 3:
            v.section = section_identifier[0:2]
            v.category_id = section_identifier[2]
    return options_dict


@dataclass
class OptionsCategory:
    id: str
    label: str


class OptionsCategories:
    def __init__(self) -> None:
        self.mapping: dict[str, OptionsCategory] = {}

    def register_category(self, category_id: str, label: str) -> str:
        if category_id not in self.mapping:
            self.mapping[category_id] = OptionsCategory(category_id, label)
        return category_id


categories = OptionsCategories()

class Options:
    """Attribute access to settings; `data` holds values, `data_labels` the OptionInfo of each key."""

    typemap = {int: float}

    def __init__(self, data_labels: dict[str, OptionInfo], restricted_opts: set[str] | None = None):
        super().__setattr__("data_labels", data_labels)
        super().__setattr__("data", {k: v.default for k, v in data_labels.items() if not v.do_not_save})
        super().__setattr__("restricted_opts", restricted_opts or set())
        super().__setattr__("_lock", threading.RLock())
        super().__setattr__("frozen_keys", set())

    def __setattr__(self, key: str, value: Any) -> None:
        if key in ("data", "data_labels", "restricted_opts", "frozen_keys"):
            return super().__setattr__(key, value)
        if key in self.frozen_keys:
            raise UserError(f"Setting '{key}' is frozen by a command-line flag.")
        if key in self.data or key in self.data_labels:
            self.data[key] = value
            return
        super().__setattr__(key, value)

    def __getattr__(self, item: str) -> Any:
        data = self.__dict__.get("data", {})
        if item in data:
            return data[item]
        labels = self.__dict__.get("data_labels", {})
        if item in labels:
            return labels[item].default
        raise AttributeError(f"'Options' object has no attribute '{item}'")

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        """Set a value; returns True if it changed. Runs the option's onchange callback (reverting on error)."""
        oldval = self.data.get(key, None)
        if oldval == value:
            return False
        info = self.data_labels.get(key)
        if info is not None and info.do_not_save:
            return False
        if is_api and (key in self.restricted_opts or (info is not None and info.restrict_api)):
            return False
        if key in self.frozen_keys:
            raise UserError(f"Setting '{key}' is frozen by a command-line flag.")
        with self._lock:
            self.data[key] = value
            if run_callbacks and info is not None and info.onchange is not None:
                try:
                    info.onchange()
                except Exception:
                    self.data[key] = oldval
                    raise
        return True

    def get_default(self, key: str) -> Any:
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def save(self, filename: str) -> None:
        """Write config.json atomically: a crash leaves the old or the new file, never a truncated one."""
        with self._lock:
            text = json.dumps(self.data, indent=4, ensure_ascii=False)
        atomic_write_text(filename, text)

    def same_type(self, x: Any, y: Any) -> bool:
        if x is None or y is None:
            return True
        return self.typemap.get(type(x), type(x)) == self.typemap.get(type(y), type(y))

    def load(self, filename: str) -> None:
        """Read config.json; a corrupt file is moved aside (tmp/config.json) and defaults are used."""
        if not os.path.isfile(filename):
            return
        try:
            with open(filename, encoding="utf-8") as f:
                loaded = json.load(f)
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            backup_dir = os.path.join(os.path.dirname(os.path.abspath(filename)), "tmp")
            os.makedirs(backup_dir, exist_ok=True)
            backup = os.path.join(backup_dir, os.path.basename(filename))
            shutil.copyfile(filename, backup)
            log.error("Could not read settings file %s (%s); moved a copy to %s and using defaults.", filename, e, backup)
            return

        # Migrations of old keys, as A1111 does.
        if "sd_vae_as_default" in loaded and "sd_vae_overrides_per_model_preferences" not in loaded:
            loaded["sd_vae_overrides_per_model_preferences"] = loaded["sd_vae_as_default"]
        if isinstance(loaded.get("quicksettings"), str) and "quicksettings_list" not in loaded:
            loaded["quicksettings_list"] = [s.strip() for s in loaded["quicksettings"].split(",") if s.strip()]
        if isinstance(loaded.get("ui_reorder"), str) and "ui_reorder_list" not in loaded:
            loaded["ui_reorder_list"] = [s.strip() for s in loaded["ui_reorder"].split(",") if s.strip()]

        bad = []
        for key, value in loaded.items():
            info = self.data_labels.get(key)
            if info is not None and not self.same_type(info.default, value):
                bad.append(key)
                continue
            self.data[key] = value
        for key in bad:
            log.warning("Bad setting value in %s: %s: %r; using the default %r", filename, key, loaded[key],
                        self.data_labels[key].default)

    def freeze_sections(self, sections: str | None) -> None:
        """--freeze-settings-in-sections: every setting of the named sections (comma-separated ids) is frozen."""
        names = {s.strip() for s in (sections or "").split(",") if s.strip()}
        if names:
            self.frozen_keys.update(k for k, info in self.data_labels.items() if info.section and info.section[0] in names)

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        self.data_labels[key].onchange = func
        if call:
            func()

    def dumpjson(self) -> str:
        d = {k: self.data.get(k, v.default) for k, v in self.data_labels.items()}
        d["_comments_before"] = {k: v.comment_before for k, v in self.data_labels.items() if v.comment_before}
        d["_comments_after"] = {k: v.comment_after for k, v in self.data_labels.items() if v.comment_after}
        return json.dumps(d, default=str)

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default

    def reorder(self) -> None:
        """Sort settings by category, then section, keeping the order inside a section."""
        category_ids = {}
        section_categories = {}
        for info in self.data_labels.values():
            if info.section and info.category_id:
                section_categories[info.section] = info.category_id
        for info in self.data_labels.values():
            category_ids[id(info)] = section_categories.get(info.section, info.category_id) or ""
        order = {c: i for i, c in enumerate(categories.mapping)}
        items = sorted(
            self.data_labels.items(),
            key=lambda kv: (order.get(category_ids[id(kv[1])], len(order)),
                            *(str(x or "") for x in (kv[1].section or ("", ""))[1::-1])),
        )
        super().__setattr__("data_labels", dict(items))

    def cast_value(self, key: str, value: Any) -> Any:
        """Convert a value (e.g. a string from an infotext) to the type of the setting's default."""
        if value is None:
            return None
        default = self.data_labels[key].default if key in self.data_labels else None
        if default is None:
            default = getattr(self, key, None)
        if default is None:
            return None
        expected = type(default)
        if expected is bool and value == "False":
            return False
        if expected is bool:
            return bool(value)
        if expected is list and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return expected(value)


def current_opts() -> Options:
    """The application's settings, for surface functions that extensions call without an `opts` argument."""
    from modules import shared

    return shared.opts
