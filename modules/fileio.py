"""Writing files so that a crash leaves either the old or the new version, never a truncated one."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from typing import IO

TEMP_NAME = re.compile(r"\.[0-9a-f]{16}\.tmp")
STALE_AFTER_S = 3600
_swept: set[str] = set()  # folders already cleaned by this process: killed writers belong to earlier processes


def remove_stale_temp_files(folder: str, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove the temp files of writers that were killed (SIGKILL, power loss) before renaming them: a killed
    checkpoint merge would otherwise leave gigabytes behind. A live writer's file is recent, so it is kept."""
    removed = 0
    cutoff = time.time() - older_than_s
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if TEMP_NAME.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.remove(entry.path)
                        removed += 1
    return removed


@contextlib.contextmanager
def atomic_file(filename: str, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open a temp file beside `filename`; on success it is fsynced and renamed over the target.

    On any error the temp file is removed and the target is untouched.
    """
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    if folder not in _swept:  # once per folder, not a scan of a big outputs folder on every save
        _swept.add(folder)
        remove_stale_temp_files(folder)
    # A random hidden name, created exclusively: concurrent writers of one target never share a temp file.
    tmp = os.path.join(folder, f".{secrets.token_hex(8)}.tmp")  # short: the target name may be at the length limit
    try:
        with open(tmp, mode.replace("w", "x"), encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_text(filename: str, text: str) -> None:
    with atomic_file(filename, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(filename: str, data: bytes) -> None:
    with atomic_file(filename, "wb") as f:
        f.write(data)
