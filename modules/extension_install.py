"""Installing, updating, enabling and disabling extensions, and reading the extension index (no UI here).

Every action that can run code (install, update, enable/disable, restore a backup) first calls `check_access()`:
with --listen, --share, --server-name or --ngrok it is refused unless --enable-insecure-extension-access is
given (A1111's rule). Git runs through `extensions.run_git` (subprocess, `--` before the URL, https only; file://
only in tests); the index is fetched only when the user asks, over https, with size and time limits.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request

from modules import config_states, extensions, launch_utils, paths_internal
from modules.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_INDEX_URL = "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"
INDEX_MAX_BYTES = 16 * 1024 * 1024
INDEX_TIMEOUT = 30
CONCURRENT_GIT_FETCH_LIMIT = 16


class AccessDeniedError(UserError):
    status_code = 403


def check_access() -> None:
    from modules import shared

    if getattr(shared.cmd_opts, "disable_extension_access", False):
        raise AccessDeniedError(
            "extension access disabled because of command line flags (--listen, --share, --server-name or "
            "--ngrok); add --enable-insecure-extension-access to allow installing and changing extensions")


def index_url() -> str:
    return os.environ.get("WEBUI_EXTENSIONS_INDEX", DEFAULT_INDEX_URL)


def normalize_git_url(url: str | None) -> str:
    """Compare remotes without a trailing `.git` or slash."""
    url = (url or "").strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def validate_git_url(url: str) -> str:
    """Only https URLs (file:// when SD_WEBUI_EXTENSIONS_ALLOW_FILE_URLS=1): no ssh, git://, ext:: or options."""
    url = (url or "").strip()
    if not url:
        raise UserError("No URL specified: enter the URL of the extension's git repository.")
    parsed = urllib.parse.urlsplit(url)
    allowed = {"https"} | ({"file"} if extensions.file_urls_allowed() else set())
    if parsed.scheme.lower() not in allowed or url.startswith("-") or any(c in url for c in "\r\n\t\0 "):
        raise UserError(f"Refusing to install from {url!r}: only https:// git URLs are accepted.")
    if parsed.scheme.lower() == "https" and not parsed.hostname:
        raise UserError(f"Refusing to install from {url!r}: the URL has no host.")
    return url


def sanitize_dirname(name: str) -> str:
    """A folder name made of letters, digits, `.`, `_` and `-`; never `.`-leading or a path."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", (name or "").strip())
    cleaned = re.sub(r"\.{2,}", "_", cleaned).strip("._-")
    if not cleaned:
        raise UserError(f"Invalid extension folder name: {name!r}")
    return cleaned[:100]


def get_extension_dirname_from_url(url: str) -> str:
    path = urllib.parse.urlsplit(url.strip()).path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return sanitize_dirname(name[:-4] if name.endswith(".git") else name)


def validate_branch(branch: str | None) -> str | None:
    branch = (branch or "").strip()
    if not branch:
        return None
    if branch.startswith("-") or not re.fullmatch(r"[\w./-]+", branch) or ".." in branch:
        raise UserError(f"Invalid branch name: {branch!r}")
    return branch


def install_extension_from_url(dirname: str | None, url: str, branch_name: str | None = None) -> str:
    """Clone `url` into extensions/<dirname>, run its install.py, rescan; returns a message for the user.

    Refuses an existing folder and a repository that is already installed (same URL without `.git`).
    """
    check_access()
    url = validate_git_url(url)
    branch = validate_branch(branch_name)
    dirname = sanitize_dirname(dirname) if dirname and dirname.strip() else get_extension_dirname_from_url(url)
    target_dir = os.path.join(extensions.extensions_dir, dirname)
    if os.path.lexists(target_dir) or any(d.lower() == dirname.lower() for d in _listdir(extensions.extensions_dir)):
        raise UserError(f"Extension directory already exists: {target_dir}")
    normalized = normalize_git_url(url)
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        if ext.remote and normalize_git_url(ext.remote) == normalized:
            raise UserError(f"Extension with this URL is already installed: {url} (as {ext.name})")

    tmpdir = os.path.join(paths_internal.data_path, "tmp", "extensions", dirname)
    shutil.rmtree(tmpdir, ignore_errors=True)
    os.makedirs(os.path.dirname(tmpdir), exist_ok=True)
    try:
        args = ["clone", "--filter=blob:none"] + (["--branch", branch] if branch else []) + ["--", url, tmpdir]
        extensions.run_git(None, *args, network=True)
        if os.path.exists(os.path.join(tmpdir, ".gitmodules")):
            extensions.run_git(tmpdir, "submodule", "update", "--init", "--recursive", network=True)
        os.makedirs(extensions.extensions_dir, exist_ok=True)
        shutil.move(tmpdir, target_dir)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    launch_utils.run_extension_installer(target_dir)
    extensions.list_extensions()
    log.info("Installed extension %s from %s", dirname, url)
    return f"Installed into {target_dir}. Use Installed tab to restart."


def _listdir(path: str) -> list[str]:
    return os.listdir(path) if os.path.isdir(path) else []


def check_updates(names: list[str] | None = None) -> list[str]:
    """Ask each (named) git extension's remote whether there are new commits; returns error messages."""
    check_access()
    targets = [e for e in extensions.extensions if not e.is_builtin and e.is_git_repo and (names is None or e.name in names)]
    problems = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENT_GIT_FETCH_LIMIT) as pool:
        for ext, future in [(e, pool.submit(e.check_updates)) for e in targets]:
            try:
                future.result()
            except Exception as e:
                problems.append(f"{ext.name}: {e}")
    return problems


