"""First run with no checkpoint: the UI starts, says where to put a model, and the offered download fails
cleanly when offline."""

from __future__ import annotations

import socket

import pytest
import requests

from modules import model_download
from modules.errors import UserError
from tests.conftest import Server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def test_download_offline_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(UserError) as e:
        model_download.download_sd15(target_dir=str(tmp_path / "ckpt"))
    message = str(e.value)
    assert "Could not download v1-5-pruned-emaonly.safetensors" in message
    assert str(tmp_path / "ckpt") in message  # says where to put a model instead
    assert not (tmp_path / "ckpt" / model_download.SD15_FILE).exists()


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("first-run")
    srv = Server(data, ["--use-cpu", "all"], env={"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
                                                  "HF_HUB_OFFLINE": "0"})
    yield srv
    srv.stop()


def test_ui_starts_without_a_checkpoint_and_explains(empty_server):
    page = requests.get(empty_server.url + "/", timeout=10)
    assert page.status_code == 200
    config = requests.get(empty_server.url + "/config", timeout=10).json()
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "No checkpoint found" in texts
    assert "models" in texts and "Stable-diffusion" in texts
    assert "No checkpoints found" in empty_server.output()


def test_download_button_fails_offline_and_server_keeps_serving(empty_server):
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(empty_server.url, verbose=False, download_files=False)
    try:
        message, _ = client.predict(api_name="/download_sd15")
        assert "Could not download" in message and "Stable-diffusion" in message
        # generating without a model is one clear message too, and the server is still up
        result = client.predict("cat", "", 2, "Euler a", "Automatic", 64, 64, 1, 1, 7.0, 1, api_name="/txt2img")
        assert "No checkpoints found" in result[3]
    finally:
        client.close()
    assert requests.get(empty_server.url + "/", timeout=10).status_code == 200
