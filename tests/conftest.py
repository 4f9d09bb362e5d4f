"""Test set-up: an isolated data directory, tiny real-format checkpoints, and a real server on a free port.

The data directory is created before any `modules.*` import (modules read it at import time), so tests never
touch the repository's own config.json, outputs or models.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_DIR = Path(tempfile.mkdtemp(prefix="sdwebui-test-"))
os.environ["SD_WEBUI_DATA_DIR"] = str(DATA_DIR)
os.environ["IGNORE_CMD_ARGS_ERRORS"] = "1"
os.environ["SD_WEBUI_CACHE_FILE"] = str(DATA_DIR / "cache.json")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS_DIR = DATA_DIR / "models"
CKPT_DIR = MODELS_DIR / "Stable-diffusion"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_checkpoints() -> dict[str, Path]:
    """Seeded random tiny checkpoints in A1111's single-file layout, each with its same-stem yaml.

    Keys: sd1, sd1_ckpt (pickle twin), sd2v, sdxl, sd1_inpaint. Built once per test run.
    """
    from modules import checkpoint_factory

    CKPT_DIR.mkdir(parents=True, exist_ok=True)
    specs = {
        "sd1": ("sd1", "tiny-sd1.safetensors"),
        "sd1_ckpt": ("sd1", "tiny-sd1-pickle.ckpt"),
        "sd2v": ("sd2-v", "tiny-sd2v.safetensors"),
        "sdxl": ("sdxl", "tiny-sdxl.safetensors"),
        "sd1_inpaint": ("sd1-inpaint", "tiny-sd1-inpainting.safetensors"),
    }
    out = {}
    for key, (family, filename) in specs.items():
        path = CKPT_DIR / filename
        if not path.exists():
            checkpoint_factory.write_checkpoint(str(path), family, seed=zlib.crc32(key.encode()) % 1000)
        out[key] = path
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `webui.py` process on a free port with its own data directory."""

    def __init__(self, data: Path, args: list[str], env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data / f"server-{self.port}.log"
        full_env = dict(os.environ, SD_WEBUI_DATA_DIR=str(data), PYTHONUNBUFFERED="1", **(env or {}))
        full_env.pop("IGNORE_CMD_ARGS_ERRORS", None)
        full_env.pop("COMMANDLINE_ARGS", None)
        self.log = open(self.log_path, "w")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "webui.py"), "--port", str(self.port), "--data-dir", str(data), *args],
            cwd=str(ROOT), env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.ready_after = self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> float:
        import requests

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started_at
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def sd1(tiny_checkpoints):
    """The tiny SD1 checkpoint loaded in this process (CPU), with the checkpoint and VAE lists filled."""
    from modules import devices, sd_models, sd_vae, shared

    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    return sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))


@pytest.fixture(scope="session")
def server(tiny_checkpoints):
    """One server for the session: the tiny checkpoints, --api, CPU."""
    srv = Server(DATA_DIR, ["--api", "--skip-torch-cuda-test", "--use-cpu", "all"])
    yield srv
    srv.stop()
