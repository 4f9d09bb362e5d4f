"""Cross-attention implementation, chosen from the flags and the `cross_attention_optimization` setting.

A1111's optimisation names map onto diffusers attention processors of our own choosing:
sdp → PyTorch scaled-dot-product attention (the default), sdp-no-mem → SDPA restricted to the flash and math
kernels (deterministic), xformers → xformers' memory-efficient kernel (CUDA, when installed), Doggettx / V1 /
InvokeAI / sub-quadratic → sliced attention (A1111's memory-saving variants; slicing gives the same saving),
None → plain matmul-softmax attention.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from typing import Any

from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    SlicedAttnProcessor,
    XFormersAttnProcessor,
)

from modules import devices, shared

log = logging.getLogger(__name__)

CHOICES = ["Automatic", "xformers", "sdp-no-mem", "sdp", "Doggettx", "sub-quadratic", "V1", "InvokeAI", "None"]
SLICE_SIZE = 2


class SdpNoMemAttnProcessor(AttnProcessor2_0):
    """SDPA without the memory-efficient kernel (A1111's --opt-sdp-no-mem-attention: reproducible results)."""

    def __call__(self, *args: Any, **kwargs: Any):
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            ctx = sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])
        except ImportError:
            ctx = contextlib.nullcontext()
        with ctx:
            return super().__call__(*args, **kwargs)


def xformers_available() -> bool:
    return devices.device.type == "cuda" and importlib.util.find_spec("xformers") is not None


def automatic_choice(cmd_opts: Any) -> str:
    """The flag-preferred optimisation, as A1111's priority list resolves it."""
    if (cmd_opts.xformers or cmd_opts.force_enable_xformers) and (xformers_available() or cmd_opts.force_enable_xformers):
        return "xformers"
    if cmd_opts.opt_sdp_no_mem_attention:
        return "sdp-no-mem"
    if cmd_opts.opt_sdp_attention:
        return "sdp"
    if cmd_opts.opt_sub_quad_attention:
        return "sub-quadratic"
    if cmd_opts.opt_split_attention:
        return "Doggettx"
    if cmd_opts.opt_split_attention_v1:
        return "V1"
    if cmd_opts.opt_split_attention_invokeai:
        return "InvokeAI"
    if cmd_opts.disable_opt_split_attention:
        return "None"
    return "sdp"


def current_choice() -> str:
    setting = shared.opts.cross_attention_optimization
    if setting == "Automatic" or setting not in CHOICES:
        return automatic_choice(shared.cmd_opts)
    if setting == "xformers" and not xformers_available():
        log.warning("xformers is not available (needs CUDA and the xformers package); using sdp.")
        return "sdp"
    return setting


def make_processor(choice: str):
    if choice == "xformers":
        return XFormersAttnProcessor()
    if choice == "sdp-no-mem":
        return SdpNoMemAttnProcessor()
    if choice in ("Doggettx", "sub-quadratic", "V1", "InvokeAI"):
        return SlicedAttnProcessor(SLICE_SIZE)
    if choice == "None":
        return AttnProcessor()
    return AttnProcessor2_0()


def apply(model: Any) -> str:
    """Set the chosen processor on the model's UNet and VAE; returns the choice's name."""
    from modules.hypernetworks import HypernetworkAttnProcessor

    choice = current_choice()
    # hypernetworks act on the UNet's attention only; the wrapper hands over when none is active
    model.unet.set_attn_processor(HypernetworkAttnProcessor(make_processor(choice)))
    model.first_stage_model.set_attn_processor(make_processor(choice))
    upcast = bool(shared.opts.upcast_attn) or shared.cmd_opts.upcast_attn
    for module in model.unet.modules():
        if isinstance(module, Attention):
            module.upcast_attention = upcast
    log.info("Applied cross attention optimization: %s", choice)
    return choice

