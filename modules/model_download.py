"""Download Stable Diffusion 1.5 when the user asks (never at start-up), with progress, resume and checksum.

huggingface_hub resumes interrupted downloads from its cache; the file is checked against its known sha256 and
only then moved into models/Stable-diffusion (copy to a temp name + rename, so a crash never leaves a half file
where the model list would pick it up).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import urllib.parse
from collections.abc import Callable

from modules import paths
from modules.errors import UserError
from modules.fileio import atomic_file

log = logging.getLogger(__name__)

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_FILE = "v1-5-pruned-emaonly.safetensors"
SD15_SHA256 = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"


def _sha256(path: str, progress: Callable[[float, str], None] | None) -> str:
    h = hashlib.sha256()
    size = os.path.getsize(path) or 1
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done / size, "Verifying checksum")
    return h.hexdigest()


def endpoint_problem(endpoint: str, timeout: float = 5.0) -> str | None:
    """None if a TCP connection to the endpoint's host opens, else the reason (fail fast when offline instead of
    waiting for the hub client's retries)."""
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return None
    except OSError as e:
        return f"{parsed.hostname}:{port} is unreachable ({e.strerror or e})"


def download_sd15(target_dir: str | None = None,
                  progress_callback: Callable[[float, str], None] | None = None) -> str:
    """Fetch SD 1.5 into `target_dir` (models/Stable-diffusion). Returns the file path; UserError on failure."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target_dir = target_dir or os.path.join(paths.models_path, "Stable-diffusion")
    target = os.path.join(target_dir, SD15_FILE)
    if os.path.isfile(target):
        return target
    cache_dir = os.path.join(paths.models_path, ".download-cache")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    problem = endpoint_problem(endpoint)
    if problem:
        raise UserError(
            f"Could not download {SD15_FILE}: {problem}. Check the network connection, or download a checkpoint "
            f"yourself and put it into {target_dir}."
        )
    try:
        if progress_callback:
            progress_callback(0.0, f"Downloading {SD15_FILE}")
        cached = hf_hub_download(SD15_REPO, SD15_FILE, cache_dir=cache_dir, endpoint=endpoint)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(
            f"Could not download {SD15_FILE} from {endpoint} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"Check the network connection, or download a checkpoint yourself and put it into {target_dir}."
        ) from e
    digest = _sha256(cached, progress_callback)
    if digest != SD15_SHA256:
        os.remove(cached)
        raise UserError(f"The downloaded {SD15_FILE} is corrupt (sha256 {digest[:10]}…); it was deleted. Try again.")
    with open(cached, "rb") as src, atomic_file(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    log.info("Downloaded %s to %s", SD15_FILE, target)
    return target
