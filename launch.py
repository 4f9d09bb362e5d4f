"""Prepare the environment (torch, requirements, extension installers), then start the web UI.

Extensions' install.py files import this module for `is_installed`, `run_pip`, `run` and `git`, as in A1111.
"""

from modules import launch_utils
from modules.launch_utils import (  # noqa: F401
    commit_hash,
    git,
    git_tag,
    index_url,
    is_installed,
    python,
    run,
    run_extension_installer,
    run_pip,
)

args = launch_utils.sys.argv[1:]


def main() -> None:
    if "--skip-prepare-environment" not in args:
        launch_utils.prepare_environment(args)
    if "--exit" in args:
        print("Exiting because of --exit argument")
        return
    launch_utils.start()


if __name__ == "__main__":
    main()
