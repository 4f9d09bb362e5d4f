"""Extensions: discovery of extensions/ and extensions-builtin/, metadata.ini, enabled state, git information.

Standard library only: `modules.shared_cmd_options` imports this before the command line is parsed (preload.py
files add flags) and `launch_utils` before torch is installed. Git runs in a subprocess, every command with `--`
before user-supplied values, and network protocols limited to https (file:// only when
SD_WEBUI_EXTENSIONS_ALLOW_FILE_URLS=1, which the tests set).
"""

from __future__ import annotations

import collections
import configparser
import dataclasses
import datetime
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator

from modules import paths_internal
from modules.errors import UserError

log = logging.getLogger(__name__)

extensions_dir = paths_internal.extensions_dir
extensions_builtin_dir = paths_internal.extensions_builtin_dir

GIT = os.environ.get("GIT", "git")
GIT_TIMEOUT = 30
GIT_NETWORK_TIMEOUT = 300
ALLOW_FILE_URLS_ENV = "SD_WEBUI_EXTENSIONS_ALLOW_FILE_URLS"


class GitError(UserError):
    """A git command failed (the message carries git's own error text)."""


def file_urls_allowed() -> bool:
    return os.environ.get(ALLOW_FILE_URLS_ENV) == "1"


def _git_base(path: str | None, network: bool, allow_ssh: bool) -> list[str]:
    cmd = [GIT, "-c", f"safe.directory={path or '*'}"]
    if network:
        # Only https (and file:// in tests): no ext::, git:// or plain http transports, also for submodules. ssh only
        # for remotes already configured in an installed extension (the user cloned it that way).
        cmd += ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"]
        if allow_ssh:
            cmd += ["-c", "protocol.ssh.allow=always"]
        if file_urls_allowed():
            cmd += ["-c", "protocol.file.allow=always"]
    if path is not None:
        cmd += ["-C", path]
    return cmd


def run_git(path: str | None, *args: str, network: bool = False, allow_ssh: bool = False,
            timeout: float | None = None) -> str:
    """Run git (in `path`), return stdout; a failure raises GitError with git's message."""
    cmd = _git_base(path, network, allow_ssh) + list(args)
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="echo")
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                                timeout=timeout or (GIT_NETWORK_TIMEOUT if network else GIT_TIMEOUT))
    except FileNotFoundError as e:
        raise GitError("git is not installed or not on PATH; install git to manage extensions.") from e
    except subprocess.TimeoutExpired as e:
        raise GitError(f"git {args[0]} timed out after {e.timeout:.0f} s.") from e
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else f'exit code {result.returncode}'}")
    return result.stdout


@dataclasses.dataclass
class CallbackOrderInfo:
    name: str
    before: list[str]
    after: list[str]


