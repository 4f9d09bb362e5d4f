"""Checkpoints: discovery, titles and hashes, lookup by name or hash, loading and switching.

A1111's surface (`CheckpointInfo`, `checkpoints_list`, `checkpoint_aliases`, `list_models`, `checkpoint_tiles`,
`get_closet_checkpoint_match`, `select_checkpoint`, `load_model`, `reload_model_weights`, `model_data`) over the
loading code in model_detection / model_builder / sd_model.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from typing import Any

import torch

from modules import attention, devices, hashes, lowvram, model_files, paths, sd_speed, shared
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

model_dir = "Stable-diffusion"
model_path = os.path.abspath(os.path.join(paths.models_path, model_dir))
CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors")
VAE_SUFFIXES = (".vae.ckpt", ".vae.safetensors", ".vae.pt")

checkpoints_list: dict[str, CheckpointInfo] = {}
checkpoint_aliases: dict[str, CheckpointInfo] = {}
checkpoint_alisases = checkpoint_aliases  # A1111's historical misspelling, used by extensions

re_strip_checksum = re.compile(r"\s*\[[^]]+]\s*$")


def ckpt_dirs() -> list[str]:
    dirs = [model_path]
    if shared.cmd_opts.ckpt_dir:
        dirs.append(os.path.abspath(shared.cmd_opts.ckpt_dir))
    return dirs


class CheckpointInfo:
    """One checkpoint file. `title` is `name [shorthash]` once the sha256 is known, else `name`."""

    def __init__(self, filename: str):
        self.filename = os.path.abspath(filename)
        ckpt_dir = shared.cmd_opts.ckpt_dir
        if ckpt_dir and self.filename.startswith(os.path.abspath(ckpt_dir) + os.sep):
            name = os.path.relpath(self.filename, os.path.abspath(ckpt_dir))
        elif self.filename.startswith(model_path + os.sep):
            name = os.path.relpath(self.filename, model_path)
        else:
            name = os.path.basename(self.filename)
        if name.startswith(("\\", "/")):
            name = name[1:]
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(name))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.is_safetensors = self.filename.lower().endswith(".safetensors")
        self.hash = hashes.model_hash(self.filename)
        self.sha256 = hashes.sha256_from_cache(self.filename, f"checkpoint/{name}")
        self.shorthash = self.sha256[:10] if self.sha256 else None
        self.title = name if self.shorthash is None else f"{name} [{self.shorthash}]"
        self.short_title = self.name_for_extra if self.shorthash is None else f"{self.name_for_extra} [{self.shorthash}]"
        self.metadata: dict[str, str] = {}
        if self.is_safetensors:
            try:
                self.metadata = model_files.read_metadata(self.filename)
            except UserError as e:
                log.warning("%s", e)
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f"{name} [{self.hash}]"]
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                         f"{self.name_for_extra} [{self.shorthash}]"]

    def register(self) -> None:
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self

    def calculate_shorthash(self) -> str | None:
        """Compute (and cache) the sha256; re-register under the new title. None with --no-hashing."""
        self.sha256 = hashes.sha256(self.filename, f"checkpoint/{self.name}", no_hashing=shared.cmd_opts.no_hashing)
        if self.sha256 is None:
            return None
        shorthash = self.sha256[:10]
        if self.shorthash == shorthash:
            return shorthash
        self.shorthash = shorthash
        old_title = self.title
        self.title = f"{self.name} [{self.shorthash}]"
        self.short_title = f"{self.name_for_extra} [{self.shorthash}]"
        self.ids += [self.shorthash, self.sha256, f"{self.name} [{self.shorthash}]",
                     f"{self.name_for_extra} [{self.shorthash}]"]
        # Re-key under the new title without moving the entry in the list.
        items = [(self.title if k == old_title else k, v) for k, v in checkpoints_list.items()]
        checkpoints_list.clear()
        checkpoints_list.update(items)
        self.register()
        return self.shorthash

    def __repr__(self) -> str:
        return f"CheckpointInfo({self.title!r})"


def _walk(folder: str, extensions: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    if not os.path.isdir(folder):
        return []
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        if not shared.opts.list_hidden_files:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for fn in files:
            low = fn.lower()
            if low.endswith(extensions) and not low.endswith(exclude):
                found.append(os.path.join(root, fn))
    return sorted(found, key=lambda p: p.lower())


def list_models() -> None:
    """Rescan the checkpoint folders (recursively) and --ckpt."""
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    files = []
    cmd_ckpt = shared.cmd_opts.ckpt
    if cmd_ckpt and os.path.isfile(cmd_ckpt):
        files.append(os.path.abspath(cmd_ckpt))
    elif cmd_ckpt and cmd_ckpt != paths.sd_model_file:
        log.warning("Checkpoint %s given by --ckpt was not found.", cmd_ckpt)
    for folder in ckpt_dirs():
        files += [f for f in _walk(folder, CHECKPOINT_EXTENSIONS, VAE_SUFFIXES) if f not in files]
    for filename in files:
        CheckpointInfo(filename).register()


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    return [x.short_title if use_short else x.title for x in checkpoints_list.values()]


def get_closet_checkpoint_match(search_string: str) -> CheckpointInfo | None:
    """Exact alias (title, name, stem, hashes) → shortest title containing the string → same without [hash]."""
    if not search_string:
        return None
    info = checkpoint_aliases.get(search_string)
    if info is not None:
        return info
    found = sorted((i for i in checkpoints_list.values() if search_string in i.title), key=lambda i: len(i.title))
    if found:
        return found[0]
    bare = re_strip_checksum.sub("", search_string)
    found = sorted((i for i in checkpoints_list.values() if bare in i.title), key=lambda i: len(i.title))
    return found[0] if found else None


def find_checkpoint(search_string: str) -> CheckpointInfo:
    """Like get_closet_checkpoint_match, but a miss is a clear error listing what exists."""
    info = get_closet_checkpoint_match(search_string)
    if info is None:
        known = ", ".join(checkpoint_tiles()[:10]) or "none"
        raise NotFoundError(f"Checkpoint '{search_string}' not found. Available: {known}.")
    return info


def no_checkpoints_message() -> str:
    folders = [model_path] + ([os.path.abspath(shared.cmd_opts.ckpt_dir)] if shared.cmd_opts.ckpt_dir else [])
    return (
        "No checkpoints found. When searching for checkpoints, looked at: "
        + "; ".join(folders)
        + ". Find and place a .ckpt or .safetensors file into any of those locations."
    )


def select_checkpoint() -> CheckpointInfo:
    """The checkpoint named by the setting, else the first one; UserError when there is none."""
    info = checkpoint_aliases.get(shared.opts.sd_model_checkpoint or "")
    if info is not None:
        return info
    if not checkpoints_list:
        raise UserError(no_checkpoints_message())
    first = next(iter(checkpoints_list.values()))
    if shared.opts.sd_model_checkpoint:
        log.warning("Checkpoint %s not found; loading fallback %s", shared.opts.sd_model_checkpoint, first.title)
    return first


def model_hash(filename: str) -> str:
    return hashes.model_hash(filename)


class ModelData:
    """The loaded models (most recent last) and which one is current."""

    def __init__(self) -> None:
        self.sd_model: Any = None
        self.loaded_sd_models: list[Any] = []
        self.lock = threading.RLock()
        self.load_error: str | None = None

    def get_sd_model(self) -> Any:
        if self.sd_model is None and not shared.cmd_opts.ui_debug_mode:
            with self.lock:
                if self.sd_model is None:
                    load_model()
        return self.sd_model

    def set_sd_model(self, model: Any) -> None:
        self.sd_model = model
        if model is not None and model in self.loaded_sd_models:
            self.loaded_sd_models.remove(model)
        if model is not None:
            self.loaded_sd_models.append(model)


model_data = ModelData()


def read_state_dict(checkpoint_file: str) -> dict[str, torch.Tensor]:
    return model_files.read_state_dict(checkpoint_file, device="cpu", allow_unsafe=shared.cmd_opts.disable_safe_unpickle)


def _inspect(info: CheckpointInfo, state_dict: dict[str, torch.Tensor]):
    """Family and dimensions of a checkpoint; raises UserError for anything this program cannot load."""
    from modules import model_detection

    model_detection.normalize_state_dict(state_dict)
    return model_detection.resolve_spec(state_dict, info.filename)


def _build(info: CheckpointInfo, state_dict: dict[str, torch.Tensor], spec):
    from modules import conditioning, model_builder
    from modules.sd_model import StableDiffusionModel, make_alphas_cumprod

    unet = model_builder.build_unet(state_dict, spec.unet_config)
    vae = model_builder.build_vae(model_builder.vae_state_dict_from_checkpoint(state_dict), spec.vae_config)
    encoders = [conditioning.TextEncoder(model_builder.build_text_encoder(state_dict, te), te)
                for te in spec.text_encoders]
    cond = conditioning.Conditioner(encoders, spec.family, spec.unet_config.get("addition_time_embed_dim", 256))
    alphas = state_dict.get("alphas_cumprod")
    alphas = alphas.float() if alphas is not None and alphas.shape == (1000,) else make_alphas_cumprod(
        spec.linear_start, spec.linear_end)
    if not spec.prediction_known:
        spec.prediction = "v" if is_v_prediction_sd2(unet, spec) else "eps"
        spec.prediction_known = True
        log.info("SD2 model %s detected as %s-prediction", info.name, spec.prediction)
    model = StableDiffusionModel(spec, unet, vae, cond, alphas)
    model.eval().requires_grad_(False)
    return model


@torch.no_grad()
def is_v_prediction_sd2(unet, spec) -> bool:
    """A1111's test: on a constant input at t=999 a v-model's output is far below its input."""
    x = torch.ones((1, unet.config.in_channels, 8, 8)) * 0.5
    context = torch.ones((1, 77, spec.unet_config["cross_attention_dim"])) * 0.5
    out = unet(x.to(unet.dtype), torch.tensor([999]), encoder_hidden_states=context.to(unet.dtype)).sample
    return (out.float() - x[:, :out.shape[1]]).mean().item() < -1


def load_model(checkpoint_info: CheckpointInfo | None = None) -> Any:
    """Load a checkpoint (or reuse it if already loaded), make it current, keep at most sd_checkpoints_limit."""
    from modules import conditioning, script_callbacks, sd_vae

    checkpoint_info = checkpoint_info or select_checkpoint()
    with model_data.lock:
        for model in list(model_data.loaded_sd_models):
            if model.sd_checkpoint_info.filename == checkpoint_info.filename:
                _activate(model)
                return model

        t0 = time.perf_counter()
        if not os.path.isfile(checkpoint_info.filename):
            raise NotFoundError(f"Checkpoint file {checkpoint_info.filename} no longer exists; refresh the list.")
        state_dict = read_state_dict(checkpoint_info.filename)
        spec = _inspect(checkpoint_info, state_dict)
        t_read = time.perf_counter()
        # Make room before building: peak memory of one model, not two. A file that cannot be loaded has been
        # refused above, before anything was dropped; if building still fails, the previous model comes back.
        previous = [m.sd_checkpoint_info for m in model_data.loaded_sd_models]
        if not previous:
            devices.freeze_permanent_objects()
        _free_room_for_one()
        try:
            model = _build(checkpoint_info, state_dict, spec)
        except Exception:
            del state_dict
            _restore_after_failure(previous)
            raise
        del state_dict
        checkpoint_info.calculate_shorthash()
        model.sd_checkpoint_info = checkpoint_info
        model.sd_model_checkpoint = checkpoint_info.filename
        model.sd_model_hash = checkpoint_info.shorthash or checkpoint_info.hash
        model.base_vae_state = {k: v for k, v in model.first_stage_model.state_dict().items()}
        offload = lowvram.wanted(shared.cmd_opts, model)
        model.to_devices(move=offload is None)
        if offload:
            lowvram.setup(model, offload == "lowvram")
        attention.apply(model)
        sd_speed.apply(model)
        t_build = time.perf_counter()

        model_data.set_sd_model(model)
        _activate(model)
        sd_vae.reload_vae_weights(model)
        model.cond_stage_model_empty_prompt = conditioning.empty_prompt_conditioning(model)
        log.info("Loaded %s in %.2fs (read %.2fs, build %.2fs)", checkpoint_info.title, time.perf_counter() - t0,
                 t_read - t0, t_build - t_read)
        script_callbacks.model_loaded_callback(model)
        return model


def _restore_after_failure(previous: list[CheckpointInfo]) -> None:
    if model_data.sd_model is not None or not previous:
        return
    try:
        log.warning("Loading failed; going back to %s", previous[-1].title)
        load_model(previous[-1])
    except Exception as e:  # the original error is the one to report
        log.error("Could not reload %s either: %s", previous[-1].title, e)


def _activate(model: Any) -> None:
    model_data.set_sd_model(model)
    info = model.sd_checkpoint_info
    shared.opts.data["sd_model_checkpoint"] = info.title
    shared.opts.data["sd_checkpoint_hash"] = info.sha256 or ""


def _free_room_for_one() -> None:
    """Drop the oldest loaded models so that one more fits within sd_checkpoints_limit."""
    limit = max(1, int(shared.opts.sd_checkpoints_limit))
    while len(model_data.loaded_sd_models) >= limit:
        old = model_data.loaded_sd_models.pop(0)
        if model_data.sd_model is old:
            model_data.sd_model = None
        log.info("Unloading %s", old.sd_checkpoint_info.title)
        del old
    gc.collect()
    devices.torch_gc()


def reload_model_weights(sd_model: Any = None, info: CheckpointInfo | None = None, forced_reload: bool = False) -> Any:
    """Switch to `info` (default: the setting). On failure the previous model stays current."""
    info = info or select_checkpoint()
    current = model_data.sd_model
    if current is not None and not forced_reload and current.sd_checkpoint_info.filename == info.filename:
        return current
    if forced_reload and current is not None:
        unload_model_weights(current)
    try:
        return load_model(info)
    except Exception:
        if current is not None and current in model_data.loaded_sd_models:
            _activate(current)
        raise


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    model = sd_model or model_data.sd_model
    if model is None:
        return
    if model in model_data.loaded_sd_models:
        model_data.loaded_sd_models.remove(model)
    if model_data.sd_model is model:
        model_data.sd_model = None
    gc.collect()
    devices.torch_gc()


def apply_checkpoint_setting() -> None:
    """onchange of sd_model_checkpoint: load what the setting names (by title, name or hash)."""
    title = shared.opts.sd_model_checkpoint
    if not title:
        return
    info = find_checkpoint(title)
    reload_model_weights(info=info)
