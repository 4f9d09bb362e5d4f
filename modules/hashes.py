"""Model file hashes as A1111 writes them into titles and infotexts, with a persistent cache.

- full sha256 of the file (1 MiB blocks); short hashes are its first 10 hex digits for checkpoints, VAEs and
  hypernetworks, 12 for textual-inversion embeddings;
- the "addnet" hash of a `.safetensors` file (kohya-ss): sha256 of everything after the JSON header -- LoRA
  hashes use it, shortened to 12 digits;
- the legacy 8-digit model hash: sha256 of the 64 KiB at offset 1 MiB.

Cached values live in the `hashes` / `hashes-addnet` subsections under titles like `checkpoint/<name>`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import IO

from modules import cache as cache_module
from modules.errors import NotFoundError

log = logging.getLogger(__name__)

BLOCK_SIZE = 1024 * 1024
CHECKPOINT_SHORTHASH_LENGTH = 10  # checkpoints, VAE, hypernetworks
EMBEDDING_SHORTHASH_LENGTH = 12  # textual inversion
LORA_SHORTHASH_LENGTH = 12

_LEGACY_OFFSET = 0x100000
_LEGACY_LENGTH = 0x10000


def _sha256_of_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(BLOCK_SIZE), b""):
        digest.update(block)
    return digest.hexdigest()


def calculate_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of the whole file."""
    try:
        with open(path, "rb") as file:
            return _sha256_of_stream(file)
    except FileNotFoundError as e:
        raise NotFoundError(f"{os.fspath(path)}: file not found") from e


def addnet_hash_safetensors(fileobj: IO[bytes]) -> str:
    """sha256 of a safetensors file's data area: the bytes after the 8-byte length and the JSON header."""
    fileobj.seek(0)
    header_length = int.from_bytes(fileobj.read(8), "little")
    fileobj.seek(8 + header_length)
    return _sha256_of_stream(fileobj)


def model_hash(path: str | os.PathLike) -> str:
    """A1111's legacy hash: first 8 hex digits of sha256 over 64 KiB at offset 1 MiB; "NOFILE" if missing."""
    try:
        with open(path, "rb") as file:
            file.seek(_LEGACY_OFFSET)
            return hashlib.sha256(file.read(_LEGACY_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


def shorthash(sha256_hex: str | None, length: int = CHECKPOINT_SHORTHASH_LENGTH) -> str | None:
    """The short form of a full hash (None stays None)."""
    return sha256_hex[:length] if sha256_hex else None


def _section_name(use_addnet_hash: bool) -> str:
    return "hashes-addnet" if use_addnet_hash else "hashes"


def sha256_from_cache(
    path: str | os.PathLike,
    title: str,
    use_addnet_hash: bool = False,
    *,
    cache: cache_module.Cache | None = None,
) -> str | None:
    """The cached hash for `title`, if it was computed for this file as it is now (same path, size and mtime)."""
    store = cache or cache_module.get_cache()
    entry = store.section(_section_name(use_addnet_hash)).get(title)
    if not cache_module.stamp_matches(entry, path):
        return None
    value = entry.get("sha256")
    return value if isinstance(value, str) else None


def sha256(
    path: str | os.PathLike,
    title: str,
    use_addnet_hash: bool = False,
    *,
    no_hashing: bool = False,
    cache: cache_module.Cache | None = None,
) -> str | None:
    """The file's hash (addnet hash if `use_addnet_hash`), from the cache or computed and cached.

    With `no_hashing` (--no-hashing) only a cached value is returned, else None.
    """
    store = cache or cache_module.get_cache()
    cached = sha256_from_cache(path, title, use_addnet_hash, cache=store)
    if cached is not None or no_hashing:
        return cached

    log.info("Calculating sha256 for %s", os.fspath(path))
    try:
        stamp = cache_module.file_stamp(path)
        with open(path, "rb") as file:
            value = addnet_hash_safetensors(file) if use_addnet_hash else _sha256_of_stream(file)
    except FileNotFoundError as e:
        raise NotFoundError(f"{os.fspath(path)}: file not found") from e
    log.info("%s: %s", title, value)

    store.section(_section_name(use_addnet_hash))[title] = {**stamp, "sha256": value}
    store.save()
    return value
