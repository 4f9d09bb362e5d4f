"""VAEs: discovery, which one a checkpoint uses, loading one into the model, and decoding with NaN fallback.

Resolution order for a checkpoint (A1111's): --vae-path → the sd_vae setting when it overrides per-model
preferences → the `vae` field of the checkpoint's .json side-car → a VAE whose file name starts with the
checkpoint's stem (`model.vae.safetensors`) → the setting → the checkpoint's own (baked) VAE.
"""

from __future__ import annotations

import json
import logging
import os
import re

import torch

from modules import devices, hashes, model_files, paths, shared, vae_tiling
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

vae_path = os.path.abspath(os.path.join(paths.models_path, "VAE"))
vae_dict: dict[str, str] = {}
unspecified = object()
loaded_vae_file: str | None = None
VAE_EXTENSIONS = (".ckpt", ".pt", ".safetensors")
NEAR_CHECKPOINT_SUFFIXES = (".vae.ckpt", ".vae.pt", ".vae.safetensors")


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def refresh_vae_list() -> None:
    from modules import sd_models

    vae_dict.clear()
    candidates: list[str] = []
    for folder in sd_models.ckpt_dirs():
        candidates += sd_models._walk(folder, NEAR_CHECKPOINT_SUFFIXES)
    for folder in [vae_path] + ([os.path.abspath(shared.cmd_opts.vae_dir)] if shared.cmd_opts.vae_dir else []):
        candidates += sd_models._walk(folder, VAE_EXTENSIONS)
    for filepath in candidates:
        vae_dict[os.path.basename(filepath)] = filepath
    sorted_items = sorted(vae_dict.items(), key=lambda item: _natural_key(item[0]))
    vae_dict.clear()
    vae_dict.update(sorted_items)


def find_vae_near_checkpoint(checkpoint_file: str) -> str | None:
    stem = os.path.basename(checkpoint_file).rsplit(".", 1)[0]
    for vae_file in vae_dict.values():
        if os.path.basename(vae_file).startswith(stem + ".") and os.path.basename(vae_file).lower().endswith(
                NEAR_CHECKPOINT_SUFFIXES):
            return vae_file
    return None


def _vae_from_sidecar(checkpoint_file: str) -> str | None:
    sidecar = os.path.splitext(checkpoint_file)[0] + ".json"
    try:
        with open(sidecar, encoding="utf-8") as f:
            name = json.load(f).get("vae")
    except (OSError, ValueError, AttributeError):
        return None
    return vae_dict.get(name) if name else None


def resolve_vae(checkpoint_file: str) -> tuple[str | None, str]:
    """(VAE file or None for the baked one, where the choice came from)."""
    if shared.cmd_opts.vae_path:
        return os.path.abspath(shared.cmd_opts.vae_path), "from commandline argument"
    setting = shared.opts.sd_vae
    if shared.opts.sd_vae_overrides_per_model_preferences and setting != "Automatic":
        return _setting_file(setting), "specified in settings"
    sidecar = _vae_from_sidecar(checkpoint_file)
    if sidecar:
        return sidecar, "from metadata"
    near = find_vae_near_checkpoint(checkpoint_file)
    if near:
        return near, "found near " + os.path.basename(checkpoint_file)
    if setting not in ("Automatic", "None"):
        return _setting_file(setting), "specified in settings"
    return None, "baked into the checkpoint"


def _setting_file(setting: str) -> str | None:
    if setting == "None":
        return None
    if setting not in vae_dict:
        raise NotFoundError(f"VAE '{setting}' not found in {vae_path}. Available: {', '.join(vae_dict) or 'none'}.")
    return vae_dict[setting]


def load_vae_dict(filename: str) -> dict[str, torch.Tensor]:
    """A VAE file's tensors in LDM layout (prefix stripped; EMA and loss weights dropped)."""
    sd = model_files.read_state_dict(filename, device="cpu", allow_unsafe=shared.cmd_opts.disable_safe_unpickle)
    prefix = "first_stage_model."
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in sd.items() if not k.startswith(("loss", "model_ema"))}


