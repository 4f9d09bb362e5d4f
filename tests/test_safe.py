"""The safe unpickler: real checkpoints load, hostile ones are refused without running anything.

Every hostile payload would create a marker file if any of it ran; the tests check the marker is never there.
"""

import io
import marshal
import os
import pickle
import subprocess
import sys
import threading
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import model_files, safe
from modules.errors import NotFoundError, UnsafeFileError

EXTENSIONS = (".ckpt", ".pt", ".bin", ".pth")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "EXECUTED"
    yield path
    assert not path.exists(), "a hostile payload was executed"


@pytest.fixture
def guard_restored(monkeypatch):
    """Let a test install the torch.load guard; the original torch.load comes back afterwards."""
    monkeypatch.setattr(torch, "load", torch.load)
    monkeypatch.setattr(safe, "_guard_allows_unsafe", False)


# --- building files -----------------------------------------------------------------------------------------------


class Reduce:
    """Pickles as `func(*args)`; nothing is called while pickling."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _torch_zip(path: Path, data_pkl: bytes, extra: dict[str, bytes] | None = None) -> Path:
    members = {"archive/data.pkl": data_pkl, "archive/byteorder": b"little", "archive/version": b"3\n"}
    return _zip(path, {**members, **(extra or {})})


def _opcodes(*parts: bytes) -> bytes:
    return b"".join(parts)


def _state_dict() -> dict:
    return {
        "model.diffusion_model.w": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "model.diffusion_model.h": torch.tensor([1.5, -2.0], dtype=torch.float16),
        "first_stage_model.b": torch.tensor([0.25], dtype=torch.bfloat16),
        "cond_stage_model.ids": torch.arange(4, dtype=torch.int64),
    }


def _assert_same_tensors(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


# --- hostile files --------------------------------------------------------------------------------------------------


def _hostile_cases(marker: Path) -> list[tuple[str, object]]:
    """(name, builder, expected message part); `builder(path)` writes one hostile file."""
    touch = f"touch {marker}"
    py_touch = f"open({str(marker)!r}, 'w').close()"
    evil = Reduce(os.system, touch)

    def saved(obj):
        return lambda path: torch.save(obj, path)

    def raw(data_pkl, extra=None):
        return lambda path: _torch_zip(path, data_pkl, extra)

    getattr_chain = _opcodes(
        b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00\x00systemtR",
        b"(X" + len(touch).to_bytes(4, "little") + touch.encode() + b"tR.",
    )
    protocol0 = f"cos\nsystem\n(S'{touch}'\ntR.".encode()
    inst_opcode = f"(S'{touch}'\nios\nsystem\n.".encode()
    obj_opcode = b"\x80\x02(csubprocess\nPopen\nX\x05\x00\x00\x00toucho."
    benign = pickle.dumps({"a": 1}, protocol=2)
    inner = pickle.dumps(Reduce(os.system, touch), protocol=2)
    code = compile(py_touch, "<payload>", "exec")

    return [
        ("os.system in a torch.save", saved({"state_dict": {"w": torch.ones(2)}, "x": evil}), "'posix/system'"),
        ("builtins.eval", saved({"x": Reduce(eval, py_touch)}), "'__builtin__/eval'"),
        ("builtins.exec", saved({"x": Reduce(exec, py_touch)}), "'__builtin__/exec'"),
        # protocol 2 (torch.save's) writes Python 2 module names: subprocess -> commands, _pickle -> pickle
        ("subprocess.call", saved({"x": Reduce(subprocess.call, ["touch", str(marker)])}), "'commands/call'"),
        ("getattr(__import__('os'), 'system') chain", raw(getattr_chain), "'__builtin__/getattr'"),
        (
            "__reduce__ nested in dicts and lists",
            saved({"state_dict": {"a": [1, {"b": (torch.zeros(1), [evil])}]}}),
            "'posix/system'",
        ),
        ("payload after many real tensors", saved({**_state_dict(), "zzz": evil}), "'posix/system'"),
        ("protocol 4 STACK_GLOBAL", raw(pickle.dumps({"x": evil}, protocol=4)), "'posix/system'"),
        ("protocol 0 GLOBAL", raw(protocol0), "'os/system'"),
        ("INST opcode", raw(inst_opcode), "'os/system'"),
        ("OBJ opcode", raw(obj_opcode), "'subprocess/Popen'"),
        ("nested pickle via pickle.loads", saved({"x": Reduce(pickle.loads, inner)}), "'pickle/loads'"),
        ("marshal code object", saved({"x": Reduce(marshal.loads, marshal.dumps(code))}), "'marshal/loads'"),
        ("torch function off the list: torch.load", saved({"x": Reduce(torch.load, str(marker))}), "is forbidden"),
        (
            "torch function off the list: storage _load_from_bytes",
            raw(b"\x80\x02ctorch.storage\n_load_from_bytes\nC\x00\x85R."),
            "'torch.storage/_load_from_bytes'",
        ),
        ("torch module class off the list", saved({"m": torch.nn.Linear(1, 1)}), "'torch.nn.modules.linear/Linear'"),
        (
            "numpy function off the list",
            raw(b"\x80\x02cnumpy.testing._private.utils\nrunstring\n(X\x00\x00\x00\x00}tR."),
            "'numpy.testing._private.utils/runstring'",
        ),
        (
            "dotted name through STACK_GLOBAL",
            raw(b"\x80\x04\x8c\x0bcollections\x8c\x14OrderedDict.fromkeys\x93."),
            "'collections/OrderedDict.fromkeys'",
        ),
        ("allowed module, other name", raw(b"\x80\x02c__builtin__\nsetattr\n."), "'__builtin__/setattr'"),
        ("extra zip member", raw(benign, {"archive/payload.py": b"import os"}), "unexpected file inside the archive"),
        ("path traversal member", raw(benign, {"archive/../../evil.sh": b"#!/bin/sh"}), "unexpected file"),
        (
            "two data.pkl",
            lambda path: _zip(path, {"a/data.pkl": benign, "b/data.pkl": pickle.dumps({"x": evil}, protocol=2)}),
            "2 data.pkl records",
        ),
        ("no data.pkl", lambda path: _zip(path, {"archive/version": b"3\n"}), "no data.pkl"),
        (
            "legacy non-zip format",
            lambda path: torch.save({"x": evil}, path, _use_new_zipfile_serialization=False),
            "legacy (non-zip)",
        ),
        ("plain pickle file", lambda path: path.write_bytes(pickle.dumps(evil, protocol=2)), "legacy (non-zip)"),
        ("persistent id that is not a storage", raw(b"\x80\x02X\x04\x00\x00\x00evil\x85Q."), "persistent id"),
        ("truncated zip", lambda path: path.write_bytes(b"PK\x03\x04" + b"\x00" * 40), "damaged or truncated"),
    ]


def _hostile_ids() -> list[str]:
    return [name for name, _, _ in _hostile_cases(Path("/nonexistent"))]


@pytest.mark.parametrize("index", range(len(_hostile_ids())), ids=_hostile_ids())
def test_hostile_pickles_are_refused_without_running(index, tmp_path, marker, guard_restored):
    name, build, expected = _hostile_cases(marker)[index]
    path = tmp_path / f"hostile{EXTENSIONS[index % len(EXTENSIONS)]}"
    build(path)

    for attempt in (
        lambda: safe.load(path),
        lambda: safe.check_pt(path),
        lambda: model_files.read_state_dict(path),
    ):
        with pytest.raises(UnsafeFileError) as refused:
            attempt()
        message = str(refused.value)
        assert str(path) in message and expected in message, message

    safe.install_torch_load_guard()
    with pytest.raises(UnsafeFileError, match="hostile"):
        torch.load(path, map_location="cpu", weights_only=False)  # "extension code" asking for the unsafe mode


def test_forbidden_global_message_names_file_and_warns(tmp_path, marker):
    path = tmp_path / "model.ckpt"
    torch.save({"x": Reduce(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafeFileError) as refused:
        safe.load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: global 'posix/system' is forbidden.")
    assert "may be malicious" in message


def test_disabled_check_still_loads_weights_only(tmp_path, marker):
    """--disable-safe-unpickle skips the allow list, but torch's weights-only loader still refuses code."""
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"x": Reduce(os.system, f"touch {marker}")}, hostile)
    with pytest.raises(UnsafeFileError, match="weights-only loader .*GLOBAL posix.system") as refused:
        safe.load(hostile, allow_unsafe=True)
    assert "--disable-safe-unpickle" not in str(refused.value)

    legacy = tmp_path / "legacy.pt"
    torch.save(_state_dict(), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeFileError, match="legacy"):
        safe.load(legacy)
    _assert_same_tensors(safe.load(legacy, allow_unsafe=True), _state_dict())


