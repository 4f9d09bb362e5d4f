"""Dependency floors with known security fixes (Gradio's file-route CVEs, torch.load's weights_only bypass before
2.6), and git only as the plain `git` program with `--` before anything a user typed (no GitPython)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from modules import extension_install, extensions, shared
from modules.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"gradio": Version("6.16"), "torch": Version("2.6")}


def requirements() -> dict[str, Requirement]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            found[requirement.name.lower()] = requirement
    return found


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_requirement_floor(name):
    requirement = requirements()[name]
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=", ">")]
    assert floors and min(floors) >= FLOORS[name], f"{name}: {requirement}"
    assert not requirement.specifier.contains(str(FLOORS[name].release[0]) + "." + str(FLOORS[name].release[1] - 1))


def test_installed_versions_meet_the_floors():
    import gradio
    import torch

    assert Version(gradio.__version__) >= FLOORS["gradio"]
    assert Version(torch.__version__.split("+")[0]) >= FLOORS["torch"]


def test_no_gitpython_anywhere():
    assert "gitpython" not in requirements()
    pattern = re.compile(r"^\s*(import git\b|from git\b|import gitpython|from gitpython)", re.M)
    offenders = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ("venv", ".venv", "extensions", "tests", ".git"):
            continue
        if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_git_gets_double_dash_before_the_url_and_refuses_option_shaped_targets(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(extensions, "run_git", lambda path, *args, **kw: calls.append(args) or "")
    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", False, raising=False)
    url = "https://example.com/--upload-pack=touch%20pwned/ext.git"
    try:
        extension_install.install_extension_from_url(None, url)
    except (UserError, OSError):
        pass  # the fake clone made nothing to move into place; only its arguments matter here
    clone = next(args for args in calls if args[0] == "clone")
    assert clone.index("--") < clone.index(url)
    ext = extensions.Extension("x", str(tmp_path))
    monkeypatch.setattr(ext, "read_info_from_repo", lambda: None)
    for target in ("--hard", "-c", "HEAD;rm -rf /", "$(touch x)"):
        with pytest.raises(UserError):
            ext.fetch_and_reset_hard(target)