def apply_changes(disabled: list[str], update: list[str], disable_all: str) -> list[str]:
    """Save the enabled state (disabled_extensions, disable_all_extensions), back up and update the chosen
    extensions; the caller restarts. Returns messages (update failures)."""
    from modules import shared

    check_access()
    names = {e.name for e in extensions.extensions}
    unknown = [n for n in list(disabled) + list(update) if n not in names]
    if unknown:
        raise UserError(f"Unknown extensions: {', '.join(unknown)}")
    if disable_all not in ("none", "extra", "all"):
        raise UserError(f"Invalid 'Disable all extensions' value: {disable_all!r} (none, extra or all)")
    messages = []
    if update:
        config_states.save_config_state("Backup (pre-update)")
    for ext in extensions.extensions:
        if ext.name not in update:
            continue
        try:
            ext.fetch_and_reset_hard()
            messages.append(f"Updated {ext.name}")
        except extensions.GitError as e:
            messages.append(f"Error updating {ext.name}: {e}")
    shared.opts.disabled_extensions = sorted(disabled)
    shared.opts.disable_all_extensions = disable_all
    shared.opts.save(shared.config_filename)
    for ext in extensions.extensions:
        ext.enabled = ext.name not in disabled
    return messages


def restore_config_state(key: str, what: str) -> list[str]:
    """Restore a saved state: "extensions", "webui" or "both"."""
    check_access()
    if what not in ("extensions", "webui", "both"):
        raise UserError(f"Invalid restore type: {what!r} (extensions, webui or both)")
    config = config_states.load_config_state(key)
    messages = []
    if what in ("extensions", "both"):
        messages += config_states.restore_extension_config(config)
    if what in ("webui", "both"):
        messages += config_states.restore_webui_config(config)
    return messages


