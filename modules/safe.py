"""Loading PyTorch pickle files (.ckpt/.pt/.pth/.bin) without letting them run code.

Two independent gates, both always on unless the user passes --disable-safe-unpickle (which drops only the first):

1. A static check with A1111's `safe.py` rules: the file must be a zip-format PyTorch file whose members all match
   `ALLOWED_ZIP_MEMBER` with exactly one `data.pkl`, and every global that pickle names must be on A1111's allow
   list (or approved by an extension's handler). The check walks the pickle with a restricted unpickler whose
   globals and persistent ids all resolve to an inert placeholder, so nothing from the file -- not even an
   allowed function -- is called to find out what it is. Legacy (non-zip) pickles are refused.
2. The real load, always `torch.load(..., weights_only=True)`. The globals A1111 allows beyond torch's own list
   (old numpy names, Lightning's ModelCheckpoint as an inert stand-in) are registered with torch once, process
   wide; globals an extension's handler approved are registered only around that one load.

`install_torch_load_guard()` routes `torch.load` calls from extension code through the same two gates.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import pickle
import re
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import torch

from modules.errors import NotFoundError, UnsafeFileError, UserError

log = logging.getLogger(__name__)

ExtraHandler = Callable[[str, str], Any]
FileSource = str | os.PathLike | IO[bytes]

# A1111's member pattern (its unescaped "." in ".data" kept), plus two plain-text records newer torch writes
# (".format_version", ".storage_alignment"); without them every file saved by current torch would be refused.
ALLOWED_ZIP_MEMBER = re.compile(
    r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|\.format_version|\.storage_alignment|(data\.pkl))$"
)
DATA_PKL_MEMBER = re.compile(r"^([^/]+)/data\.pkl$")

# A1111's allow list, as (module, name) exactly as written in the pickle.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        *(
            ("torch", name)
            for name in (
                "FloatStorage",
                "HalfStorage",
                "IntStorage",
                "LongStorage",
                "DoubleStorage",
                "ByteStorage",
                "BFloat16Storage",
                "float32",
            )
        ),
        ("torch.nn.modules.container", "ParameterDict"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),
        ("pytorch_lightning.callbacks", "model_checkpoint"),
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
        ("__builtin__", "set"),
    ]
)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_MALICIOUS_HINT = (
    "The file may be malicious, so it was not loaded. Use a .safetensors version of this model if there is one "
    "(or, only if you fully trust where the file came from, start with --disable-safe-unpickle)."
)


class _LightningStandIn:
    """Replaces pytorch_lightning's ModelCheckpoint (training metadata old checkpoints carry) in the real load."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _numpy_dtype_classes() -> list[type]:
    # torch's weights-only loader BUILDs numpy dtypes only if their concrete classes are allowed; object, void,
    # string and datetime dtypes stay out, so object arrays cannot smuggle anything in.
    excluded = {"Object", "Void", "Str", "Bytes", "String", "DateTime64", "TimeDelta64"}
    return [
        getattr(np.dtypes, name)
        for name in dir(np.dtypes)
        if name.endswith("DType") and name[: -len("DType")] not in excluded
    ]


