#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: create ./venv if needed, install the app's requirements (torch
# first, CPU or CUDA build as the launcher decides) and the test tools, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")"

python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
if [ ! -x "$venv_dir/bin/python" ]; then
    "$python_cmd" -m venv "$venv_dir"
    "$venv_dir/bin/python" -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
source "$venv_dir/bin/activate"

python launch.py --exit --skip-torch-cuda-test --disable-all-extensions
python -m pip install -q -r requirements-test.txt
# Browser tests use Debian's chromium (never a browser download); without it (or root) they are skipped.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null ||
        echo "Could not install chromium; browser tests will be skipped." >&2
fi
exec python -m pytest "$@"
