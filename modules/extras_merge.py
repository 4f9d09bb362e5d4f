"""Checkpoint merger: A1111's Checkpoint Merger (`modules/extras.run_modelmerger`, a1111-spec §1.7) with
block-weighted merging built in (modules/merge_blocks.py).

Methods: "No interpolation" (A only: format conversion, fp16, VAE baking), "Weighted sum" A·(1−M) + B·M,
"Add difference" A + (B − C)·M. As in A1111 only keys containing "model" are merged, each in the dtype of its
inputs; A's keys make up the result (keys missing from B stay A's); an inpainting (9 input channels) or
instruct-pix2pix (8) A merges with a 4-channel B in its first 4 channels. Then a VAE is baked in, float32 tensors
become float16 if asked (in "No interpolation" all of them, otherwise the merged ones), and weights whose name
matches the discard regex are dropped. With block weights, UNet keys of each block use that block's multiplier and
M is the base alpha for the rest.

Memory: the inputs are read one tensor at a time and a .safetensors result is written tensor by tensor, so
peak memory is a few tensors, not models (a .ckpt result is built in memory first: torch.save needs the whole
dict). The result is written atomically into the checkpoint folder, gets A's same-stem .yaml (by default), and
is in the checkpoint list when this returns.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from modules import fileio, merge_blocks, model_detection, paths_internal, sd_models, sd_vae, shared, tensor_stream
from modules.errors import NotFoundError, UserError

log = logging.getLogger(__name__)

INTERP_METHODS = ("No interpolation", "Weighted sum", "Add difference")
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
CHECKPOINT_FORMATS = ("ckpt", "safetensors")
checkpoint_dict_skip_on_merge = ["cond_stage_model.transformer.text_model.embeddings.position_ids"]

_FAMILY_MARKERS = (
    ("conditioner.embedders.1.model.ln_final.weight", "sdxl"),
    ("conditioner.embedders.0.model.ln_final.weight", "sdxl-refiner"),
    ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", "sd2"),
    ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", "sd1"),
)


def weighted_sum(theta0: torch.Tensor, theta1: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((1 - alpha) * theta0) + (alpha * theta1)


def get_difference(theta1: torch.Tensor, theta2: torch.Tensor) -> torch.Tensor:
    return theta1 - theta2


def add_difference(theta0: torch.Tensor, theta1_2_diff: torch.Tensor, alpha: float) -> torch.Tensor:
    return theta0 + (alpha * theta1_2_diff)


def to_half(tensor: torch.Tensor, enable: bool) -> torch.Tensor:
    if enable and tensor.dtype == torch.float:
        return tensor.half()
    return tensor


@dataclass
class MergeInput:
    """One input checkpoint, opened for reading tensor by tensor; keys in A1111's current layout."""

    role: str
    info: sd_models.CheckpointInfo
    source: tensor_stream.TensorSource
    names: dict[str, str]
    """Key in A1111's layout → name in the file (old SD1 files name their CLIP keys differently)."""
    meta: dict[str, torch.Tensor]
    family: str

    def get(self, key: str) -> torch.Tensor:
        return self.source.get(self.names[key])


def family_of(meta: dict[str, torch.Tensor], filename: str) -> str:
    """sd1 / sd2 / sdxl / sdxl-refiner from the key layout; UserError (with a hint) for anything else."""
    if model_detection.UNET_IN_KEY in meta:
        for marker, family in _FAMILY_MARKERS:
            if marker in meta:
                return family
    model_detection.detect_family(meta, filename)  # raises its explanation (a LoRA, a VAE, no text encoder, ...)
    raise UserError(f"{os.path.basename(filename)} is not a checkpoint this merger knows.")


def open_input(role: str, info: sd_models.CheckpointInfo) -> MergeInput:
    source = tensor_stream.TensorSource(info.filename, allow_unsafe=shared.cmd_opts.disable_safe_unpickle)
    try:
        meta = source.meta()
        original = {id(t): name for name, t in meta.items()}
        model_detection.normalize_state_dict(meta)  # renames keys in place; the meta tensors stay the same objects
        names = {key: original[id(t)] for key, t in meta.items()}
        return MergeInput(role, info, source, names, meta, family_of(meta, info.filename))
    except BaseException:
        source.close()
        raise


