"""The "Approx NN" live preview: A1111's small convolutional latent → RGB network (`VAEApprox`).

Its weights are files A1111 users already have in models/VAE-approx (`model.pt` for SD 1.x/2.x latents,
`vaeapprox-sdxl.pt` for SDXL). Nothing is downloaded: without the file, previews use "Approx cheap".
"""

from __future__ import annotations

import logging
import os
import threading

import torch
from torch import nn
from torch.nn import functional as F

from modules import model_files, paths_internal

log = logging.getLogger(__name__)

_loaded: dict[tuple[str, float | None], VAEApprox | None] = {}
_lock = threading.Lock()


class VAEApprox(nn.Module):
    """Eight unpadded convolutions over the latent upscaled 2× and padded by 11 on each side (so the output is
    exactly twice the latent size), each followed by leaky ReLU (slope 0.1). Output on the VAE's [-1, 1] scale."""

    def __init__(self, latent_channels: int = 4):
        super().__init__()
        widths = [latent_channels, 8, 16, 32, 64, 32, 16, 8, 3]
        kernels = [7, 5, 3, 3, 3, 3, 3, 3]
        for i, k in enumerate(kernels):
            setattr(self, f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], (k, k)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = 11
        x = F.interpolate(x, (x.shape[2] * 2, x.shape[3] * 2))
        x = F.pad(x, (extra, extra, extra, extra))
        for i in range(8):
            x = F.leaky_relu(getattr(self, f"conv{i + 1}")(x), 0.1)
        return x


def weights_path(is_sdxl: bool) -> str:
    return os.path.join(paths_internal.models_path, "VAE-approx", "vaeapprox-sdxl.pt" if is_sdxl else "model.pt")


def model(is_sdxl: bool = False) -> VAEApprox | None:
    """The network for the latent family, loaded once; None when its weights file is absent or unreadable."""
    path = weights_path(is_sdxl)
    key = (path, os.path.getmtime(path) if os.path.isfile(path) else None)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        net = None
        if key[1] is not None:
            try:
                net = VAEApprox()
                net.load_state_dict(model_files.read_state_dict(path))
                net.eval().requires_grad_(False)
            except Exception as e:  # a damaged file falls back to the cheap preview
                log.warning("Could not load the Approx NN preview weights %s: %s", path, e)
                net = None
        _loaded[key] = net
        return net