def _a1111_torch_globals() -> list[Any]:
    """What torch's weights-only loader must additionally accept for files that pass A1111's list."""
    multiarray = np._core.multiarray
    return [
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        np.dtype,
        np.ndarray,
        *_numpy_dtype_classes(),
        torch.nn.modules.container.ParameterDict,
        torch._utils._rebuild_device_tensor_from_numpy,
        (_LightningStandIn, "pytorch_lightning.callbacks.model_checkpoint"),
        (_LightningStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    ]


# The original torch.load, also when this module is re-imported after the guard was installed.
_torch_load: Callable[..., Any] = getattr(torch.load, "__wrapped__", torch.load)

_registration_lock = threading.Lock()
_registered_globals: frozenset[Any] = frozenset()
# torch keeps its allowed-globals set process wide; loads with extension-approved globals take turns so one
# load's exit does not withdraw another's
_extension_globals_lock = threading.Lock()

_extra_handlers: contextvars.ContextVar[tuple[ExtraHandler, ...]] = contextvars.ContextVar(
    "safe_extra_handlers", default=()
)
_guard_allows_unsafe = False


class _Inert:
    """Placeholder for every global and storage during the check: calling, building or filling it does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


class _CheckingUnpickler(pickle.Unpickler):
    """Reads a pickle only to see which globals it names; refuses any not allowed."""

    def __init__(self, file: IO[bytes], display_name: str, handlers: tuple[ExtraHandler, ...]) -> None:
        super().__init__(file)
        self.display_name = display_name
        self.handlers = handlers
        self.approved_extras: list[tuple[Any, str]] = []

    def find_class(self, module: str, name: str) -> type:
        for handler in self.handlers:
            found = handler(module, name)
            if found is not None:
                self.approved_extras.append((found, f"{module}.{name}"))
                return _Inert
        if (module, name) in ALLOWED_GLOBALS:
            return _Inert
        raise UnsafeFileError(f"{self.display_name}: global '{module}/{name}' is forbidden. {_MALICIOUS_HINT}")

    def persistent_load(self, pid: Any) -> _Inert:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeFileError(f"{self.display_name}: unexpected persistent id in data.pkl. {_MALICIOUS_HINT}")
        return _Inert()


def _display_name(source: FileSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "<file object>"))


@contextlib.contextmanager
def _binary_stream(source: FileSource) -> Iterator[IO[bytes]]:
    """Yield a seekable binary stream at the source's start position; file objects are rewound afterwards."""
    if isinstance(source, str | os.PathLike):
        try:
            file = open(source, "rb")  # opened apart from "with" so open errors are told apart from others
        except FileNotFoundError as e:
            raise NotFoundError(f"{os.fspath(source)}: file not found") from e
        except OSError as e:
            raise UserError(f"{os.fspath(source)}: cannot be read ({e.strerror or e})") from e
        with file:
            yield file
        return
    if not (hasattr(source, "seekable") and source.seekable()):
        raise UnsafeFileError(f"{_display_name(source)}: cannot check a non-seekable stream; pass a file path")
    start = source.tell()
    try:
        yield source
    finally:
        source.seek(start)


def _check_archive(stream: IO[bytes], name: str, handlers: tuple[ExtraHandler, ...]) -> list[tuple[Any, str]]:
    start = stream.tell()
    magic = stream.read(len(_ZIP_MAGIC))
    stream.seek(start)
    if magic != _ZIP_MAGIC:
        if magic.startswith(_PICKLE_PROTO):
            raise UnsafeFileError(
                f"{name}: legacy (non-zip) PyTorch pickles are not loaded, because their format cannot be checked "
                "reliably. Use a .safetensors version of this model, or re-save it with a current PyTorch."
            )
        raise UnsafeFileError(f"{name}: not a PyTorch checkpoint (no zip archive at the start of the file)")
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnsafeFileError(f"{name}: the zip archive is damaged or truncated ({e})") from e
    with archive:
        members = archive.namelist()
        for member in members:
            if not ALLOWED_ZIP_MEMBER.match(member):
                raise UnsafeFileError(f"{name}: unexpected file inside the archive: {member!r}. {_MALICIOUS_HINT}")
        pickles = [m for m in members if DATA_PKL_MEMBER.match(m)]
        if len(pickles) != 1:
            found = "no data.pkl" if not pickles else f"{len(pickles)} data.pkl records"
            raise UnsafeFileError(f"{name}: {found} in the archive (expected exactly one). {_MALICIOUS_HINT}")
        try:
            with archive.open(pickles[0]) as data:
                unpickler = _CheckingUnpickler(data, name, handlers)
                unpickler.load()
        except UnsafeFileError:
            raise
        except Exception as e:  # any other failure means the pickle or the archive is malformed
            raise UnsafeFileError(f"{name}: data.pkl is malformed ({type(e).__name__}: {e})") from e
    return unpickler.approved_extras


def _active_handlers(extra_handler: ExtraHandler | None) -> tuple[ExtraHandler, ...]:
    handlers = tuple(reversed(_extra_handlers.get()))
    return ((extra_handler,) if extra_handler is not None else ()) + handlers


def _inspect(source: FileSource, extra_handler: ExtraHandler | None) -> list[tuple[Any, str]]:
    """Run the static check; return the extension-approved globals torch must also accept."""
    with _binary_stream(source) as stream:
        return _check_archive(stream, _display_name(source), _active_handlers(extra_handler))


def check_pt(filename: FileSource, extra_handler: ExtraHandler | None = None) -> None:
    """Raise `UnsafeFileError` unless the file passes A1111's checkpoint rules (see the module docstring).

    `extra_handler(module, name)` may approve additional globals by returning a non-None object.
    """
    _inspect(filename, extra_handler)


def _torch_refusal_reason(error: Exception) -> str:
    """The informative line of torch's long weights-only error (e.g. "... unsupported GLOBAL posix.system ...")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "WeightsUnpickler error" in line:
            return line.removeprefix("WeightsUnpickler error:").strip()
    return lines[0] if lines else type(error).__name__


def _register_a1111_globals() -> frozenset[Any]:
    global _registered_globals
    with _registration_lock:
        if not _registered_globals:
            _registered_globals = frozenset(_a1111_torch_globals())
            torch.serialization.add_safe_globals(list(_registered_globals))
        return _registered_globals


@contextlib.contextmanager
def _extension_globals(extras: list[tuple[Any, str]]) -> Iterator[None]:
    registered = _register_a1111_globals()
    extras = [extra for extra in dict.fromkeys(extras) if extra not in registered]
    if not extras:
        yield
        return
    with _extension_globals_lock, torch.serialization.safe_globals(extras):
        yield


def _weights_only_load(source: FileSource, extras: list[tuple[Any, str]], *args: Any, **kwargs: Any) -> Any:
    name = _display_name(source)
    with _extension_globals(extras):
        try:
            return _torch_load(source, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError as e:
            # --disable-safe-unpickle cannot help here, so the hint leaves it out
            raise UnsafeFileError(
                f"{name}: refused by PyTorch's weights-only loader ({_torch_refusal_reason(e)}). The file may be "
                "malicious, so it was not loaded. Use a .safetensors version of this model if there is one."
            ) from e
        except FileNotFoundError as e:
            raise NotFoundError(f"{name}: file not found") from e
        except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
            raise UnsafeFileError(f"{name}: could not be loaded ({type(e).__name__}: {e})") from e


def load(filename: FileSource, map_location: Any = None, *, allow_unsafe: bool = False) -> Any:
    """Check the file, then load it with `torch.load(weights_only=True)`; `allow_unsafe` skips only the check."""
    extras = [] if allow_unsafe else _inspect(filename, None)
    return _weights_only_load(filename, extras, map_location=map_location)


def load_with_extra(filename: FileSource, extra_handler: ExtraHandler | None = None, *args: Any, **kwargs: Any) -> Any:
    """Like `load`, allowing the globals `extra_handler` approves; other arguments go to `torch.load`.

    For extensions whose files contain their own classes. Example::

        def handler(module, name):
            if module == "my_ext.model" and name == "Config":
                return Config
            return None

        data = safe.load_with_extra("file.pt", handler, map_location="cpu")
    """
    extras = [] if _guard_allows_unsafe else _inspect(filename, extra_handler)
    return _weights_only_load(filename, extras, *args, **kwargs)


class Extra:
    """Approve extra globals for every check inside the block (also `torch.load` calls once the guard is on)::

        with safe.Extra(handler):
            data = torch.load("file.pt")

    Blocks nest (the innermost handler is asked first) and are local to the thread or task that opens them.
    """

    def __init__(self, handler: ExtraHandler) -> None:
        self.handler = handler
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> Extra:
        self._tokens.append(_extra_handlers.set(_extra_handlers.get() + (self.handler,)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _extra_handlers.reset(self._tokens.pop())


@functools.wraps(_torch_load)
def _guarded_torch_load(
    f: FileSource,
    map_location: Any = None,
    pickle_module: Any = None,
    *,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> Any:
    if pickle_module is not None or weights_only is False:
        log.warning("torch.load(%s): custom unpicklers and weights_only=False are not honoured", _display_name(f))
    extras = [] if _guard_allows_unsafe else _inspect(f, None)
    return _weights_only_load(f, extras, map_location=map_location, **kwargs)


_guarded_torch_load._sd_webui_guard = True


def install_torch_load_guard(*, allow_unsafe: bool = False) -> None:
    """Make `torch.load` (as called by extensions) check files first and always load weights-only.

    Idempotent: a second call only updates `allow_unsafe` (--disable-safe-unpickle, which skips the check but
    keeps weights_only=True; it also applies to `load_with_extra`).
    """
    global _guard_allows_unsafe
    _guard_allows_unsafe = allow_unsafe
    if torch_load_guard_installed():
        return
    torch.load = _guarded_torch_load
    log.debug("torch.load now checks files with the safe unpickler")


def torch_load_guard_installed() -> bool:
    return bool(getattr(torch.load, "_sd_webui_guard", False))
