"""Writing files so that a crash leaves either the old or the new version, never a truncated one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_file(filename: str, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Open a temp file beside `filename`; on success it is fsynced and renamed over the target.

    On any error the temp file is removed and the target is untouched.
    """
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
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