def _find(name: str | None, role: str) -> sd_models.CheckpointInfo:
    info = sd_models.get_closet_checkpoint_match(name or "")
    if info is None:
        if not sd_models.checkpoints_list:
            sd_models.list_models()
            info = sd_models.get_closet_checkpoint_match(name or "")
    if info is None:
        known = ", ".join(sd_models.checkpoint_tiles()[:10]) or "none"
        raise NotFoundError(f"Checkpoint merger: {role} '{name}' not found. Available: {known}.")
    if not os.path.isfile(info.filename):
        raise NotFoundError(f"Checkpoint merger: {role} file {info.filename} no longer exists; refresh the list.")
    return info


def _parse_json_values(metadata: dict[str, str]) -> dict[str, Any]:
    """A1111 reads metadata values that look like JSON objects as objects (sd_merge_recipe, sd_merge_models)."""
    parsed: dict[str, Any] = {}
    for key, value in metadata.items():
        parsed[key] = value
        if isinstance(value, str) and value[:1] == "{":
            try:
                parsed[key] = json.loads(value)
            except ValueError:
                pass
    return parsed


def read_metadata(primary_model_name: str | None, secondary_model_name: str | None = None,
                  tertiary_model_name: str | None = None) -> str:
    """The "Read metadata from selected checkpoints" button: the models' metadata merged, as indented JSON."""
    metadata: dict[str, Any] = {}
    for name in (primary_model_name, secondary_model_name, tertiary_model_name):
        info = sd_models.checkpoints_list.get(name or "") or sd_models.get_closet_checkpoint_match(name or "")
        if info is not None:
            metadata.update(_parse_json_values(info.metadata))
    return json.dumps(metadata, indent=4, ensure_ascii=False)


def _config_source_index(config_source: int | str) -> int:
    if isinstance(config_source, str) and not config_source.isdigit():
        if config_source not in CONFIG_SOURCES:
            raise UserError(f"Checkpoint merger: unknown config source {config_source!r}; use one of "
                            f"{', '.join(CONFIG_SOURCES)}.")
        return CONFIG_SOURCES.index(config_source)
    index = int(config_source)
    if not 0 <= index < len(CONFIG_SOURCES):
        raise UserError(f"Checkpoint merger: config source {index} must be 0 to {len(CONFIG_SOURCES) - 1}.")
    return index


def create_config(ckpt_result: str, config_source: int, a, b, c) -> str | None:
    """Copy the same-stem .yaml of A, B or C (by `config_source`) next to the result; returns the copy's path."""

    def config(info) -> str | None:
        found = model_detection.find_checkpoint_config_near_filename(info.filename) if info else None
        return found if found and os.path.abspath(found) != os.path.abspath(paths_internal.sd_default_config) else None

    candidates = {0: (a, b, c), 1: (b,), 2: (c,)}.get(config_source, ())
    cfg = next((found for found in map(config, candidates) if found), None)
    if cfg is None:
        return None
    target = os.path.splitext(ckpt_result)[0] + ".yaml"
    log.info("Copying config from %s to %s", cfg, target)
    with open(cfg, "rb") as f:
        fileio.atomic_write_bytes(target, f.read())
    return target


def _metadata(a: MergeInput, b: MergeInput | None, c: MergeInput | None, recipe: dict[str, Any] | None,
              save_metadata: bool, copy_metadata_fields: bool, metadata_json: str) -> dict[str, str]:
    if not save_metadata:
        return {}
    metadata: dict[str, str] = {}
    if copy_metadata_fields:
        for model in (a, b, c):
            if model is not None:
                metadata.update(model.info.metadata)
    if metadata_json and metadata_json.strip():
        try:
            extra = json.loads(metadata_json)
        except ValueError as e:
            raise UserError(f"Checkpoint merger: the metadata is not valid JSON ({e}).") from e
        if not isinstance(extra, dict):
            raise UserError("Checkpoint merger: the metadata must be a JSON object ({\"key\": \"value\", ...}).")
        # safetensors metadata values are strings: anything else is stored as its JSON text
        metadata.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    metadata["format"] = "pt"
    if recipe is not None:
        sd_merge_models: dict[str, Any] = {}
        for model in (a, b, c):
            if model is None:
                continue
            info = model.info
            parsed = _parse_json_values(info.metadata)
            sd_merge_models[info.sha256] = {
                "name": info.name,
                "legacy_hash": info.hash,
                "sd_merge_recipe": parsed.get("sd_merge_recipe", None),
            }
            previous = parsed.get("sd_merge_models", {})
            if isinstance(previous, dict):
                sd_merge_models.update(previous)
        metadata["sd_merge_recipe"] = json.dumps(recipe)
        metadata["sd_merge_models"] = json.dumps(sd_merge_models)
    return metadata