# --- real files -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_real_checkpoint_loads(tmp_path, extension):
    path = tmp_path / f"model{extension}"
    torch.save(_state_dict(), path)
    _assert_same_tensors(safe.load(path, map_location="cpu"), _state_dict())
    _assert_same_tensors(model_files.read_state_dict(path), _state_dict())


def test_lightning_checkpoint_is_unwrapped(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": _state_dict(), "global_step": 470000, "epoch": 3}, path)
    _assert_same_tensors(model_files.read_state_dict(path), _state_dict())
    loaded = safe.load(path)
    assert loaded["global_step"] == 470000


class ModelCheckpoint:
    """Writes old checkpoints that reference pytorch_lightning's class (Lightning is not installed)."""


ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"


def test_everything_on_a1111s_allow_list_loads(tmp_path, monkeypatch):
    """Old checkpoints: numpy 1.x scalars/arrays, Lightning's ModelCheckpoint, sets, bytes, ParameterDict."""
    lightning = types.ModuleType(ModelCheckpoint.__module__)
    lightning.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.callbacks", types.ModuleType("pytorch_lightning.callbacks"))
    monkeypatch.setitem(sys.modules, lightning.__name__, lightning)
    checkpoint = ModelCheckpoint()
    checkpoint.best_model_score = 0.5
    content = {
        "state_dict": OrderedDict(_state_dict()),
        "global_step": np.int64(840000),
        "history": np.arange(3.0),
        "callbacks": {ModelCheckpoint: {"monitor": None}},
        "checkpoint": checkpoint,
        "tags": {"ema", "pruned"},
        "raw": b"\x00\xff",
        "params": torch.nn.ParameterDict({"p": torch.nn.Parameter(torch.ones(2))}),
    }
    buffer = io.BytesIO()
    torch.save(content, buffer)
    monkeypatch.delitem(sys.modules, lightning.__name__)  # as on a machine without Lightning
    # numpy 1.x wrote numpy.core.multiarray, the name on A1111's list
    with zipfile.ZipFile(buffer) as saved:
        members = {n: saved.read(n) for n in saved.namelist()}
    members["archive/data.pkl"] = members["archive/data.pkl"].replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"
    )
    path = _zip(tmp_path / "old.ckpt", members)

    loaded = safe.load(path)
    _assert_same_tensors(loaded["state_dict"], _state_dict())
    assert loaded["global_step"] == 840000
    np.testing.assert_array_equal(loaded["history"], [0.0, 1.0, 2.0])
    assert loaded["tags"] == {"ema", "pruned"} and loaded["raw"] == b"\x00\xff"
    assert torch.equal(loaded["params"]["p"], torch.ones(2))
    assert loaded["checkpoint"].state == {"best_model_score": 0.5}  # an inert stand-in, not Lightning's class
    _assert_same_tensors(model_files.read_state_dict(path), _state_dict())

    # a handler approving a global A1111 already allows must not withdraw it from later loads
    def scalar_handler(module, name):
        return np._core.multiarray.scalar if (module, name) == ("numpy.core.multiarray", "scalar") else None

    assert safe.load_with_extra(path, scalar_handler)["global_step"] == 840000
    assert safe.load(path)["global_step"] == 840000


