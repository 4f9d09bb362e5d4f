#!/usr/bin/env bash
# Start the web UI on Linux/macOS: create ./venv if needed, install what is missing, run launch.py.
# Settings (COMMANDLINE_ARGS, TORCH_COMMAND, python_cmd, venv_dir, ...) go in webui-user.sh.
set -u
cd "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")" || exit 1

[ -f webui-user.sh ] && source ./webui-user.sh
python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
LAUNCH_SCRIPT="${LAUNCH_SCRIPT:-launch.py}"
export ERROR_REPORTING=FALSE PIP_IGNORE_INSTALLED=0 SD_WEBUI_RESTART=tmp/restart

if ! "$python_cmd" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "Python 3.10 or newer is needed (tried '$python_cmd'); set python_cmd in webui-user.sh." >&2
    exit 1
fi

if [ "$venv_dir" != "-" ] && [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x "$venv_dir/bin/python" ]; then
        echo "Creating virtual environment in $venv_dir"
        "$python_cmd" -m venv "$venv_dir" || { echo "Cannot create the virtual environment (install python3-venv)." >&2; exit 1; }
        "$venv_dir/bin/python" -m pip install --upgrade pip >/dev/null
    fi
    # shellcheck disable=SC1091
    source "$venv_dir/bin/activate"
fi

while true; do
    rm -f tmp/restart
    python -u "$LAUNCH_SCRIPT" "$@" || exit $?
    [ -f tmp/restart ] || break
done
