"""Checkpoints one tensor at a time: read tensors of a model file on demand, write a .safetensors file tensor by
tensor. The checkpoint merger uses these so that it never holds whole models in memory.

`.safetensors` tensors are read with plain file reads at the offsets of the (validated) header, into memory of
their own: nothing stays mapped, so resident memory is the tensors in use. `.ckpt` files are memory-mapped through
the safe unpickler (their pages are page cache, read only when a tensor is used).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import IO

import torch

from modules import model_files, safe
from modules.errors import NotFoundError, UnsafeFileError, UserError

log = logging.getLogger(__name__)

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3": torch.float8_e4m3fn,
    "I16": torch.int16,
    "U16": torch.uint16,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "U64": torch.uint64,
}
"""In the order of the safetensors format's dtype enumeration: files list tensors by it, largest first."""

DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
_DTYPE_RANK = {name: i for i, name in enumerate(SAFETENSORS_DTYPES)}


class TensorSource:
    """The tensors of one model file by name, loaded one at a time (`get`); `meta()` gives shapes and dtypes
    without reading any data. Use as a context manager to close the file."""

    def __init__(self, path: str, *, allow_unsafe: bool = False):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise NotFoundError(f"{self.path}: file not found")
        self.metadata: dict[str, str] = {}
        self._file: IO[bytes] | None = None
        self._tensors: dict[str, torch.Tensor] = {}
        extension = os.path.splitext(self.path)[1].lower()
        if extension == ".safetensors":
            header = model_files.read_safetensors_header(self.path)
            self.metadata = dict(header.metadata)
            self._header = header
            self._file = open(self.path, "rb")  # noqa: SIM115 (closed by close())
            self._meta = {
                name: torch.empty(info.shape, dtype=SAFETENSORS_DTYPES[info.dtype], device="meta")
                for name, info in header.tensors.items()
            }
        elif extension in model_files.PICKLE_EXTENSIONS:
            self._tensors = self._load_pickle(allow_unsafe)
            self._meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self._tensors.items()}
        else:
            raise UserError(f"{self.path}: unsupported model file type {extension or '(none)'!r}; use .safetensors "
                            "or .ckpt")

    def _load_pickle(self, allow_unsafe: bool) -> dict[str, torch.Tensor]:
        try:
            # mmap: tensors are read from the file only when used (zip-format files, i.e. every torch.save since 1.6)
            loaded = safe.load_with_extra(self.path, None, map_location="cpu", mmap=True)
        except UnsafeFileError as e:
            if "mmap" not in str(e):
                raise
            loaded = safe.load(self.path, map_location="cpu", allow_unsafe=allow_unsafe)
        return model_files.unwrap_state_dict(self.path, loaded)

    def meta(self) -> dict[str, torch.Tensor]:
        """Every tensor as a meta tensor (shape and dtype, no data), by name in file order."""
        return dict(self._meta)

    def get(self, name: str) -> torch.Tensor:
        """One tensor, in memory of its own (safe to change in place)."""
        if self._file is None:
            return self._tensors[name].clone()
        info = self._header.tensors[name]
        raw = torch.empty(info.end - info.begin, dtype=torch.uint8)
        self._file.seek(self._header.data_start + info.begin)
        view = memoryview(raw.numpy())
        got = self._file.readinto(view)
        if got != len(view):
            raise UnsafeFileError(f"{self.path}: the file ended inside tensor {name!r}")
        dtype = SAFETENSORS_DTYPES[info.dtype]
        if not info.shape:
            return raw.view(dtype).reshape(())
        return raw.view(dtype).reshape(info.shape)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tensors = {}

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safetensors_order(plan: dict[str, torch.Tensor]) -> list[str]:
    """Names in the order the safetensors library writes them: larger dtypes first (keeps data aligned), then by
    name."""
    return sorted(plan, key=lambda name: (-_DTYPE_RANK[DTYPE_NAMES[plan[name].dtype]], name))


def safetensors_header(plan: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> tuple[bytes, list[str]]:
    """The header bytes (length prefix included, padded with spaces to a multiple of 8) for tensors shaped like
    `plan` (meta tensors), and the order their data must follow."""
    order = safetensors_order(plan)
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    for name in order:
        t = plan[name]
        size = t.numel() * t.element_size()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, order


def tensor_bytes(t: torch.Tensor) -> memoryview:
    return memoryview(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())


def write_safetensors(f: IO[bytes], plan: dict[str, torch.Tensor], produce: Callable[[str], torch.Tensor],
                      metadata: dict[str, str] | None = None, progress: Callable[[str], None] | None = None) -> None:
    """Write a safetensors file to `f`: the header from `plan` (meta tensors), then each tensor as `produce(name)`
    makes it. A produced tensor must have the planned dtype and shape."""
    header, order = safetensors_header(plan, metadata)
    f.write(header)
    for name in order:
        t = produce(name)
        planned = plan[name]
        if t.dtype != planned.dtype or tuple(t.shape) != tuple(planned.shape):
            raise RuntimeError(f"{name}: produced {t.dtype} {tuple(t.shape)}, planned {planned.dtype} "
                               f"{tuple(planned.shape)}")
        f.write(tensor_bytes(t))
        if progress is not None:
            progress(name)