def load_vae(model, vae_file: str | None, source: str = "") -> None:
    """Put the VAE of `vae_file` (or the checkpoint's own, for None) into the model; on mismatch raise and
    keep the current VAE."""
    global loaded_vae_file
    vae = model.first_stage_model
    if vae_file is None:
        state = model.base_vae_state
    else:
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        try:
            state = convert_ldm_vae_checkpoint(load_vae_dict(vae_file), dict(vae.config))
        except (KeyError, IndexError) as e:
            raise UserError(
                f"{os.path.basename(vae_file)} is not a VAE for this model (missing {e}). Choose another VAE."
            ) from e
        expected = vae.state_dict()
        bad = [k for k, v in expected.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
        if bad:
            raise UserError(
                f"{os.path.basename(vae_file)} does not fit the model "
                f"{model.sd_checkpoint_info.name if model.sd_checkpoint_info else ''}: {len(bad)} tensors differ "
                f"(e.g. {bad[0]}). Choose a VAE made for this model family, or 'Automatic'."
            )
    with torch.no_grad():
        for key, param in vae.state_dict().items():
            param.copy_(state[key].to(param.dtype))
    model.loaded_vae_file = vae_file
    loaded_vae_file = vae_file
    log.info("VAE: %s%s", os.path.basename(vae_file) if vae_file else "baked", f" ({source})" if source else "")


def reload_vae_weights(sd_model=None, vae_file=unspecified) -> None:
    """Apply the resolved VAE (or the given file) to the model if it differs from the loaded one."""
    model = sd_model or shared.sd_model
    if model is None:
        return
    if vae_file is unspecified:
        vae_file, source = resolve_vae(model.sd_checkpoint_info.filename)
    else:
        source = "requested"
    if vae_file == model.loaded_vae_file:
        return
    load_vae(model, vae_file, source)


def vae_name_and_hash(model) -> tuple[str | None, str | None]:
    """For the infotext: the external VAE's file name and short hash, or (None, None) for the baked one."""
    vae_file = getattr(model, "loaded_vae_file", None)
    if not vae_file:
        return None, None
    name = os.path.basename(vae_file)
    sha = hashes.sha256(vae_file, f"vae/{name}", no_hashing=shared.cmd_opts.no_hashing)
    return name, sha[:10] if sha else None


def _decode(model, latents: torch.Tensor, tiles: bool) -> torch.Tensor:
    if not tiles:
        return model.decode_first_stage(latents)
    vae = model.first_stage_model
    tile = vae_tiling.tile_cells(int(shared.opts.sd_vae_tile_size), vae)
    return vae_tiling.decode(model.decode_first_stage, latents, tile, vae_tiling.vae_scale(vae))


def _decode_fitting(model, latents: torch.Tensor) -> torch.Tensor:
    """Whole image unless the tiling setting says otherwise; a whole-image decode that runs out of memory is
    retried in tiles instead of failing the generation."""
    tiles = vae_tiling.wanted(shared.opts, latents, model.first_stage_model)
    try:
        return _decode(model, latents, tiles)
    except torch.OutOfMemoryError:
        if tiles:
            raise
    # Outside the except block: the failed attempt's tensors are freed before the retry.
    scale = vae_tiling.vae_scale(model.first_stage_model)
    log.warning("Out of memory decoding a %dx%d image with the VAE; retrying in tiles of %d pixels.",
                latents.shape[-1] * scale, latents.shape[-2] * scale, shared.opts.sd_vae_tile_size)
    devices.torch_gc()
    return _decode(model, latents, True)


def _nan_fallback_dtype() -> tuple[torch.dtype, str, str] | None:
    """The dtype to retry an all-NaN decode in, A1111's order: bfloat16 if asked for, else float32."""
    if shared.opts.auto_vae_precision_bfloat16:
        return torch.bfloat16, "bfloat16", "Automatically convert VAE to bfloat16"
    if shared.opts.auto_vae_precision:
        return torch.float32, "32-bit float", "Automatically revert VAE to 32-bit floats"
    return None


def decode_latents(model, latents: torch.Tensor) -> torch.Tensor:
    """Latents → images in [0, 1], float32 on the CPU. All-NaN output retries in bfloat16 or float32
    (auto_vae_precision_bfloat16 / auto_vae_precision; the VAE stays in that dtype afterwards, as A1111), else
    raises with the --no-half-vae advice. Large images are decoded in tiles when the setting asks for it."""
    with torch.no_grad():
        try:
            x = _decode_fitting(model, latents)
            devices.test_for_nans(x, "vae")
        except devices.NansException:
            fallback = _nan_fallback_dtype()
            if fallback is None or devices.dtype_vae in (torch.float32, fallback[0]):
                raise
            dtype, name, setting = fallback
            advice = " To always start with 32-bit VAE, use --no-half-vae commandline flag." if name != "bfloat16" else ""
            log.warning(
                "A tensor with all NaNs was produced in VAE. Web UI will now convert VAE into %s and retry. To "
                "disable this behavior, disable the '%s' setting.%s", name, setting, advice
            )
            devices.dtype_vae = dtype
            model.first_stage_model.to(dtype)
            x = _decode_fitting(model, latents)
            devices.test_for_nans(x, "vae")
    return torch.clamp((x.float() + 1.0) / 2.0, 0.0, 1.0).cpu()


def encode_latents(model, x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (B,3,H,W) → scaled latents, one image at a time (peak memory of one encode). The
    posterior's mean is used, so the same image always gives the same latent."""
    with torch.no_grad():
        vae = model.first_stage_model
        x = x.to(vae.device, vae.dtype)
        return torch.cat([model.get_first_stage_encoding(model.encode_first_stage(x[i:i + 1]))
                          for i in range(x.shape[0])])


def encode_images(model, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (B,3,H,W) → scaled latents (see `encode_latents`)."""
    return encode_latents(model, images.to(model.first_stage_model.dtype) * 2 - 1)
