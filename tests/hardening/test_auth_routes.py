"""One auth policy: with credentials set, every route the app has (enumerated from its router, so a route added
later is tried too: API, /internal, file=, Gradio's routes and queue, extension routes from on_app_started,
websockets) refuses a request without credentials; no secret appears in /cmd-flags or the logs; passwords are
compared in constant time; an exposed server without a password refuses extension installs.

Each app is built by tests/hardening/route_probe.py in a fresh process (flags are parsed at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modules import credentials
from tests.hardening.figures import FULL, record

ROOT = Path(__file__).resolve().parents[2]
SECRETS = ("uipass-7Q", "apipass-9Z")
UI_AUTH = ["--gradio-auth", f"ui:{SECRETS[0]}"]
API_AUTH = ["--api-auth", f"api:{SECRETS[1]}"]

# What a visitor must reach to log in: the login form and the page's static files (no data, no actions).
LOGIN_ROUTES = {
    "/login",
    "/login/",
    "/logout",
    "/favicon.ico",
    "/theme.css",
    "/gradio_api/theme.css",
    "/robots.txt",
    "/manifest.json",
    "/pwa_icon",
    "/pwa_icon/{size}",
    "/svelte/{path:path}",
    "/static/{path:path}",
    "/assets/{path:path}",
}
# The page itself and its config answer the login form only (Gradio's auth_required config, no components).
LOGIN_PAGE_ROUTES = {"/", "/config", "/config/"}

EXTENSION_ROUTE = """
    from modules import script_callbacks


    def add_routes(demo, app):
        app.add_api_route("/hardening-ext/data", lambda: {"secret": "extension data"}, methods=["GET", "POST"])


    script_callbacks.on_app_started(add_routes)
"""


def probe(tmp_path: Path, flags: list[str], login: str) -> tuple[list[dict], str, str]:
    """(one result per route, the authenticated /cmd-flags text, the process's log)."""
    data = tmp_path / "data"
    ext = data / "extensions" / "hardening-route" / "scripts"
    ext.mkdir(parents=True)
    (ext / "hardening_route.py").write_text(textwrap.dedent(EXTENSION_ROUTE).lstrip())
    env = dict(os.environ, SD_WEBUI_DATA_DIR=str(data), PROBE_CREDENTIALS=login)
    env.pop("IGNORE_CMD_ARGS_ERRORS", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.hardening.route_probe", "--skip-torch-cuda-test", "--use-cpu", "all", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if "path" in line]
    cmd_flags = next((line["cmd_flags"] for line in lines if "cmd_flags" in line), "")
    assert results and cmd_flags, done.stderr[-3000:]
    return results, cmd_flags, done.stdout + done.stderr


def open_routes(results: list[dict], only: tuple[str, ...] = ()) -> list[str]:
    """Routes that answered without credentials (anything but 401/403, a redirect to the login, or the login page)."""
    failures = []
    for r in results:
        if only and not r["path"].startswith(only):
            continue
        if r["path"] in LOGIN_ROUTES:
            continue
        if r["path"] in LOGIN_PAGE_ROUTES and r["status"] == 200 and r.get("login_page"):
            continue
        if r["status"] in (401, 403) or (300 <= r["status"] < 400 and "login" in r["location"]):
            continue
        failures.append(f"{r['method']} {r['path']} -> {r['status']} {r['body'][:80]!r}")
    return failures


def check(tmp_path: Path, case: str, flags: list[str], login: str, only: tuple[str, ...] = ()) -> None:
    results, cmd_flags, log = probe(tmp_path, flags, login)
    failures = open_routes(results, only)
    record("auth routes", case=case, routes=len(results), refused=len(results) - len(failures), open=failures)
    assert not [s for s in SECRETS if s in cmd_flags or s in log]
    assert any(r["path"] == "/hardening-ext/data" for r in results), "the extension route was not enumerated"
    assert not failures, f"{len(failures)} of {len(results)} routes answer without credentials:\n" + "\n".join(failures)


def test_api_only_server_with_api_auth_refuses_every_route(tmp_path):
    check(tmp_path, "--nowebui --api-auth", ["--nowebui", *API_AUTH], f"api:{SECRETS[1]}")


def test_ui_server_with_gradio_auth_refuses_every_route(tmp_path):
    """The API has no credentials of its own here, so it takes the UI's."""
    check(tmp_path, "--api --gradio-auth", ["--api", *UI_AUTH], f"ui:{SECRETS[0]}")


@pytest.mark.skipif(not FULL, reason="full run only (SD_WEBUI_HARDENING_FULL=1): one more app build")
def test_ui_server_with_both_refuses_every_route(tmp_path):
    check(tmp_path, "--api --gradio-auth --api-auth", ["--api", *UI_AUTH, *API_AUTH], f"api:{SECRETS[1]}")


@pytest.mark.skipif(not FULL, reason="full run only (SD_WEBUI_HARDENING_FULL=1): one more app build")
def test_ui_server_with_api_auth_only_guards_the_api(tmp_path):
    """--api-auth alone protects the API; the page stays as open as its owner chose (no --gradio-auth)."""
    check(tmp_path, "--api --api-auth (API routes)", ["--api", *API_AUTH], f"api:{SECRETS[1]}", only=("/sdapi/",))


def test_passwords_are_compared_in_constant_time(monkeypatch):
    """Every entry is compared with hmac.compare_digest, user and password, whatever is wrong and where."""
    calls = []
    real = credentials.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", counting)
    creds = {"alice": "secret-1", "bob": "secret-2", "carol": "secret-3"}
    for user, password in [("alice", "secret-1"), ("alice", "x"), ("zed", "secret-1"), ("", ""), ("bob", "s" * 999)]:
        calls.clear()
        assert credentials.check_credentials(creds, user, password) == (creds.get(user) == password)
        assert len(calls) == 2 * len(creds)


def test_exposed_server_without_password_refuses_extension_installs(monkeypatch):
    """--listen / --share without --enable-insecure-extension-access: installs are refused (A1111's rule)."""
    from modules import extension_install, shared
    from modules.errors import UserError

    for flags, disabled in [
        (["--listen"], True),
        (["--share"], True),
        ([], False),
        (["--listen", "--enable-insecure-extension-access"], False),
    ]:
        code = "from modules.shared_cmd_options import cmd_opts; print(cmd_opts.disable_extension_access)"
        out = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv = ['webui.py', *{flags!r}]; {code}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert out.strip().splitlines()[-1] == str(disabled), flags
    monkeypatch.setattr(shared.cmd_opts, "disable_extension_access", True)
    with pytest.raises(UserError, match="extension access disabled"):
        extension_install.install_extension_from_url(None, "https://example.com/evil/ext.git")
