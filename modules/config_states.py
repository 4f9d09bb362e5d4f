"""Backups of which extensions are installed and enabled, at which commit (A1111's config_states/*.json).

A saved state records the web UI's and every extension's remote, branch, commit and date, and whether each
extension is enabled. Restoring sets the enabled/disabled list and resets each extension (that is a git
repository) to its recorded commit. The web UI itself is never reset from here (A1111 does `git reset --hard`
on its own folder; use git for that), so restoring "webui" only reports the recorded version.

File names come from a sanitised name (CVE-2024-31462: A1111 built the path from the raw UI string).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import time

from modules import extensions, launch_utils, paths_internal
from modules.errors import NotFoundError, UserError
from modules.fileio import atomic_write_text

log = logging.getLogger(__name__)

config_states_dir = paths_internal.config_states_dir
MAX_NAME = 64


def sanitize_name(name: str | None) -> str:
    """Letters, digits, spaces, `_`, `-`, `.` and parentheses only (no separators, no leading dots), at most 64
    characters."""
    cleaned = re.sub(r"[^\w .()-]", "_", (name or "").strip(), flags=re.ASCII)
    cleaned = cleaned.lstrip(".").strip()[:MAX_NAME].strip()
    return cleaned or "Config"


def list_config_states() -> dict[str, str]:
    """`"<name>: <created>"` → file path, newest first; unreadable files are skipped with a warning."""
    if not os.path.isdir(config_states_dir):
        return {}
    states = []
    for filename in os.listdir(config_states_dir):
        if not filename.endswith(".json"):
            continue
        path = os.path.join(config_states_dir, filename)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            created = float(data["created_at"])
            name = str(data.get("name", "Config"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("Skipping config state %s: %s", filename, e)
            continue
        states.append((created, name, path))
    states.sort(reverse=True)
    return {f"{name}: {datetime.datetime.fromtimestamp(created).strftime('%Y-%m-%d %H:%M:%S')}": path
            for created, name, path in states}


def get_webui_config() -> dict:
    root = paths_internal.script_path
    info = {"remote": None, "commit_hash": launch_utils.commit_hash(), "commit_date": None, "branch": None}
    if os.path.exists(os.path.join(root, ".git")):
        for key, args in (("remote", ("config", "--get", "remote.origin.url")),
                          ("branch", ("rev-parse", "--abbrev-ref", "HEAD")),
                          ("commit_date", ("log", "-1", "--format=%ct"))):
            try:
                value = extensions.run_git(root, *args).strip()
                info[key] = int(value) if key == "commit_date" and value.isdigit() else value or None
            except extensions.GitError:
                pass
    return info


def get_extension_config() -> dict:
    res = {}
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        res[ext.name] = {"name": ext.name, "path": ext.path, "enabled": ext.enabled, "is_builtin": ext.is_builtin,
                         "remote": ext.remote, "commit_hash": ext.commit_hash, "commit_date": ext.commit_date,
                         "branch": ext.branch, "have_info_from_repo": ext.have_info_from_repo}
    return res


def get_config() -> dict:
    return {"created_at": time.time(), "webui": get_webui_config(), "extensions": get_extension_config()}


def save_config_state(name: str | None) -> str:
    """Write the current state as config_states/<timestamp>_<name>.json; returns the path."""
    state = get_config()
    name = sanitize_name(name)
    state["name"] = name
    timestamp = datetime.datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
    path = os.path.join(config_states_dir, f"{timestamp}_{name}.json")
    real_dir = os.path.realpath(config_states_dir)
    if os.path.dirname(os.path.realpath(path)) != real_dir:
        raise UserError(f"Invalid config state name: {name!r}")
    atomic_write_text(path, json.dumps(state, indent=4))
    log.info("Saved config state to %s", path)
    return path


def load_config_state(key: str) -> dict:
    """A saved state by its listing key (never by a path typed by a user)."""
    path = list_config_states().get(key)
    if path is None:
        raise NotFoundError(f"Config state not found: {key}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def restore_extension_config(config: dict) -> list[str]:
    """Enable/disable as recorded and reset each recorded git extension to its commit; returns messages."""
    from modules import shared

    recorded = config.get("extensions", {})
    messages = []
    disabled = []
    for ext in extensions.extensions:
        entry = recorded.get(ext.name)
        if entry is None:
            disabled.append(ext.name)
            messages.append(f"{ext.name}: not in the saved state, disabled")
            continue
        if not entry.get("enabled", True):
            disabled.append(ext.name)
        if ext.is_builtin or not ext.is_git_repo or not entry.get("commit_hash"):
            continue
        ext.read_info_from_repo()
        if entry["commit_hash"] == ext.commit_hash:
            continue
        try:
            ext.fetch_and_reset_hard(entry["commit_hash"])
            messages.append(f"{ext.name}: reset to {entry['commit_hash'][:8]}")
        except extensions.GitError as e:
            messages.append(f"{ext.name}: {e}")
    for name in recorded:
        if name not in extensions.loaded_extensions and name.lower() not in extensions.loaded_extensions:
            messages.append(f"{name}: in the saved state but not installed; install it from {recorded[name].get('remote')}")
    shared.opts.disabled_extensions = disabled
    shared.opts.save(shared.config_filename)
    return messages


def restore_webui_config(config: dict) -> list[str]:
    recorded = config.get("webui", {})
    current = get_webui_config()
    if recorded.get("commit_hash") and recorded.get("commit_hash") != current.get("commit_hash"):
        return [f"The web UI was at {recorded['commit_hash'][:8]} (now {str(current.get('commit_hash'))[:8]}); "
                f"restore it with git: git checkout {recorded['commit_hash']}"]
    return []
