"""The "TAESD" live preview: madebyollin's tiny autoencoder (diffusers' `AutoencoderTiny`) decodes latents to a
near-final picture for a fraction of the VAE's cost.

The weights (about 5 MB per family) are downloaded only when the user chooses TAESD, through huggingface_hub with
progress in the console, into models/VAE-taesd/<taesd|taesdxl>. Offline, the choice fails with one message and
previews keep using "Approx cheap". The network is built from its fixed architecture (diffusers' defaults, which
are TAESD's), so no config is fetched.
"""

from __future__ import annotations

import logging
import os
import threading

import torch

from modules import model_download, model_files, paths_internal
from modules.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
REPOS = {False: "madebyollin/taesd", True: "madebyollin/taesdxl"}

_decoders: dict[str, torch.nn.Module] = {}
_lock = threading.Lock()
_background: set[bool] = set()


def weights_path(is_sdxl: bool) -> str:
    name = "taesdxl" if is_sdxl else "taesd"
    return os.path.join(paths_internal.models_path, "VAE-taesd", name, WEIGHTS_FILE)


def download(is_sdxl: bool = False) -> str:
    """Fetch the decoder weights for the family if absent; returns the path. UserError when it cannot."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target = weights_path(is_sdxl)
    if os.path.isfile(target):
        return target
    repo = REPOS[is_sdxl]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    folder = os.path.dirname(target)
    problem = model_download.endpoint_problem(endpoint)
    hint = (f"Check the network connection, or put {WEIGHTS_FILE} of {repo} into {folder}. Previews use "
            "Approx cheap meanwhile.")
    if problem:
        raise UserError(f"Could not download the TAESD preview decoder ({repo}): {problem}. {hint}")
    try:
        log.info("Downloading the TAESD preview decoder from %s", repo)
        hf_hub_download(repo, WEIGHTS_FILE, local_dir=folder, endpoint=endpoint)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(f"Could not download the TAESD preview decoder ({repo}: {type(e).__name__}). {hint}") from e
    return target


def download_in_background(is_sdxl: bool) -> None:
    """Start one download for the family (e.g. after switching to an SDXL model with TAESD chosen)."""
    with _lock:
        if is_sdxl in _background:
            return
        _background.add(is_sdxl)

    def run() -> None:
        try:
            download(is_sdxl)
        except UserError as e:
            log.warning("%s", e)

    threading.Thread(target=run, name="taesd-download", daemon=True).start()


def decoder(is_sdxl: bool = False) -> torch.nn.Module | None:
    """The loaded decoder for the family, or None when its weights are not on disk (yet)."""
    from diffusers import AutoencoderTiny

    path = weights_path(is_sdxl)
    with _lock:
        if path in _decoders:
            return _decoders[path]
        if not os.path.isfile(path):
            return None
        with torch.device("meta"):
            model = AutoencoderTiny()
        model.load_state_dict(model_files.read_state_dict(path), assign=True)
        _decoders[path] = model.decoder.eval().requires_grad_(False)
        return _decoders[path]


def on_preview_type_change() -> None:
    """onchange of show_progress_type: choosing TAESD fetches the decoder for the loaded model now, so that an
    offline machine says so at once (the setting is then left unchanged)."""
    from modules import sd_models, shared

    if shared.opts.show_progress_type != "TAESD":
        return
    download(bool(getattr(sd_models.model_data.sd_model, "is_sdxl", False)))
