"""Preparing the environment before the app starts (standard library only: torch may not be installed yet).

`prepare_environment()` installs torch (a CUDA build where an NVIDIA GPU is present, else a CPU build;
TORCH_COMMAND overrides, as in A1111), xformers only with --xformers on CUDA, then requirements.txt, then each
enabled extension's install.py. It never clones other projects' repositories.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache

log = logging.getLogger("launch")

script_path = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"

TORCH_VERSION = "2.13.0"
CUDA_INDEX = "https://download.pytorch.org/whl/cu130"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@lru_cache
def git_tag() -> str:
    """The program version for infotexts: `git describe --tags`, else the package version."""
    try:
        out = subprocess.run([git, "-C", script_path, "describe", "--tags", "--always"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    return "v0.1.0"


@lru_cache
def commit_hash() -> str:
    try:
        return subprocess.run([git, "-C", script_path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "<none>"


def run(command: str | list[str], desc: str | None = None, errdesc: str | None = None,
        custom_env: dict | None = None, live: bool = True) -> str:
    """Run a command; on failure raise RuntimeError with its output (A1111's launch.run)."""
    if desc:
        print(desc, flush=True)
    args = command if isinstance(command, list) else shlex.split(command)
    result = subprocess.run(args, stdout=None if live else subprocess.PIPE, stderr=None if live else subprocess.PIPE,
                            env=os.environ if custom_env is None else custom_env, text=True)
    if result.returncode != 0:
        message = f"{errdesc or 'Error running command'}.\nCommand: {' '.join(args)}\nError code: {result.returncode}"
        if not live:
            message += f"\nstdout: {result.stdout}\nstderr: {result.stderr}"
        raise RuntimeError(message)
    return result.stdout or ""


def is_installed(package: str) -> bool:
    """Whether a distribution (or importable module) of that name is installed (A1111's launch.is_installed)."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def run_pip(command: str, desc: str | None = None, live: bool = True) -> str:
    """`pip <command>` with the app's Python (A1111's launch.run_pip)."""
    index = f" --index-url {index_url}" if index_url else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index}', desc=f"Installing {desc}" if desc else None,
               errdesc=f"Couldn't install {desc or command}", live=live)


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver answers (nvidia-smi), without importing torch."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def default_torch_command(cuda: bool) -> str:
    index = CUDA_INDEX if cuda else CPU_INDEX
    return f"pip install torch=={TORCH_VERSION} --extra-index-url {index}"


def requirements_met(requirements_file: str) -> bool:
    """Every requirement line already satisfied (fast path: skip pip). Versions are checked too when `packaging`
    is there: a preinstalled older copy (Colab ships its own transformers, for one) must not pass for the
    version requirements.txt asks for."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        Requirement = None
    try:
        with open(requirements_file, encoding="utf-8") as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
    except OSError:
        return False
    for line in lines:
        if not line:
            continue
        name = line
        for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";"):
            name = name.split(sep, 1)[0]
        try:
            installed = version(name.strip())
        except PackageNotFoundError:
            return False
        if Requirement is not None:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
                return False
    return True


def prepare_environment(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    flags = set(args)
    requirements_file = os.environ.get("REQS_FILE", os.path.join(script_path, "requirements.txt"))
    cuda = has_nvidia_gpu()
    torch_command = os.environ.get("TORCH_COMMAND", default_torch_command(cuda))

    print(f"Python {sys.version}")
    print(f"Version: {git_tag()}")
    print(f"Commit hash: {commit_hash()}")

    if "--reinstall-torch" in flags or not is_installed("torch"):
        run(f'"{python}" -m {torch_command}', "Installing torch (CUDA build)" if cuda else "Installing torch (CPU build)",
            "Couldn't install torch")

    if "--skip-torch-cuda-test" not in flags and cuda:
        check = 'import torch; assert torch.cuda.is_available(), "no CUDA"'
        try:
            run([python, "-c", check], live=False)
        except RuntimeError as e:
            raise RuntimeError(
                "Torch is not able to use GPU; add --skip-torch-cuda-test to COMMANDLINE_ARGS variable to disable "
                "this check"
            ) from e

    if ("--xformers" in flags or "--reinstall-xformers" in flags) and (not is_installed("xformers") or
                                                                        "--reinstall-xformers" in flags):
        if cuda:
            run_pip(f"install -U xformers --extra-index-url {CUDA_INDEX}", "xformers")
        else:
            print("--xformers ignored: xformers needs an NVIDIA GPU with CUDA; using PyTorch's own attention.")

    if "--skip-install" not in flags and not requirements_met(requirements_file):
        run_pip(f'install -r "{requirements_file}"', "requirements")

    if "--update-all-extensions" in flags:
        update_all_extensions(args)

    if "--skip-install" not in flags:
        run_extension_installers(args)


def run_extension_installer(extension_dir: str) -> None:
    """Run one extension's install.py with the app's Python and the repository on PYTHONPATH (as A1111), so it can
    `import launch` for `is_installed`, `run_pip` and `git`. A failure is reported, not raised."""
    installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(installer):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [script_path, env.get("PYTHONPATH", "")]))
    name = os.path.basename(extension_dir)
    try:
        run([python, installer], f"Installing requirements for {name}", f"Error running install.py for {name}",
            custom_env=env)
    except RuntimeError as e:
        print(e, file=sys.stderr)


def _extension_args(args: list[str]):
    import argparse

    from modules import paths_internal

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--ui-settings-file", default=os.path.join(paths_internal.data_path, "config.json"))
    pre.add_argument("--disable-all-extensions", action="store_true")
    pre.add_argument("--disable-extra-extensions", action="store_true")
    return pre.parse_known_args(args)[0]


def enabled_extension_dirs(args: list[str]) -> list[str]:
    """Folders of the extensions enabled by config.json and the --disable-*-extensions flags."""
    from modules import extensions

    known = _extension_args(args)
    return extensions.enabled_extension_paths(known.ui_settings_file, known.disable_all_extensions,
                                              known.disable_extra_extensions)


def update_all_extensions(args: list[str]) -> None:
    """--update-all-extensions: `git pull --autostash` in every enabled extension that is a git repository."""
    from modules import extensions

    for path in enabled_extension_dirs(args):
        if not os.path.exists(os.path.join(path, ".git")):
            continue
        try:
            extensions.run_git(path, "pull", "--autostash", network=True, allow_ssh=True)
            print(f"Updated extension {os.path.basename(path)}")
        except extensions.GitError as e:
            print(f"Could not update extension {os.path.basename(path)}: {e}", file=sys.stderr)


def run_extension_installers(args: list[str]) -> None:
    """Each enabled extension's install.py (disabled ones are skipped, as are all with --disable-all-extensions)."""
    for path in enabled_extension_dirs(args):
        run_extension_installer(path)


def start() -> None:
    import webui

    if "--nowebui" in sys.argv:
        webui.api_only()
    else:
        webui.webui()