@dataclass
class _Plan:
    """What the merge computes for every output key (worked out on meta tensors before anything is read)."""

    tensors: dict[str, torch.Tensor]
    is_inpainting: bool = False
    is_instruct_pix2pix: bool = False


class _Merger:
    def __init__(self, method: str, multiplier: float, a: MergeInput, b: MergeInput | None, c: MergeInput | None,
                 save_as_half: bool, vae: dict[str, torch.Tensor] | None, weights: list[float] | None):
        self.method = method
        self.multiplier = multiplier
        self.a, self.b, self.c = a, b, c
        self.save_as_half = save_as_half
        self.vae = vae
        self.weights = weights
        self.is_inpainting = False
        self.is_instruct_pix2pix = False

    def _merged(self, key: str, a: torch.Tensor, fetch: Callable[[MergeInput, str], torch.Tensor]) -> torch.Tensor:
        b = fetch(self.b, key)
        if self.method == "Add difference":
            if key in self.c.meta:
                c = fetch(self.c, key)
                if c.shape != b.shape:
                    raise UserError(f"Checkpoint merger: {key} has shape {tuple(b.shape)} in B but {tuple(c.shape)} "
                                    "in C; B and C must have the same architecture.")
                b = get_difference(b, c)
            else:
                b = torch.zeros_like(b)
        alpha = merge_blocks.alpha_for(key, self.multiplier, self.weights, self.a.family)
        func = add_difference if self.method == "Add difference" else weighted_sum
        if a.shape == b.shape:
            return func(a, b, alpha)
        if a.dim() < 2 or a.shape[0:1] + a.shape[2:] != b.shape[0:1] + b.shape[2:]:
            raise UserError(f"Checkpoint merger: {key} has shape {tuple(a.shape)} in A but {tuple(b.shape)} in "
                            "B; the models have different architectures.")
        if a.shape[1] == 4 and b.shape[1] == 9:
            raise UserError("When merging inpainting model with a normal one, A must be the inpainting model.")
        if a.shape[1] == 4 and b.shape[1] == 8:
            raise UserError("When merging instruct-pix2pix model with a normal one, A must be the instruct-pix2pix "
                            "model.")
        if b.shape[1] != 4 or a.shape[1] not in (8, 9):
            raise UserError(f"Bad dimensions for merged layer {key}: A={tuple(a.shape)}, B={tuple(b.shape)}")
        if a.shape[1] == 8:
            self.is_instruct_pix2pix = True
        else:
            self.is_inpainting = True
        # only the channels both models have are merged; the assignment keeps A's dtype (as A1111)
        a = a.clone()
        a[:, 0:4] = func(a[:, 0:4], b, alpha)
        return a

    def tensor(self, key: str, fetch: Callable[[MergeInput, str], torch.Tensor]) -> torch.Tensor:
        """The output tensor of one key: `fetch` reads real tensors, or meta tensors for the plan."""
        t = fetch(self.a, key)
        merging = self.method != "No interpolation"
        if merging and "model" in key and key in self.b.meta and key not in checkpoint_dict_skip_on_merge:
            t = to_half(self._merged(key, t, fetch), self.save_as_half)
        if self.vae is not None and key.startswith("first_stage_model."):
            baked = self.vae.get(key[len("first_stage_model."):])
            if baked is not None:
                if baked.shape != t.shape:
                    raise UserError(f"Checkpoint merger: the VAE's {key[len('first_stage_model.'):]} has shape "
                                    f"{tuple(baked.shape)} but the model's is {tuple(t.shape)}; choose a VAE made "
                                    "for this model family.")
                t = baked if t.device.type != "meta" else torch.empty_like(baked, device="meta")
                t = to_half(t, self.save_as_half)
        if self.save_as_half and not merging:
            t = to_half(t, True)
        return t


def _output_name(custom_name: str, method: str, multiplier: float, a, b, c) -> str:
    if custom_name:
        if any(sep in custom_name for sep in ("/", "\\")) or custom_name.strip(".") == "" or custom_name != custom_name.strip():
            raise UserError(f"Checkpoint merger: the custom name {custom_name!r} must be a plain file name (no folders, "
                            "no leading or trailing spaces).")
        return custom_name
    if method == "Weighted sum":
        return f"{round(1 - multiplier, 2)}({a.info.model_name}) + {round(multiplier, 2)}({b.info.model_name})"
    if method == "Add difference":
        return f"{a.info.model_name} + {round(multiplier, 2)}({b.info.model_name} - {c.info.model_name})"
    return a.info.model_name


