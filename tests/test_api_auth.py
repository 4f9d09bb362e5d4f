"""API-only servers (--nowebui) with other flags: --api-auth and the UI's credentials as HTTP Basic, --api-log,
secrets hidden in /cmd-flags, and the --api-server-stop routes (stop, restart, kill)."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import Server

webuiapi = pytest.importorskip("webuiapi")


class ApiServer(Server):
    """A --nowebui server: there is no page at /, so readiness is /internal/ping."""

    def wait_ready(self, timeout: float = 120) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/internal/ping", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started_at
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("api-auth")
    marker = data / "tmp" / "restart"
    srv = ApiServer(
        data,
        [
            "--nowebui",
            "--api-auth",
            "alice:s3cr:et,bob:pw",
            "--gradio-auth",
            "ui:uipass",
            "--api-log",
            "--api-server-stop",
            "--skip-load-model-at-start",
        ],
        env={"SD_WEBUI_RESTART": str(marker)},
    )
    srv.marker = marker
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ui_auth_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("ui-auth")
    auth_file = data / "users.txt"
    auth_file.write_text("carol:fromfile\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SD_WEBUI_RESTART", raising=False)  # not started by a restartable launcher
        srv = ApiServer(
            data,
            [
                "--nowebui",
                "--gradio-auth",
                "ui:uipass",
                "--gradio-auth-path",
                str(auth_file),
                "--api-server-stop",
                "--skip-load-model-at-start",
            ],
        )
    yield srv
    srv.stop()


def test_api_auth_is_http_basic_with_401_and_www_authenticate(auth_server):
    url = auth_server.url + "/sdapi/v1/options"
    for auth in (None, ("alice", "wrong"), ("mallory", "s3cr:et"), ("ui", "uipass"), ("alice", "")):
        r = requests.get(url, auth=auth, timeout=10)
        assert r.status_code == 401, auth
        assert r.headers["WWW-Authenticate"] == "Basic"
        assert r.json()["detail"] == "Incorrect username or password"
        assert float(r.headers["X-Process-Time"]) >= 0
    for header in ("", "Basic ", "Basic !!!", "Basic dW5kZWZpbmVk", "Bearer token"):
        assert requests.get(url, headers={"Authorization": header}, timeout=10).status_code == 401, header
    assert requests.get(url, auth=("alice", "s3cr:et"), timeout=10).status_code == 200
    assert requests.get(url, auth=("bob", "pw"), timeout=10).status_code == 200
    # every /sdapi route, not only some
    assert requests.post(auth_server.url + "/sdapi/v1/txt2img", json={}, timeout=10).status_code == 401
    assert requests.post(auth_server.url + "/sdapi/v1/server-kill", timeout=10).status_code == 401
    assert auth_server.proc.poll() is None
    # the liveness probes outside /sdapi stay open
    assert requests.get(auth_server.url + "/internal/ping", timeout=10).status_code == 200


def test_webuiapi_client_with_credentials(auth_server):
    host, port = auth_server.url.rsplit(":", 1)
    client = webuiapi.WebUIApi(host=host.split("//")[1], port=int(port), username="alice", password="s3cr:et")
    assert client.get_progress()["progress"] == 0
    assert "send_seed" in client.get_options()
    assert client.get_scripts() == {  # the built-in scripts, by lower-cased title
        "txt2img": ["prompt matrix", "prompts from file or textbox", "x/y/z plot"],
        "img2img": ["loopback", "outpainting mk2", "poor man's outpainting", "prompt matrix",
                    "prompts from file or textbox", "sd upscale", "x/y/z plot"],
    }
    anonymous = webuiapi.WebUIApi(host=host.split("//")[1], port=int(port))
    with pytest.raises(RuntimeError):
        anonymous.txt2img(prompt="x")


def test_cmd_flags_redact_credentials(auth_server):
    r = requests.get(auth_server.url + "/sdapi/v1/cmd-flags", auth=("bob", "pw"), timeout=10)
    flags = r.json()
    assert flags["api_auth"] == flags["gradio_auth"] == "<redacted>"
    assert "s3cr" not in r.text and "uipass" not in r.text
    assert flags["nowebui"] is True and flags["api_server_stop"] is True


def test_api_log_lines(auth_server):
    requests.get(auth_server.url + "/sdapi/v1/samplers", auth=("bob", "pw"), timeout=10)
    time.sleep(0.3)
    lines = [line for line in auth_server.output().splitlines() if "API " in line and "/sdapi/v1/samplers" in line]
    assert lines and " 200 http/1.1 GET /sdapi/v1/samplers 127.0.0.1:" in lines[-1]


def test_server_restart_writes_the_marker_and_stops(auth_server):
    assert not auth_server.marker.exists()
    r = requests.post(auth_server.url + "/sdapi/v1/server-restart", auth=("bob", "pw"), timeout=10)
    assert r.status_code == 200
    assert auth_server.wait_exit() == 0
    assert auth_server.marker.exists()


def test_ui_credentials_protect_the_api_when_no_api_auth(ui_auth_server):
    url = ui_auth_server.url + "/sdapi/v1/sd-models"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("ui", "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=("ui", "uipass"), timeout=10).json() == []
    assert requests.get(url, auth=("carol", "fromfile"), timeout=10).status_code == 200
    flags = requests.get(ui_auth_server.url + "/sdapi/v1/cmd-flags", auth=("ui", "uipass"), timeout=10).json()
    assert flags["gradio_auth"] == "<redacted>" and flags["api_auth"] is None


def test_server_restart_needs_a_restartable_launcher_and_kill_exits(ui_auth_server):
    r = requests.post(ui_auth_server.url + "/sdapi/v1/server-restart", auth=("ui", "uipass"), timeout=10)
    assert r.status_code == 501 and "restartable" in r.json()["detail"]
    r = requests.post(ui_auth_server.url + "/sdapi/v1/server-kill", auth=("ui", "uipass"), timeout=10)
    assert r.status_code == 200
    assert ui_auth_server.wait_exit() == 0
