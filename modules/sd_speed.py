"""Speed options applied to a loaded model: channels_last (--opt-channelslast) and torch.compile of the UNet.

torch.compile (setting `unet_compile` in Settings > Optimizations, or --torch-compile MODE) compiles the UNet in
place (`nn.Module.compile`): parameter names, `state_dict()` and the module tree stay as they are, and the weights
stay inputs of the compiled graph rather than constants baked into it, so patching them in place (LoRA) takes
effect at once without a recompile. Compiled artifacts (inductor's FX graph, AOTAutograd and autotuning caches) go
to `<data dir>/cache/torch-compile`, so a second launch reuses them instead of compiling from scratch.

Modes: "default" (inductor kernels, shapes become dynamic after the first new size), "max-autotune-no-cudagraphs"
(autotuned kernels), and the CUDA-graph modes "reduce-overhead" and "max-autotune", which compile for static shapes:
each new size or batch compiles once more, and then a whole UNet call is one graph launch (batch 1 on a fast GPU is
launch-bound, so this is where most of the speed-up is). "Regional" compiles only the repeated transformer blocks:
seconds instead of minutes, for part of the gain. A compile that fails (no C++ compiler, unsupported op) falls back
to eager execution with a logged error rather than failing the generation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from modules import paths_internal

log = logging.getLogger(__name__)

COMPILE_CHOICES = ["Disable", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
CUDAGRAPH_MODES = {"reduce-overhead", "max-autotune"}
# Sizes × batch shapes (CFG on/off) a user cycles through before dynamo gives up and runs eagerly.
RECOMPILE_LIMIT = 32


@dataclass(frozen=True)
class CompileRequest:
    mode: str
    regional: bool = False
    backend: str = "inductor"

    def describe(self) -> str:
        return f"{self.mode}{' (regional)' if self.regional else ''}"


def requested(cmd_opts: Any, opts: Any) -> CompileRequest | None:
    """What the flag (which wins) or the settings ask for; None when compiling is off."""
    mode = getattr(cmd_opts, "torch_compile", None) or getattr(opts, "unet_compile", "Disable")
    if not mode or mode == "Disable":
        return None
    if mode not in COMPILE_CHOICES:
        log.warning(
            "Unknown torch.compile mode %r; using 'default'. Choose one of %s.", mode, ", ".join(COMPILE_CHOICES[1:])
        )
        mode = "default"
    regional = bool(getattr(cmd_opts, "torch_compile_regional", False) or getattr(opts, "unet_compile_regional", False))
    return CompileRequest(mode, regional)


def cache_dir() -> str:
    return os.path.join(paths_internal.data_path, "cache", "torch-compile")


def configure_cache() -> str:
    """Point inductor's on-disk caches at the data dir (unless the user set TORCHINDUCTOR_CACHE_DIR) and keep them
    on. Must run before the first compile: inductor reads the variable once."""
    path = os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cache_dir())
    os.makedirs(path, exist_ok=True)
    import torch._dynamo.config
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = True
    torch._inductor.config.autotune_local_cache = True
    torch._functorch.config.enable_autograd_cache = True
    # Freezing would fold the weights into the graph as constants: LoRA patches would be silently ignored.
    torch._inductor.config.freezing = False
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    # A broken toolchain or an unsupported op must cost speed, not the generation.
    torch._dynamo.config.suppress_errors = True
    return path


def _compiled_modules(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]


def is_compiled(unet: torch.nn.Module) -> bool:
    return bool(_compiled_modules(unet))


def uncompile(unet: torch.nn.Module) -> None:
    """Back to eager execution. `nn.Module.compile` keeps its compiled callable in `_compiled_call_impl`."""
    for module in _compiled_modules(unet):
        module._compiled_call_impl = None


def compile_unet(unet: torch.nn.Module, request: CompileRequest) -> None:
    """Compile `unet` in place (whole model, or its repeated transformer blocks for a regional compile)."""
    configure_cache()
    uncompile(unet)
    options: dict[str, Any] = {"backend": request.backend}
    if request.backend == "inductor":
        options["mode"] = request.mode
    # CUDA graphs need static shapes; without them dynamic shapes spare a full recompile at every new size.
    options["dynamic"] = False if request.mode in CUDAGRAPH_MODES else None
    if request.regional:
        unet.compile_repeated_blocks(**options)
    else:
        unet.compile(**options)
    log.info(
        "UNet will be compiled with torch.compile (%s) on first use; cache: %s",
        request.describe(),
        os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    )


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Run everything compiled eagerly inside the block (the benchmark's plain-diffusers baseline)."""
    with torch.compiler.set_stance("force_eager"):
        yield


def apply(model: Any, cmd_opts: Any = None, opts: Any = None) -> CompileRequest | None:
    """Apply --opt-channelslast and the compile setting to a loaded StableDiffusionModel; returns the compile
    request in effect (None: eager)."""
    from modules import shared

    cmd_opts = cmd_opts if cmd_opts is not None else shared.cmd_opts
    opts = opts if opts is not None else shared.opts
    if getattr(cmd_opts, "opt_channelslast", False):
        # NHWC convolutions are faster on tensor cores, most of all once compiled.
        model.unet.to(memory_format=torch.channels_last)
    request = requested(cmd_opts, opts)
    if request is not None and getattr(model, "offloader", None) is not None:
        # --medvram/--lowvram move weights between devices inside the UNet call: every move would recompile.
        log.warning("torch.compile is not used with --medvram/--lowvram; the UNet runs eagerly.")
        request = None
    if request is None:
        uncompile(model.unet)
    else:
        compile_unet(model.unet, request)
    model.compile_request = request
    return request


def reapply_to_loaded() -> None:
    """onchange of the compile settings: recompile (or uncompile) the models already loaded."""
    from modules import sd_models

    for model in list(sd_models.model_data.loaded_sd_models):
        apply(model)