def merge_checkpoints(primary_model_name: str, secondary_model_name: str | None = None,
                      tertiary_model_name: str | None = None, interp_method: str = "Weighted sum",
                      multiplier: float = 0.3, save_as_half: bool = False, custom_name: str = "",
                      checkpoint_format: str = "safetensors", config_source: int | str = 0, bake_in_vae: str = "None",
                      discard_weights: str = "", save_metadata: bool = True, add_merge_recipe: bool = True,
                      copy_metadata_fields: bool = True, metadata_json: str = "{}", block_weights: str = "",
                      prune_ema: bool = False, progress: Callable[[int, int, str], None] | None = None) -> str:
    """Merge checkpoints (names as in the checkpoint list) into a new file in the checkpoint folder; returns its
    path. `block_weights`: one multiplier per UNet block or a preset name (merge_blocks); `multiplier` is then
    the base alpha. `prune_ema` drops the EMA copy of the UNet (`model_ema.*`, as discarding "^model_ema\\."
    does). `progress(done, total, key)` is called after each tensor. Bad input raises UserError."""
    if interp_method not in INTERP_METHODS:
        raise UserError(f"Checkpoint merger: unknown interpolation method {interp_method!r}; use one of "
                        f"{', '.join(INTERP_METHODS)}.")
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise UserError(f"Checkpoint merger: unknown checkpoint format {checkpoint_format!r}; use ckpt or "
                        "safetensors.")
    config_index = _config_source_index(config_source)
    needs_b = interp_method != "No interpolation"
    needs_c = interp_method == "Add difference"
    if not primary_model_name:
        raise UserError("Failed: Merging requires a primary model.")
    if needs_b and not secondary_model_name:
        raise UserError("Failed: Merging requires a secondary model.")
    if needs_c and not tertiary_model_name:
        raise UserError(f"Failed: Interpolation method ({interp_method}) requires a tertiary model.")
    try:
        multiplier = float(multiplier)
    except (TypeError, ValueError):
        raise UserError(f"Checkpoint merger: the multiplier {multiplier!r} is not a number.") from None
    discard = None
    if discard_weights:
        try:
            discard = re.compile(discard_weights)
        except re.error as e:
            raise UserError(f"Checkpoint merger: 'Discard weights with matching name' is not a valid regular "
                            f"expression ({e}).") from e

    a_info = _find(primary_model_name, "primary model (A)")
    b_info = _find(secondary_model_name, "secondary model (B)") if needs_b else None
    c_info = _find(tertiary_model_name, "tertiary model (C)") if needs_c else None
    vae_file = _vae_file(bake_in_vae)

    inputs: list[MergeInput] = []
    try:
        for role, info in (("A", a_info), ("B", b_info), ("C", c_info)):
            if info is not None:
                inputs.append(open_input(role, info))
        a = inputs[0]
        b = inputs[1] if needs_b else None
        c = inputs[2] if needs_c else None
        for other in inputs[1:]:
            if other.family != a.family:
                raise UserError(
                    f"Checkpoint merger: cannot merge {a.info.name} ({merge_blocks.FAMILY_NAMES[a.family]}) with "
                    f"{other.info.name} ({merge_blocks.FAMILY_NAMES[other.family]}): the models are of different "
                    "families.")
        weights = merge_blocks.parse_block_weights(block_weights, a.family) if needs_b else None
        vae = sd_vae.load_vae_dict(vae_file) if vae_file else None
        if vae is not None and not any(("first_stage_model." + k) in a.meta for k in vae):
            raise UserError(f"Checkpoint merger: {os.path.basename(vae_file)} has no weights that fit the model's VAE; "
                            "choose a VAE file in the A1111 (LDM) layout for this model family.")

        merger = _Merger(interp_method, multiplier, a, b, c, save_as_half, vae, weights)
        plan = {key: merger.tensor(key, lambda m, k: m.meta[k]) for key in a.meta
                if (discard is None or not discard.search(key)) and not (prune_ema and key.startswith("model_ema."))}
        if not plan:
            raise UserError("Checkpoint merger: the discard pattern removes every weight; nothing would be saved.")
        is_inpainting, is_ip2p = merger.is_inpainting, merger.is_instruct_pix2pix

        filename = _output_name(custom_name, interp_method, multiplier, a, b, c)
        filename += ".inpainting" if is_inpainting else ""
        filename += ".instruct-pix2pix" if is_ip2p else ""
        filename += "." + checkpoint_format
        ckpt_dir = shared.cmd_opts.ckpt_dir or sd_models.model_path
        output = os.path.abspath(os.path.join(ckpt_dir, filename))
        for model in inputs:
            if os.path.abspath(model.info.filename) == output:
                raise UserError(f"Checkpoint merger: the result {filename} would replace input model "
                                f"{model.role}; choose another custom name.")

        recipe = None
        if save_metadata and add_merge_recipe:
            for model in inputs:
                model.info.calculate_shorthash()
            recipe = {
                "type": "webui",
                "primary_model_hash": a.info.sha256,
                "secondary_model_hash": b.info.sha256 if b else None,
                "tertiary_model_hash": c.info.sha256 if c else None,
                "interp_method": interp_method,
                "multiplier": multiplier,
                "save_as_half": save_as_half,
                "custom_name": custom_name,
                "config_source": config_index,
                "bake_in_vae": bake_in_vae,
                "discard_weights": discard_weights,
                "is_inpainting": is_inpainting,
                "is_instruct_pix2pix": is_ip2p,
            }
            if weights is not None:  # only block-weighted merges add keys to A1111's recipe
                recipe["block_weights"] = merge_blocks.format_weights(weights)
            if prune_ema:
                recipe["prune_ema"] = True
        metadata = _metadata(a, b, c, recipe, save_metadata, copy_metadata_fields, metadata_json)

        log.info("Merging %s into %s", " / ".join(m.info.name for m in inputs), output)
        done = 0

        def produce(key: str) -> torch.Tensor:
            nonlocal done
            t = merger.tensor(key, lambda m, k: m.get(k))
            done += 1
            if progress is not None:
                progress(done, len(plan), key)
            return t

        with fileio.atomic_file(output, "wb") as f:
            if checkpoint_format == "safetensors":
                tensor_stream.write_safetensors(f, plan, produce, metadata or None)
            else:
                torch.save({key: produce(key) for key in plan}, f)
    finally:
        for model in inputs:
            model.source.close()

    create_config(output, config_index, a_info, b_info, c_info)
    sd_models.list_models()
    created = next((ckpt for ckpt in sd_models.checkpoints_list.values() if ckpt.filename == output), None)
    if created is not None:
        created.calculate_shorthash()
    log.info("Checkpoint saved to %s.", output)
    return output