class ExtensionMetadata:
    """metadata.ini: `[Extension] Requires=…`, `[scripts/x.py] Requires/Before/After=…`, `[callbacks/…] Before/After`."""

    filename = "metadata.ini"

    def __init__(self, path: str, canonical_name: str):
        self.config = configparser.ConfigParser()
        try:
            self.config.read(os.path.join(path, self.filename), encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as e:
            log.error("Error reading %s for extension %s: %s", self.filename, canonical_name, e)
        # As A1111: the canonical name is the lower-cased folder name (a Name= entry is informational).
        self.canonical_name = canonical_name.lower().strip()
        self.requires: list[str] = []

    @staticmethod
    def parse_list(text: str) -> list[str]:
        """"ext1 ext2, ext3" → ["ext1", "ext2", "ext3"] (commas and blanks both separate)."""
        return [x for x in re.split(r"[,\s]+", text.strip()) if x] if text else []

    def get_script_requirements(self, field: str, section: str, extra_section: str | None = None) -> list[str]:
        """Names listed under `field` in `[section]` (and `[extra_section]`); `a|b` picks the first one present."""
        text = self.config.get(section, field, fallback="")
        if extra_section:
            text += ", " + self.config.get(extra_section, field, fallback="")
        result = []
        for requirement in self.parse_list(text.lower()):
            present = (x for x in requirement.split("|") if x in loaded_extensions)
            result.append(next(present, requirement))
        return result

    def list_callback_order_instructions(self) -> Iterator[CallbackOrderInfo]:
        for section in self.config.sections():
            if not section.startswith("callbacks/"):
                continue
            callback_name = section[len("callbacks/"):]
            if not callback_name.startswith(self.canonical_name):
                log.error("Callback order section for extension %s refers to another extension: %s",
                          self.canonical_name, section)
                continue
            yield CallbackOrderInfo(callback_name,
                                    self.parse_list(self.config.get(section, "Before", fallback="")),
                                    self.parse_list(self.config.get(section, "After", fallback="")))


ScriptFile = collections.namedtuple("ScriptFile", ["basedir", "filename", "path"])
"""A file of an extension or of the repository (A1111's scripts.ScriptFile)."""


class Extension:
    """One folder under extensions/ or extensions-builtin/."""

    def __init__(self, name: str, path: str, enabled: bool = True, is_builtin: bool = False,
                 metadata: ExtensionMetadata | None = None):
        self.name = name
        self.path = path
        self.enabled = enabled
        self.is_builtin = is_builtin
        self.metadata = metadata or ExtensionMetadata(path, name)
        self.canonical_name = self.metadata.canonical_name
        self.status = ""
        self.can_update = False
        self.remote: str | None = None
        self.branch: str | None = None
        self.commit_hash = ""
        self.commit_date: int | None = None
        self.version = ""
        self.have_info_from_repo = False
        self.load_time = 0.0
        self.load_errors: list[str] = []

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "path", "enabled", "is_builtin", "canonical_name", "remote",
                                              "branch", "commit_hash", "commit_date", "version", "status",
                                              "can_update", "have_info_from_repo")}

    @property
    def is_git_repo(self) -> bool:
        return os.path.exists(os.path.join(self.path, ".git"))

    def read_info_from_repo(self) -> None:
        """Remote URL, branch, commit and date from git (once; builtins and plain folders have none)."""
        if self.have_info_from_repo or not self.is_git_repo:
            return
        self.have_info_from_repo = True
        try:
            self.remote = run_git(self.path, "config", "--get", "remote.origin.url").strip() or None
        except GitError:
            self.remote = None
        try:
            self.branch = run_git(self.path, "rev-parse", "--abbrev-ref", "HEAD").strip()
            head = run_git(self.path, "log", "-1", "--format=%H %ct").split()
            self.commit_hash, self.commit_date = head[0], int(head[1])
            self.version = self.commit_hash[:8]
        except (GitError, IndexError, ValueError) as e:
            log.warning("Could not read git information of extension %s: %s", self.name, e)
            self.status = "unknown"

    def commit_date_text(self) -> str:
        if not self.commit_date:
            return ""
        return datetime.datetime.fromtimestamp(self.commit_date).strftime("%Y-%m-%d %H:%M:%S")

    def list_files(self, subdir: str, extension: str) -> list[ScriptFile]:
        """Files `<path>/<subdir>/*<extension>` (case-insensitive suffix), sorted by name."""
        dirpath = os.path.join(self.path, subdir)
        if not os.path.isdir(dirpath):
            return []
        res = []
        for filename in sorted(os.listdir(dirpath)):
            path = os.path.join(dirpath, filename)
            if os.path.splitext(filename)[1].lower() == extension and os.path.isfile(path):
                res.append(ScriptFile(self.path, filename, path))
        return res

    def check_updates(self) -> None:
        """Compare HEAD with the remote branch (`git ls-remote`: nothing in the folder changes)."""
        self.read_info_from_repo()
        if not self.remote or not self.branch or self.branch == "HEAD":
            self.can_update = False
            self.status = "unknown"
            return
        try:
            out = run_git(self.path, "ls-remote", "--", self.remote, f"refs/heads/{self.branch}", network=True,
                          allow_ssh=True)
        except GitError as e:
            log.warning("Could not check updates for %s: %s", self.name, e)
            self.can_update = False
            self.status = "unknown (remote error)"
            return
        remote_hash = out.split()[0] if out.split() else ""
        if not remote_hash:
            self.can_update, self.status = False, "unknown (remote error)"
        elif remote_hash == self.commit_hash:
            self.can_update, self.status = False, "latest"
        else:
            self.can_update, self.status = True, "new commits"

    def fetch_and_reset_hard(self, commit: str | None = None) -> None:
        """`git fetch --all` then `git reset --hard` to `commit` (default: the remote branch)."""
        self.read_info_from_repo()
        run_git(self.path, "fetch", "--all", "--prune", network=True, allow_ssh=True)
        target = commit or f"origin/{self.branch}"
        if not re.fullmatch(r"[\w./-]+", target) or target.startswith("-"):
            raise GitError(f"Refusing to reset {self.name} to '{target}': not a commit or branch name.")
        run_git(self.path, "reset", "--hard", target)
        self.have_info_from_repo = False
        self.read_info_from_repo()
        self.can_update = False
        self.status = "latest" if commit is None else ""


def topological_sort(dependencies: dict[str, list[str]]) -> list[str]:
    """Names ordered so that each comes after its dependencies; missing and circular ones are ignored."""
    visited: set[str] = set()
    result: list[str] = []

    def visit(name: str) -> None:
        visited.add(name)
        for dep in dependencies.get(name, []):
            if dep in dependencies and dep not in visited:
                visit(dep)
        result.append(name)

    for name in dependencies:
        if name not in visited:
            visit(name)
    return result


extensions: list[Extension] = []
extension_paths: dict[str, Extension] = {}
loaded_extensions: dict[str, Extension] = {}