def fetch_index(url: str) -> dict:
    """Download and parse an extension index (A1111's index.json format); https only, size/time limited."""
    url = (url or "").strip()
    parsed = urllib.parse.urlsplit(url)
    allowed = {"https"} | ({"file"} if extensions.file_urls_allowed() else set())
    if parsed.scheme.lower() not in allowed:
        raise UserError(f"Refusing to load the extension index from {url!r}: only https:// URLs are accepted.")
    request = urllib.request.Request(url, headers={"User-Agent": "sd-webui extension index"})
    try:
        with urllib.request.urlopen(request, timeout=INDEX_TIMEOUT) as response:  # noqa: S310 (scheme checked)
            final = urllib.parse.urlsplit(response.geturl()).scheme.lower()
            if final not in allowed:
                raise UserError(f"The extension index at {url} redirected to a non-https URL.")
            data = response.read(INDEX_MAX_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise UserError(f"Could not load the extension index from {url}: {e}") from e
    if len(data) > INDEX_MAX_BYTES:
        raise UserError(f"The extension index at {url} is larger than {INDEX_MAX_BYTES // (1024 * 1024)} MB.")
    return parse_index(data)


def parse_index(data: bytes | str) -> dict:
    """Validate an index: {"tags": {tag: description}, "extensions": [{name, url, description, tags, ...}]}."""
    try:
        index = json.loads(data)
    except ValueError as e:
        raise UserError(f"The extension index is not valid JSON: {e}") from e
    if not isinstance(index, dict) or not isinstance(index.get("extensions"), list):
        raise UserError("The extension index has no 'extensions' list.")
    tags = index.get("tags") if isinstance(index.get("tags"), dict) else {}
    entries = []
    for item in index["extensions"]:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item.get("name"):
            continue
        entries.append({
            "name": str(item["name"]),
            "url": item["url"],
            "description": str(item.get("description", "")),
            "tags": [str(t) for t in item.get("tags", []) if isinstance(t, str)],
            "added": str(item.get("added", "")),
            "created_at": str(item.get("created_at", "")),
            "commit_time": str(item.get("commit_time", "")),
            "stars": int(item["stars"]) if isinstance(item.get("stars"), int) else 0,
        })
    return {"tags": {str(k): str(v) for k, v in tags.items()}, "extensions": entries}


def installed_remotes() -> tuple[set[str], set[str]]:
    """(normalized remote URLs, folder names) of the installed extensions, for the index's "installed" tag."""
    remotes, dirs = set(), set()
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        dirs.add(ext.name)
        if ext.remote:
            remotes.add(normalize_git_url(ext.remote))
    return remotes, dirs


SORT_ORDERS = ["newest first", "oldest first", "a-z", "z-a", "internal order", "update time", "create time", "stars"]


def filter_index(index: dict, hide_tags: list[str], sort_order: str = "newest first", search: str = "",
                 filtering: str = "or") -> tuple[list[dict], int]:
    """The entries to show (with "installed" added to tags) and how many were hidden by the tag filter."""
    remotes, dirs = installed_remotes()
    hide = set(hide_tags or [])
    shown, hidden = [], 0
    for entry in index.get("extensions", []):
        tags = list(entry.get("tags", []))
        installed = normalize_git_url(entry["url"]) in remotes or get_dirname_safe(entry["url"]) in dirs
        if installed:
            tags.append("installed")
        matches = [t in hide for t in tags]
        if (all(matches) and matches) if filtering == "and" else any(matches):
            hidden += 1
            continue
        if search and search.lower() not in (entry["name"] + " " + entry["description"]).lower():
            continue
        shown.append({**entry, "tags": tags, "installed": installed})
    keys = {
        "newest first": (lambda e: e.get("added", ""), True), "oldest first": (lambda e: e.get("added", ""), False),
        "a-z": (lambda e: e["name"].lower(), False), "z-a": (lambda e: e["name"].lower(), True),
        "update time": (lambda e: e.get("commit_time", ""), True),
        "create time": (lambda e: e.get("created_at", ""), True), "stars": (lambda e: e.get("stars", 0), True),
    }
    if sort_order in keys:
        key, reverse = keys[sort_order]
        shown.sort(key=key, reverse=reverse)
    return shown, hidden


def get_dirname_safe(url: str) -> str:
    try:
        return get_extension_dirname_from_url(url)
    except UserError:
        return ""