def _vae_file(bake_in_vae: str | None) -> str | None:
    if not bake_in_vae or bake_in_vae == "None":
        return None
    if bake_in_vae not in sd_vae.vae_dict:
        sd_vae.refresh_vae_list()
    if bake_in_vae not in sd_vae.vae_dict:
        raise NotFoundError(f"Checkpoint merger: VAE '{bake_in_vae}' not found; available: "
                            f"{', '.join(sd_vae.vae_dict) or 'none'}.")
    return sd_vae.vae_dict[bake_in_vae]


def run_modelmerger(id_task: str | None, primary_model_name: str, secondary_model_name: str | None,
                    tertiary_model_name: str | None, interp_method: str, multiplier: float, save_as_half: bool,
                    custom_name: str, checkpoint_format: str, config_source: int | str, bake_in_vae: str,
                    discard_weights: str, save_metadata: bool, add_merge_recipe: bool, copy_metadata_fields: bool,
                    metadata_json: str, block_weights: str = "", prune_ema: bool = False) -> str:
    """A1111's argument order (the Merge button); runs as a job with progress; returns "Checkpoint saved to …".
    Bad input raises UserError (the UI shows its message)."""
    state = shared.state
    state.begin(job="model-merge")
    state.textinfo = "Merging"

    def progress(done: int, total: int, key: str) -> None:
        state.sampling_steps = total
        state.sampling_step = done

    try:
        output = merge_checkpoints(
            primary_model_name, secondary_model_name, tertiary_model_name, interp_method, multiplier, save_as_half,
            custom_name, checkpoint_format, config_source, bake_in_vae, discard_weights, save_metadata,
            add_merge_recipe, copy_metadata_fields, metadata_json, block_weights, prune_ema, progress=progress)
        state.textinfo = "Checkpoint saved"
    finally:
        state.end()
    return f"Checkpoint saved to {output}"