def api_list() -> list[dict]:
    """/sdapi/v1/extensions: name, remote, branch, commit_hash, version, commit_date, enabled of each extension."""
    res = []
    for ext in extensions:
        ext.read_info_from_repo()
        res.append({"name": ext.name, "remote": ext.remote, "branch": ext.branch, "commit_hash": ext.commit_hash,
                    "version": ext.version, "commit_date": ext.commit_date, "enabled": ext.enabled})
    return res


def read_extension_settings(settings_file: str) -> tuple[list[str], str]:
    """(disabled_extensions, disable_all_extensions) straight from config.json (before settings are loaded)."""
    try:
        with open(settings_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return [], "none"
    if not isinstance(data, dict):
        return [], "none"
    disabled = data.get("disabled_extensions", [])
    disable_all = data.get("disable_all_extensions", "none")
    return (list(disabled) if isinstance(disabled, list) else []), (disable_all if isinstance(disable_all, str) else "none")


def disable_mode(cmd_disable_all: bool, cmd_disable_extra: bool, setting: str) -> str:
    """"all", "extra" (built-ins only) or "none", from the flags and the disable_all_extensions setting."""
    if cmd_disable_all or setting == "all":
        return "all"
    if cmd_disable_extra or setting == "extra":
        return "extra"
    return "none"


def _scan_roots() -> list[tuple[str, bool]]:
    return [(extensions_builtin_dir, True), (extensions_dir, False)]


def _extension_dirnames(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return [d for d in sorted(os.listdir(root))
            if not d.startswith((".", "__")) and os.path.isdir(os.path.join(root, d))]


def enabled_extension_paths(settings_file: str, cmd_disable_all: bool = False, cmd_disable_extra: bool = False) -> list[str]:
    """Folders of the enabled extensions (built-ins first) for preload.py and install.py, before settings load."""
    disabled, setting = read_extension_settings(settings_file)
    mode = disable_mode(cmd_disable_all, cmd_disable_extra, setting)
    if mode == "all":
        return []
    res = []
    for root, is_builtin in _scan_roots():
        if mode == "extra" and not is_builtin:
            continue
        res += [os.path.join(root, d) for d in _extension_dirnames(root) if d not in disabled]
    return res


def _current_mode() -> str:
    from modules import shared

    return disable_mode(bool(getattr(shared.cmd_opts, "disable_all_extensions", False)),
                        bool(getattr(shared.cmd_opts, "disable_extra_extensions", False)),
                        shared.opts.disable_all_extensions)


def active() -> list[Extension]:
    """The extensions whose files are loaded: enabled ones, or none / built-ins only per flags and settings."""
    mode = _current_mode()
    if mode == "all":
        return []
    if mode == "extra":
        return [x for x in extensions if x.enabled and x.is_builtin]
    return [x for x in extensions if x.enabled]


def list_extensions() -> None:
    """Rescan both folders; report duplicates and unmet `Requires` of metadata.ini."""
    from modules import shared

    extensions.clear()
    extension_paths.clear()
    loaded_extensions.clear()
    mode = _current_mode()
    if mode == "all":
        log.warning('Extensions are disabled ("--disable-all-extensions" or the "Disable all extensions" setting)')
    elif mode == "extra":
        log.warning("Only built-in extensions are loaded (--disable-extra-extensions or the setting)")

    disabled = set(shared.opts.disabled_extensions or [])
    for root, is_builtin in _scan_roots():
        for dirname in _extension_dirnames(root):
            path = os.path.join(root, dirname)
            metadata = ExtensionMetadata(path, dirname)
            previous = loaded_extensions.get(metadata.canonical_name)
            if previous is not None:
                log.error('Duplicate canonical name "%s" in extensions "%s" and "%s"; the former is discarded.',
                          metadata.canonical_name, dirname, previous.name)
                continue
            extension = Extension(dirname, path, enabled=dirname not in disabled, is_builtin=is_builtin,
                                  metadata=metadata)
            extensions.append(extension)
            extension_paths[extension.path] = extension
            loaded_extensions[metadata.canonical_name] = extension

    for extension in extensions:
        extension.metadata.requires = extension.metadata.get_script_requirements("Requires", "Extension")
    for extension in extensions:
        if not extension.enabled:
            continue
        for req in extension.metadata.requires:
            required = loaded_extensions.get(req)
            if required is None:
                log.error('Extension "%s" requires "%s", which is not installed.', extension.name, req)
            elif not required.enabled:
                log.error('Extension "%s" requires "%s", which is disabled.', extension.name, required.name)


def find_extension(filename: str) -> Extension | None:
    """The extension that contains `filename` (for error reports and callback names)."""
    real = os.path.realpath(filename)
    for extension in extensions:
        root = os.path.realpath(extension.path)
        if real == root or real.startswith(root + os.sep):
            return extension
    return None