class ExtensionConfig:
    """A class an extension stores in its own .pt files."""

    def __init__(self, rank=0):
        self.rank = rank


def _extension_file(tmp_path) -> Path:
    path = tmp_path / "extension.pt"
    torch.save({"config": ExtensionConfig(rank=8), "w": torch.ones(3)}, path)
    return path


def _handler(module, name):
    if module == __name__ and name == "ExtensionConfig":
        return ExtensionConfig
    return None


def test_extension_globals_need_a_handler(tmp_path):
    path = _extension_file(tmp_path)
    with pytest.raises(UnsafeFileError, match=f"global '{__name__}/ExtensionConfig' is forbidden"):
        safe.load(path)

    loaded = safe.load_with_extra(path, _handler, map_location="cpu")
    assert isinstance(loaded["config"], ExtensionConfig) and loaded["config"].rank == 8
    safe.check_pt(path, _handler)

    with safe.Extra(_handler):
        assert safe.load(path)["config"].rank == 8
        with safe.Extra(lambda module, name: None):  # nested blocks keep the outer handler
            assert safe.load(path)["config"].rank == 8
    with pytest.raises(UnsafeFileError):
        safe.load(path)  # the block is over


def test_concurrent_loads_with_and_without_extension_globals(tmp_path):
    extension = _extension_file(tmp_path)
    plain = tmp_path / "plain.ckpt"
    torch.save(_state_dict(), plain)
    errors = []

    def work(index):
        try:
            for _ in range(10):
                if index % 2:
                    with safe.Extra(_handler):
                        assert safe.load(extension)["config"].rank == 8
                else:
                    _assert_same_tensors(safe.load(plain), _state_dict())
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_handler_does_not_open_other_globals(tmp_path, marker):
    path = tmp_path / "mixed.pt"
    torch.save({"config": ExtensionConfig(), "x": Reduce(os.system, f"touch {marker}")}, path)
    with pytest.raises(UnsafeFileError, match="'posix/system'"):
        safe.load_with_extra(path, _handler)


