"""Lists and actions that other parts of the app provide (LoRA, embeddings, hypernetworks, upscalers, face
restorers, scripts, extensions), looked up at request time under their A1111 names.

A part that is not in this version gives an empty list; an import error inside a part that exists is not hidden.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from typing import Any

from modules import processing, shared
from modules.errors import UserError

log = logging.getLogger(__name__)


class ScriptNotFound(UserError):
    """A script named in a request does not exist (A1111 answers 422)."""

    status_code = 422


def optional_module(name: str) -> Any:
    """The module, or None when it does not exist in this version."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return None


def _name(x: Any) -> str:
    name = getattr(x, "name", "")
    return name() if callable(name) else str(name)


# ---- extra networks ----


def loras() -> list[dict[str, Any]]:
    networks = optional_module("modules.networks")
    available = getattr(networks, "available_networks", None) or {}
    return [
        {
            "name": n.name,
            "alias": getattr(n, "alias", n.name),
            "path": getattr(n, "filename", None),
            "metadata": dict(getattr(n, "metadata", None) or {}),
        }
        for n in available.values()
    ]


def refresh_loras() -> None:
    networks = optional_module("modules.networks")
    if networks is not None and hasattr(networks, "list_available_networks"):
        networks.list_available_networks()


def hypernetworks() -> list[dict[str, Any]]:
    """``[{name, path}]`` from shared.hypernetworks (A1111) or modules.hypernetworks.list_hypernetworks()."""
    found = getattr(shared, "hypernetworks", None)
    if found is None:
        module = optional_module("modules.hypernetworks")
        lister = getattr(module, "list_hypernetworks", None)
        if lister is None:
            return []
        required = [
            p
            for p in inspect.signature(lister).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        found = lister(shared.cmd_opts.hypernetwork_dir) if required else lister()
    if isinstance(found, dict):
        return [{"name": name, "path": path} for name, path in found.items()]
    return [{"name": x["name"], "path": x.get("path")} for x in found]


def _embedding_db() -> Any:
    hijack = optional_module("modules.sd_hijack")
    model_hijack = getattr(hijack, "model_hijack", None)
    return getattr(model_hijack, "embedding_db", None)


def embeddings() -> dict[str, dict[str, Any]]:
    db = _embedding_db()

    def convert(items: dict[str, Any]) -> dict[str, Any]:
        return {
            e.name: {
                key: getattr(e, key, None)
                for key in ("step", "sd_checkpoint", "sd_checkpoint_name", "shape", "vectors")
            }
            for e in items.values()
        }

    if db is None:
        return {"loaded": {}, "skipped": {}}
    return {
        "loaded": convert(getattr(db, "word_embeddings", {})),
        "skipped": convert(getattr(db, "skipped_embeddings", {})),
    }


def refresh_embeddings() -> None:
    db = _embedding_db()
    if db is not None:
        db.load_textual_inversion_embeddings(force_reload=True)


# ---- upscalers and face restoration ----


def upscalers() -> list[dict[str, Any]]:
    return [
        {
            "name": u.name,
            "model_name": getattr(getattr(u, "scaler", None), "model_name", None),
            "model_path": getattr(u, "data_path", None),
            "model_url": None,
            "scale": getattr(u, "scale", None),
        }
        for u in shared.sd_upscalers
    ]


def realesrgan_models() -> list[dict[str, Any]]:
    return [
        {"name": u.name, "path": getattr(u, "data_path", None), "scale": getattr(u, "scale", None)}
        for u in shared.sd_upscalers
        if _name(getattr(u, "scaler", None)) == "RealESRGAN"
    ]


def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": name} for name in (getattr(shared, "latent_upscale_modes", None) or {})]


def face_restorers() -> list[dict[str, Any]]:
    return [{"name": _name(x), "cmd_dir": getattr(x, "cmd_dir", None)} for x in shared.face_restorers]


# ---- scripts ----


def script_runner(is_img2img: bool) -> Any:
    scripts = optional_module("modules.scripts")
    return getattr(scripts, "scripts_img2img" if is_img2img else "scripts_txt2img", None)


def scripts_list() -> dict[str, list[str]]:
    def names(runner: Any) -> list[str]:
        return [s.name for s in getattr(runner, "scripts", []) if getattr(s, "name", None)]

    return {"txt2img": names(script_runner(False)), "img2img": names(script_runner(True))}


def script_info() -> list[dict[str, Any]]:
    res = []
    for runner in (script_runner(False), script_runner(True)):
        for script in getattr(runner, "scripts", []):
            info = getattr(script, "api_info", None)
            if info is None:
                continue
            res.append(
                info if isinstance(info, dict) else info.model_dump() if hasattr(info, "model_dump") else vars(info)
            )
    return res


def run_processing(
    p: Any, is_img2img: bool, script_name: str | None, script_args: list[Any], alwayson_scripts: dict[str, Any]
) -> Any:
    """Run `p` through the script runner when there is one (selectable script by name, always-on scripts with
    their args), else straight through process_images. Called inside the generation queue."""
    runner = script_runner(is_img2img)
    if runner is not None and hasattr(runner, "run_for_api"):
        return runner.run_for_api(p, script_name, script_args, alwayson_scripts)
    if script_name:
        raise ScriptNotFound(f"Script '{script_name}' not found")
    if alwayson_scripts:
        raise ScriptNotFound(f"always on script {next(iter(alwayson_scripts))} not found")
    return processing.process_images(p)


# ---- extensions ----


def extensions() -> list[dict[str, Any]]:
    """Git-based extensions (A1111 lists only those with a remote)."""
    module = optional_module("modules.extensions")
    if module is None:
        return []
    if hasattr(module, "list_extensions"):
        module.list_extensions()
    res = []
    for ext in getattr(module, "extensions", []):
        if hasattr(ext, "read_info_from_repo"):
            ext.read_info_from_repo()
        if getattr(ext, "remote", None) is None:
            continue
        res.append(
            {
                key: getattr(ext, key, None)
                for key in ("name", "remote", "branch", "commit_hash", "commit_date", "version", "enabled")
            }
        )
    return res


def checkpoint_config(filename: str) -> str | None:
    """The same-stem .yaml next to a checkpoint, if any (A1111's `config` of /sd-models)."""
    config = os.path.splitext(filename)[0] + ".yaml"
    return config if os.path.isfile(config) else None
