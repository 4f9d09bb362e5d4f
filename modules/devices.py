"""Device and precision choice, NaN checks, memory release (A1111's modules.devices surface).

`configure(cmd_opts)` is called once at start-up from the parsed flags; until then the CPU in fp32 is assumed, so
modules can be imported and tested without a command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
from typing import Any

import torch

from modules.errors import UserError

log = logging.getLogger(__name__)

try:
    _libc = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
except OSError:
    _libc = None

cpu = torch.device("cpu")
device: torch.device = cpu
device_interrogate: torch.device = cpu
device_gfpgan: torch.device = cpu
device_esrgan: torch.device = cpu
device_codeformer: torch.device = cpu
dtype: torch.dtype = torch.float32
dtype_vae: torch.dtype = torch.float32
dtype_unet: torch.dtype = torch.float32
dtype_inference: torch.dtype = torch.float32
unet_needs_upcast = False
nan_check_enabled = True


class NansException(UserError):
    """The model produced NaNs; the message says which flag or setting avoids it."""

    status_code = 500


def has_cuda() -> bool:
    return torch.cuda.is_available()


def has_mps() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def get_cuda_device_string(device_id: str | None = None) -> str:
    return f"cuda:{device_id}" if device_id is not None else "cuda"


def get_optimal_device_name(device_id: str | None = None) -> str:
    if has_cuda():
        return get_cuda_device_string(device_id)
    if has_mps():
        return "mps"
    return "cpu"


def get_device_for(task: str, use_cpu: list[str], device_id: str | None = None) -> torch.device:
    """CPU if the task (or 'all') is listed in --use-cpu, else the best device."""
    if "all" in use_cpu or task in use_cpu:
        return cpu
    return torch.device(get_optimal_device_name(device_id))


def configure(cmd_opts: Any) -> None:
    """Choose devices and dtypes from the flags: fp16 (bf16 with --bf16) on CUDA unless --no-half / --precision
    full, fp32 on CPU."""
    global device, device_interrogate, device_gfpgan, device_esrgan, device_codeformer
    global dtype, dtype_vae, dtype_unet, dtype_inference, unet_needs_upcast, nan_check_enabled

    use_cpu = list(getattr(cmd_opts, "use_cpu", []) or [])
    device_id = getattr(cmd_opts, "device_id", None)
    device = get_device_for("sd", use_cpu, device_id)
    device_interrogate = get_device_for("interrogate", use_cpu, device_id)
    device_gfpgan = get_device_for("gfpgan", use_cpu, device_id)
    device_esrgan = get_device_for("esrgan", use_cpu, device_id)
    device_codeformer = get_device_for("codeformer", use_cpu, device_id)

    half_capable = device.type in ("cuda", "mps")
    full = getattr(cmd_opts, "no_half", False) or getattr(cmd_opts, "precision", "autocast") == "full"
    half = torch.bfloat16 if getattr(cmd_opts, "bf16", False) else torch.float16
    dtype = half if half_capable and not full else torch.float32
    dtype_unet = dtype
    no_half_vae = full or getattr(cmd_opts, "no_half_vae", False)
    dtype_vae = half if half_capable and not no_half_vae else torch.float32
    # --upcast-sampling: keep the UNet in half precision but sample in fp32 (no effect with --no-half).
    unet_needs_upcast = bool(getattr(cmd_opts, "upcast_sampling", False)) and dtype_unet != torch.float32
    dtype_inference = torch.float32 if unet_needs_upcast else dtype
    nan_check_enabled = not getattr(cmd_opts, "disable_nan_check", False)

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    log.info("Device: %s, dtype: %s, VAE dtype: %s", device, dtype, dtype_vae)


def torch_gc() -> None:
    """Give freed memory back: the CUDA caching allocator's unused blocks and glibc's heap (which otherwise keeps
    the pages of a freed model, so the process would grow with every checkpoint switch).

    No `gc.collect()` here: with the ML libraries loaded a full collection takes 0.2-0.8 s, and this runs after every
    image (and extensions call it freely, A1111's is cheap). Code that drops objects held in reference cycles (a
    model) calls `gc.collect()` first."""
    if has_cuda():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    if _libc is not None:
        _libc.malloc_trim(0)


_permanent_frozen = False


def freeze_permanent_objects() -> None:
    """Move every object alive now (imported libraries: ~400k objects) out of the garbage collector's reach, once,
    before the first model is loaded. They live as long as the process anyway, and a full collection (needed to
    free a model on a checkpoint switch) then scans only what was created since: milliseconds instead of 0.2-0.8 s."""
    global _permanent_frozen
    if _permanent_frozen:
        return
    gc.collect()
    gc.freeze()
    _permanent_frozen = True


def cond_cast_unet(x: torch.Tensor) -> torch.Tensor:
    return x.to(dtype_unet) if unet_needs_upcast else x


def cond_cast_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if unet_needs_upcast else x


@contextlib.contextmanager
def autocast(disable: bool = False):
    """fp16 autocast on CUDA when the model is half and sampling is not upcast; a no-op otherwise."""
    if disable or dtype == torch.float32 or device.type != "cuda" or unet_needs_upcast:
        yield
        return
    with torch.autocast("cuda", dtype=dtype):
        yield


def without_autocast(disable: bool = False):
    if torch.is_autocast_enabled() and not disable:
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


_NAN_MESSAGES = {
    "unet": (
        "A tensor with NaNs was produced in Unet.",
        " This could be either because there's not enough precision to represent the picture, or because your "
        "video card does not support half type. Try setting the \"Upcast cross attention layer to float32\" "
        "option in Settings > Stable Diffusion or using the --no-half commandline argument to fix this.",
    ),
    "vae": (
        "A tensor with NaNs was produced in VAE.",
        " This could be because there's not enough precision to represent the picture. Try adding --no-half-vae "
        "commandline argument to fix this.",
    ),
}


def test_for_nans(x: torch.Tensor, where: str) -> None:
    """Raise NansException if the tensor is all NaN (A1111 checks one element; we check the whole tensor)."""
    if not nan_check_enabled:
        return
    if not torch.isnan(x).all():
        return
    head, advice = _NAN_MESSAGES.get(where, (f"A tensor with NaNs was produced in {where}.", ""))
    half = {"unet": dtype_unet, "vae": dtype_vae}.get(where, dtype) != torch.float32
    message = head + (advice if half else "") + " Use --disable-nan-check commandline argument to disable this check."
    raise NansException(message)


def first_time_calculation() -> None:
    """Warm up the allocator with a tiny op so the first real step does not pay for it."""
    x = torch.zeros((1, 1)).to(device, dtype)
    torch.nn.functional.linear(x, torch.zeros((1, 1)).to(device, dtype))
