"""Writing files so that a crash leaves either the old or the new version, never a truncated one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_file(filename: str, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside `filename`; on success it is fsynced and renamed over the target.

    On any error the temp file is removed and the target is untouched.
    """
    folder = os.path.dirname(os.path.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(filename)}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, encoding=encoding) as f:
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
