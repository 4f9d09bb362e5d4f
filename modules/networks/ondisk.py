"""A network file on disk: name, alias, metadata, hash and Stable Diffusion version (A1111's NetworkOnDisk)."""

from __future__ import annotations

import enum
import json
import logging
import os
from typing import Any

from modules import hashes, model_files, shared
from modules.errors import UserError

log = logging.getLogger(__name__)

# Metadata keys A1111 shows first on the cards, in this order; the rest follow.
metadata_tags_order = {
    "ss_sd_model_name": 1,
    "ss_resolution": 2,
    "ss_clip_skip": 3,
    "ss_num_train_images": 10,
    "ss_tag_frequency": 20,
}


class SdVersion(enum.Enum):
    Unknown = 1
    SD1 = 2
    SD2 = 3
    SDXL = 4


def model_version(model: Any) -> SdVersion:
    """The version of a loaded model in the terms networks use."""
    if getattr(model, "is_sdxl", False):
        return SdVersion.SDXL
    if getattr(model, "is_sd2", False):
        return SdVersion.SD2
    return SdVersion.SD1


def read_safetensors_metadata(filename: str) -> dict[str, Any]:
    """The file's `__metadata__`, with values that hold JSON objects decoded (as A1111 serves them)."""
    res: dict[str, Any] = {}
    for key, value in model_files.read_metadata(filename).items():
        res[key] = value
        if value[:1] == "{":
            try:
                res[key] = json.loads(value)
            except ValueError:
                pass
    return res


class NetworkOnDisk:
    def __init__(self, name: str, filename: str):
        self.name = name
        self.filename = filename
        self.metadata: dict[str, Any] = {}
        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        if self.is_safetensors:
            try:
                # headers are small: read on every scan, which also reports damaged files early
                self.metadata = read_safetensors_metadata(filename)
            except UserError as e:
                log.warning("Reading the metadata of network %s: %s", filename, e)
        if self.metadata:
            self.metadata = dict(sorted(self.metadata.items(), key=lambda x: metadata_tags_order.get(x[0], 999)))
        alias = self.metadata.get("ss_output_name", self.name)
        self.alias = alias if isinstance(alias, str) and alias else self.name
        self.hash = ""
        self.shorthash = ""
        sshs = self.metadata.get("sshs_model_hash")
        self.set_hash(
            (sshs if isinstance(sshs, str) else "")
            or hashes.sha256_from_cache(self.filename, "lora/" + self.name, use_addnet_hash=self.is_safetensors)
            or ""
        )
        self.sd_version = self.detect_version()

    def detect_version(self) -> SdVersion:
        """A1111's rule for the cards (metadata only): sdxl_ base → SDXL, ss_v2 → SD2, any metadata → SD1."""
        if str(self.metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
            return SdVersion.SDXL
        if str(self.metadata.get("ss_v2", "")) == "True":
            return SdVersion.SD2
        if self.metadata:
            return SdVersion.SD1
        return SdVersion.Unknown

    def set_hash(self, value: str) -> None:
        from modules.networks import library

        self.hash = value or ""
        self.shorthash = self.hash[:12]
        if self.shorthash:
            library.available_network_hash_lookup[self.shorthash] = self

    def read_hash(self) -> None:
        """Compute (and cache) the addnet hash if it is not known yet (nothing with --no-hashing)."""
        if not self.hash:
            value = hashes.sha256(
                self.filename,
                "lora/" + self.name,
                use_addnet_hash=self.is_safetensors,
                no_hashing=bool(shared.cmd_opts.no_hashing),
            )
            self.set_hash(value or "")

    def get_alias(self) -> str:
        """The name to write in prompts: the alias, unless the setting asks for file names or it is forbidden."""
        from modules.networks import library

        if shared.opts.lora_preferred_name == "Filename" or self.alias.lower() in library.forbidden_network_aliases:
            return self.name
        return self.alias

    def to_api(self) -> dict[str, Any]:
        """The `/sdapi/v1/loras` entry."""
        return {"name": self.name, "alias": self.alias, "path": self.filename, "metadata": self.metadata}

    def __repr__(self) -> str:
        return f"NetworkOnDisk({self.name!r}, {self.filename!r})"
