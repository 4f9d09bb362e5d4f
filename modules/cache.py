"""A small persistent JSON cache (`cache.json`): subsections of title -> entry, e.g. `hashes` / `checkpoint/x`.

The file is written atomically (temporary file, then rename), a corrupt file is set aside as `<name>.corrupt`
and replaced by an empty cache with a warning, and every access is serialised by a lock, so threads can share
it. Entries tied to a file carry that file's path, size and modification time (`file_stamp`) and count only
while all three still match.

The default cache lives at `$SD_WEBUI_CACHE_FILE`, else `./cache.json`, until `set_cache_file` points it
elsewhere (the application passes its data directory). `cache`, `dump_cache` and `cached_data_for_file` keep
A1111's names for extensions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from modules.fileio import atomic_write_text

log = logging.getLogger(__name__)

ENV_CACHE_FILE = "SD_WEBUI_CACHE_FILE"


def file_stamp(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a file's current contents for caching: absolute path, size and mtime."""
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime": stat.st_mtime}


def stamp_matches(entry: Any, path: str | os.PathLike) -> bool:
    """True if a cache entry was made for this very file as it is now (False if the file is gone)."""
    if not isinstance(entry, dict):
        return False
    try:
        current = file_stamp(path)
    except OSError:
        return False
    return all(entry.get(key) == value for key, value in current.items())


class Cache:
    """One JSON cache file, loaded on first use."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._path = os.fspath(path)
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, Any]] | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _loaded(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._data is None:
                self._data = self._read()
            return self._data

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self._path, encoding="utf-8") as file:
                data = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self._set_aside(f"cannot be read ({e})")
            return {}
        if not isinstance(data, dict):
            self._set_aside("does not hold a JSON object")
            return {}
        sections = {}
        for name, section in data.items():
            if isinstance(section, dict):
                sections[name] = section
            else:
                log.warning("Cache file %s: ignoring subsection %r, which is not an object", self._path, name)
        return sections

    def _set_aside(self, problem: str) -> None:
        copy = self._path + ".corrupt"
        try:
            shutil.copyfile(self._path, copy)
        except OSError:
            copy = "(no copy could be made)"
        log.warning(
            "Cache file %s %s; starting with an empty cache. The old file is kept as %s", self._path, problem, copy
        )

    def section(self, name: str) -> CacheSection:
        """The live subsection `name` (created empty if missing)."""
        with self._lock:
            return CacheSection(self, self._loaded().setdefault(name, {}))

    def save(self) -> None:
        """Write the cache atomically. Failures are logged, not raised: the cache only saves work."""
        with self._lock:
            text = json.dumps(self._loaded(), indent=4, ensure_ascii=False)
            try:
                atomic_write_text(self._path, text)
            except OSError as e:
                log.error("Could not save the cache file %s: %s", self._path, e)


class CacheSection(MutableMapping[str, Any]):
    """A dict-like view of one subsection; each operation holds the cache's lock."""

    def __init__(self, cache: Cache, entries: dict[str, Any]) -> None:
        self._cache = cache
        self._entries = entries

    def __getitem__(self, key: str) -> Any:
        with self._cache.lock:
            return self._entries[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with self._cache.lock:
            self._entries[key] = value

    def __delitem__(self, key: str) -> None:
        with self._cache.lock:
            del self._entries[key]

    def __iter__(self) -> Iterator[str]:
        with self._cache.lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._cache.lock:
            return len(self._entries)


_default_lock = threading.Lock()
_default: Cache | None = None


def set_cache_file(path: str | os.PathLike) -> None:
    """Use `path` as the default cache file from now on (the next access reads it)."""
    global _default
    with _default_lock:
        _default = Cache(path)


def get_cache() -> Cache:
    global _default
    with _default_lock:
        if _default is None:
            from modules.paths_internal import data_path

            _default = Cache(os.environ.get(ENV_CACHE_FILE) or os.path.join(data_path, "cache.json"))
        return _default


def cache(subsection: str) -> CacheSection:
    """A subsection of the default cache (A1111's `modules.cache.cache`)."""
    return get_cache().section(subsection)


def dump_cache() -> None:
    """Save the default cache (A1111's name)."""
    get_cache().save()


def cached_data_for_file(
    subsection: str, title: str, filename: str | os.PathLike, func: Callable[[], Any], *, store: Cache | None = None
) -> Any:
    """`func()`'s value for a file, cached under `title` until the file changes; None results are not cached."""
    store = store or get_cache()
    section = store.section(subsection)
    entry = section.get(title)
    if stamp_matches(entry, filename) and "value" in entry:
        return entry["value"]
    stamp = file_stamp(filename)  # taken first, so a change during func() invalidates the entry
    value = func()
    if value is None:
        return None
    section[title] = {**stamp, "value": value}
    store.save()
    return value
