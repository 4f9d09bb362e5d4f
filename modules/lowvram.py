"""--medvram / --lowvram: keep model parts in RAM and move each to the GPU only while it runs.

medvram: the text encoders, the VAE and the UNet are the parts; one of them is on the GPU at a time.
lowvram: additionally the UNet's down, middle and up blocks are moved one at a time (its small stem and head
stay on the GPU). Parts move in forward pre-hooks, so the rest of the code does not know about it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from modules import devices

log = logging.getLogger(__name__)


class Offloader:
    """Keeps at most one registered part on `device`; the others wait on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resident: torch.nn.Module | None = None
        self.handles: list[Any] = []
        self.moves = 0

    def bring(self, part: torch.nn.Module) -> None:
        if self.resident is part:
            return
        if self.resident is not None:
            self.resident.to(devices.cpu)
        part.to(self.device)
        self.resident = part
        self.moves += 1

    def register(self, part: torch.nn.Module, *triggers: torch.nn.Module) -> None:
        """When any trigger module runs, `part` (which contains it) is brought to the device first."""
        part.to(devices.cpu)
        for trigger in triggers or (part,):
            self.handles.append(trigger.register_forward_pre_hook(lambda module, args, p=part: self.bring(p)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def setup(model: Any, lowvram: bool, device: torch.device | None = None) -> Offloader:
    """Install the hooks on a loaded StableDiffusionModel. Returns the offloader (kept on the model)."""
    device = device or devices.device
    off = Offloader(device)
    for encoder in model.cond_stage_model.encoders:
        off.register(encoder.transformer)
    vae = model.first_stage_model
    off.register(vae, vae.encoder, vae.decoder, vae.quant_conv, vae.post_quant_conv)
    unet = model.unet
    if not lowvram:
        off.register(unet)
    else:
        blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
        unet.to(device)
        for block in blocks:
            off.register(block)
    model.offloader = off
    log.info("%s: model parts move to %s when used", "lowvram" if lowvram else "medvram", device)
    return off


def wanted(cmd_opts: Any, model: Any) -> str | None:
    """'lowvram', 'medvram' or None for this model and these flags (offloading needs a GPU)."""
    if devices.device.type == "cpu":
        return None
    if cmd_opts.lowvram:
        return "lowvram"
    if cmd_opts.medvram or (cmd_opts.medvram_sdxl and getattr(model, "is_sdxl", False)):
        return "medvram"
    return None