def test_torch_load_guard_is_idempotent_and_checks_extension_calls(tmp_path, marker, guard_restored):
    original = torch.load
    assert not safe.torch_load_guard_installed()
    safe.install_torch_load_guard()
    guard = torch.load
    safe.install_torch_load_guard()
    assert torch.load is guard and torch.load is not original
    assert safe.torch_load_guard_installed()
    assert torch.load.__wrapped__ is original

    good = tmp_path / "good.pt"
    torch.save(_state_dict(), good)
    _assert_same_tensors(torch.load(good, map_location="cpu"), _state_dict())

    hostile = tmp_path / "hostile.pt"
    torch.save({"x": Reduce(os.system, f"touch {marker}")}, hostile)
    with pytest.raises(UnsafeFileError, match="'posix/system'"):
        torch.load(hostile)
    with pytest.raises(UnsafeFileError, match="'posix/system'"):
        torch.load(str(hostile), "cpu", pickle, weights_only=False)

    # file objects are checked too, and left where they were
    buffer = io.BytesIO(hostile.read_bytes())
    with pytest.raises(UnsafeFileError):
        torch.load(buffer)
    buffer = io.BytesIO(good.read_bytes())
    _assert_same_tensors(torch.load(buffer), _state_dict())

    # extensions' Extra blocks apply to their torch.load calls
    extension = _extension_file(tmp_path)
    with pytest.raises(UnsafeFileError):
        torch.load(extension)
    with safe.Extra(_handler):
        assert torch.load(extension)["config"].rank == 8


def test_guard_with_disabled_check_keeps_weights_only(tmp_path, marker, guard_restored):
    safe.install_torch_load_guard(allow_unsafe=True)
    legacy = tmp_path / "legacy.pt"
    torch.save(_state_dict(), legacy, _use_new_zipfile_serialization=False)
    _assert_same_tensors(torch.load(legacy), _state_dict())
    hostile = tmp_path / "hostile.pt"
    torch.save({"x": Reduce(os.system, f"touch {marker}")}, hostile)
    with pytest.raises(UnsafeFileError, match="weights-only"):
        torch.load(hostile, weights_only=False)


def test_damaged_and_missing_files(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save(_state_dict(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeFileError, match="truncated.ckpt: the zip archive is damaged or truncated"):
        safe.load(truncated)
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("hello")
    with pytest.raises(UnsafeFileError, match="notes.pt: not a PyTorch checkpoint"):
        safe.load(not_a_model)
    with pytest.raises(NotFoundError, match="missing.ckpt: file not found"):
        safe.load(tmp_path / "missing.ckpt")
