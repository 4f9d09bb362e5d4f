"""State dicts and metadata from model files: `.safetensors` (header validated first) or pickles via `safe`.

A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of UTF-8 JSON, then the data area.
The JSON maps tensor names to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data
area) plus an optional `"__metadata__"` object of strings. The header is checked completely before the
`safetensors` package memory-maps the tensors, so a hostile or damaged file produces one clear error.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import safetensors.torch
import torch

from modules import safe
from modules.errors import NotFoundError, UnsafeFileError, UserError

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")

# Element sizes in bytes of the dtypes the safetensors package can load into torch.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E4M3FNUZ": 1,
    "F8_E5M2FNUZ": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_tensor(path: str, name: str, info: Any, data_size: int) -> TensorInfo:
    def bad(problem: str) -> UnsafeFileError:
        return UnsafeFileError(f"{path}: tensor {name!r} {problem}")

    if not isinstance(info, dict):
        raise bad("has no dtype/shape/data_offsets entry")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise bad(f"has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise bad(f"has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise bad(f"has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if begin > end:
        raise bad(f"has data_offsets that end before they begin ({begin} > {end})")
    if end > data_size:
        raise bad(f"lies beyond the end of the file (data ends at byte {end}, the data area has {data_size})")
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if expected != end - begin:
        raise bad(f"of dtype {dtype} and shape {shape} needs {expected} bytes but data_offsets span {end - begin}")
    return TensorInfo(dtype, tuple(shape), begin, end)


def _check_layout(path: str, tensors: dict[str, TensorInfo], data_size: int) -> None:
    """Tensors must tile the data area exactly: no overlap, no gap, nothing left over (as safetensors requires)."""
    position = 0
    previous = None
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin < position:
            raise UnsafeFileError(f"{path}: tensors {previous!r} and {name!r} overlap")
        if info.begin > position:
            raise UnsafeFileError(f"{path}: unused bytes {position}..{info.begin} in the data area before {name!r}")
        position, previous = info.end, name
    if position != data_size:
        raise UnsafeFileError(f"{path}: the data area has {data_size} bytes but the tensors cover only {position}")


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Read and fully validate a safetensors header; raises `UnsafeFileError` naming the problem."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise UnsafeFileError(f"{path}: too short to be a safetensors file ({size} bytes)")
            length = int.from_bytes(prefix, "little")
            if length > MAX_HEADER_BYTES:
                raise UnsafeFileError(
                    f"{path}: header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit; "
                    "the file is damaged or not a safetensors file"
                )
            if 8 + length > size:
                raise UnsafeFileError(
                    f"{path}: header length {length} runs past the end of the file ({size} bytes); "
                    "the file is truncated or not a safetensors file"
                )
            raw = file.read(length)
    except FileNotFoundError as e:
        raise NotFoundError(f"{path}: file not found") from e
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from e

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnsafeFileError(
            f"{path}: the safetensors header is not valid UTF-8 ({e.reason} at byte {e.start})"
        ) from e
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise UnsafeFileError(f"{path}: the safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise UnsafeFileError(f"{path}: the safetensors header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise UnsafeFileError(f"{path}: __metadata__ is not a JSON object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise UnsafeFileError(f"{path}: metadata value {key!r} is a {type(value).__name__}, not a string")

    data_start = 8 + length
    data_size = size - data_start
    tensors = {name: _parse_tensor(path, name, info, data_size) for name, info in header.items()}
    _check_layout(path, tensors, data_size)
    return SafetensorsHeader(tensors=tensors, metadata=metadata, data_start=data_start)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (strings, not decoded further); {} if it has none."""
    return dict(read_safetensors_header(path).metadata)


def unwrap_state_dict(path: str, loaded: Any) -> dict[str, torch.Tensor]:
    """The named tensors of a loaded pickle: the outer `state_dict` entry unwrapped (A1111), other entries dropped."""
    if not isinstance(loaded, Mapping):
        raise UserError(f"{path}: does not contain a state dict (it holds a {type(loaded).__name__})")
    # Lightning checkpoints keep the weights under "state_dict"; non-tensor entries (a nested "state_dict",
    # "global_step", ...) are not weights
    state = loaded.get("state_dict", loaded)
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: its 'state_dict' entry is a {type(state).__name__}, not a dictionary")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    skipped = len(state) - len(tensors)
    if skipped:
        log.debug("%s: ignored %d entries that are not named tensors", path, skipped)
    return tensors


def read_state_dict(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, allow_unsafe: bool = False
) -> dict[str, torch.Tensor]:
    """Tensors of a model file, by name, on `device`.

    `.safetensors` files are validated and then memory-mapped; `.ckpt/.pt/.pth/.bin` go through `safe.load`
    (`allow_unsafe` = --disable-safe-unpickle) and an outer `state_dict` entry is unwrapped as A1111 does.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise NotFoundError(f"{path}: file not found")
    if extension == ".safetensors":
        read_safetensors_header(path)
        try:
            return safetensors.torch.load_file(path, device=str(device))
        except Exception as e:  # the header passed, so this is damage the header check cannot see, or I/O
            raise UnsafeFileError(f"{path}: could not be read as safetensors ({e})") from e
    if extension in PICKLE_EXTENSIONS:
        return unwrap_state_dict(path, safe.load(path, map_location=device, allow_unsafe=allow_unsafe))
    raise UserError(
        f"{path}: unsupported model file type {extension or '(none)'!r}; use .safetensors (preferred) or "
        + "/".join(PICKLE_EXTENSIONS)
    )


def read_pickle(path: str | os.PathLike, device: str | torch.device = "cpu", *, allow_unsafe: bool = False) -> Any:
    """The object saved in a `.pt/.ckpt/.pth/.bin` file (e.g. a hypernetwork's dict), through `safe.load`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFoundError(f"{path}: file not found")
    if os.path.splitext(path)[1].lower() not in PICKLE_EXTENSIONS:
        raise UserError(f"{path}: not a PyTorch pickle file ({'/'.join(PICKLE_EXTENSIONS)})")
    return safe.load(path, map_location=device, allow_unsafe=allow_unsafe)
