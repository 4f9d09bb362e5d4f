"""The launcher: which torch build it installs, xformers only with CUDA, requirements fast path, scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modules import launch_utils

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def recorded(monkeypatch):
    calls: list[str] = []

    def fake_run(command, desc=None, errdesc=None, custom_env=None, live=True):
        calls.append(command if isinstance(command, str) else " ".join(command))
        return ""

    monkeypatch.setattr(launch_utils, "run", fake_run)
    monkeypatch.setattr(launch_utils, "is_installed", lambda name: False)
    monkeypatch.setattr(launch_utils, "requirements_met", lambda path: True)
    monkeypatch.delenv("TORCH_COMMAND", raising=False)
    return calls


def test_cuda_machine_gets_a_cuda_build_and_xformers(recorded, monkeypatch):
    monkeypatch.setattr(launch_utils, "has_nvidia_gpu", lambda: True)
    launch_utils.prepare_environment(["--xformers", "--skip-torch-cuda-test", "--disable-all-extensions"])
    assert any("torch==" in c and "/whl/cu" in c for c in recorded)
    assert any("xformers" in c for c in recorded)


def test_cpu_machine_gets_a_cpu_build_and_no_xformers(recorded, monkeypatch):
    monkeypatch.setattr(launch_utils, "has_nvidia_gpu", lambda: False)
    launch_utils.prepare_environment(["--xformers", "--disable-all-extensions"])
    assert any("torch==" in c and "/whl/cpu" in c for c in recorded)
    assert not any("xformers" in c for c in recorded)


def test_torch_command_overrides(recorded, monkeypatch):
    monkeypatch.setattr(launch_utils, "has_nvidia_gpu", lambda: True)
    monkeypatch.setenv("TORCH_COMMAND", "pip install torch==9.9.9 --index-url https://example.invalid/x")
    launch_utils.prepare_environment(["--skip-torch-cuda-test", "--disable-all-extensions"])
    assert any("torch==9.9.9" in c for c in recorded)


def test_requirements_fast_path_sees_installed_packages(tmp_path):
    reqs = tmp_path / "r.txt"
    reqs.write_text("torch>=2.6\npillow>=10  # comment\n\n")
    assert launch_utils.requirements_met(str(reqs))
    reqs.write_text("a-package-that-is-not-installed==1.0\n")
    assert not launch_utils.requirements_met(str(reqs))
    # installed but too old / too new for the specifier: pip must run
    reqs.write_text("pillow>=9999\n")
    assert not launch_utils.requirements_met(str(reqs))
    reqs.write_text("pillow<1.0\n")
    assert not launch_utils.requirements_met(str(reqs))


def test_launch_scripts_exist_and_delegate():
    bat = (ROOT / "webui-user.bat").read_text()
    assert "set COMMANDLINE_ARGS=" in bat and "call webui.bat" in bat and "rem git pull" in bat
    sh = (ROOT / "webui.sh").read_text()
    assert "webui-user.sh" in sh and "launch.py" in sh
    assert os.access(ROOT / "webui.sh", os.X_OK) and os.access(ROOT / "run_tests.sh", os.X_OK)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run_tests.sh" in ci
    readme = (ROOT / "README.md").read_text()
    assert "./webui.sh" in readme and "./run_tests.sh" in readme


def test_launch_exit_prepares_and_stops(tmp_path):
    """`launch.py --exit` in the real environment: requirements already met, nothing to install, exit 0."""
    env = dict(os.environ, SD_WEBUI_DATA_DIR=str(tmp_path))
    env.pop("IGNORE_CMD_ARGS_ERRORS", None)
    out = subprocess.run([sys.executable, "launch.py", "--exit", "--skip-torch-cuda-test", "--disable-all-extensions"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Exiting because of --exit argument" in out.stdout
