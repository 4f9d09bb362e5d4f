"""State dicts and metadata from .safetensors files: real files load, hostile or damaged headers are refused."""

import json
import struct

import pytest
import safetensors.torch
import torch

from modules import model_files
from modules.errors import NotFoundError, UnsafeFileError, UserError


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 3, 3, 3, generator=generator),
        "first_stage_model.decoder.conv_in.bias": torch.randn(8, generator=generator).half(),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77).reshape(1, 77),
        "conditioner.scale": torch.tensor([0.5], dtype=torch.bfloat16),
        "empty": torch.zeros(0, 4),
    }


def _write(path, header, data: bytes = b"", *, declared_length: int | None = None) -> str:
    """A safetensors-shaped file from a header (dict, str or raw bytes) and a data area."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    length = len(header) if declared_length is None else declared_length
    path.write_bytes(struct.pack("<Q", length) + header + data)
    return str(path)


def _f32(name: str, shape: list[int], begin: int) -> dict:
    count = 1
    for size in shape:
        count *= size
    return {name: {"dtype": "F32", "shape": shape, "data_offsets": [begin, begin + 4 * count]}}


def test_real_safetensors_loads_with_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    metadata = {"ss_output_name": "toy", "modelspec.title": "Tiny – test", "ss_tag_frequency": '{"a": {"b": 1}}'}
    safetensors.torch.save_file(_tensors(), path, metadata=metadata)

    state = model_files.read_state_dict(path)
    assert set(state) == set(_tensors())
    for key, value in _tensors().items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert model_files.read_metadata(path) == metadata  # values stay strings, JSON inside is not decoded

    header = model_files.read_safetensors_header(path)
    info = header.tensors["model.diffusion_model.input_blocks.0.0.weight"]
    assert info.dtype == "F32" and info.shape == (4, 3, 3, 3)
    assert header.data_start == 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_file_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path)
    assert model_files.read_metadata(path) == {}
    assert torch.equal(model_files.read_state_dict(path, device="cpu")["w"], torch.ones(2))


HOSTILE_HEADERS = [
    ("header length beyond the file", lambda p: _write(p, {}, declared_length=4096), "runs past the end of the file"),
    (
        "header length over the cap",
        lambda p: _write(p, {}, declared_length=model_files.MAX_HEADER_BYTES + 1),
        "exceeds the 100000000-byte limit",
    ),
    ("file shorter than the length field", lambda p: p.write_bytes(b"\x10\x00"), "too short"),
    (
        "overlapping offsets",
        lambda p: _write(p, {**_f32("a", [2], 0), **_f32("b", [2], 4)}, bytes(12)),
        "tensors 'a' and 'b' overlap",
    ),
    (
        "offsets beyond the data",
        lambda p: _write(p, _f32("a", [4], 0), bytes(8)),
        "tensor 'a' lies beyond the end of the file",
    ),
    ("gap between tensors", lambda p: _write(p, {**_f32("a", [1], 0), **_f32("b", [1], 8)}, bytes(12)), "unused bytes"),
    ("bytes after the last tensor", lambda p: _write(p, _f32("a", [1], 0), bytes(8)), "cover only 4"),
    (
        "dtype and shape disagree with the span",
        lambda p: _write(p, {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)),
        "needs 6 bytes but data_offsets span 8",
    ),
    (
        "unknown dtype",
        lambda p: _write(p, {"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)),
        "unknown dtype 'F128'",
    ),
    (
        "negative shape",
        lambda p: _write(p, {"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}),
        "invalid shape",
    ),
    (
        "boolean in shape",
        lambda p: _write(p, {"a": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}}, bytes(1)),
        "invalid shape",
    ),
    (
        "offsets backwards",
        lambda p: _write(p, {"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}, bytes(4)),
        "end before they begin",
    ),
    (
        "offsets not a pair",
        lambda p: _write(p, {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0]}}, bytes(1)),
        "invalid data_offsets",
    ),
    ("tensor entry not an object", lambda p: _write(p, {"a": [1, 2]}), "no dtype/shape/data_offsets"),
    (
        "non-UTF-8 metadata",
        lambda p: _write(p, b'{"__metadata__": {"name": "\xff\xfe"}}'),
        "not valid UTF-8",
    ),
    (
        "non-string metadata value",
        lambda p: _write(p, {"__metadata__": {"ss_epoch": 3}}),
        "metadata value 'ss_epoch' is a int, not a string",
    ),
    ("metadata not an object", lambda p: _write(p, {"__metadata__": ["x"]}), "__metadata__ is not a JSON object"),
    ("header not JSON", lambda p: _write(p, "{not json"), "not valid JSON"),
    ("header not an object", lambda p: _write(p, "[1, 2]"), "not a JSON object"),
    ("duplicate tensor names", lambda p: _write(p, '{"a": {}, "a": {}}'), "duplicate key 'a'"),
    ("NaN in the header", lambda p: _write(p, '{"__metadata__": {"x": NaN}}'), "NaN is not allowed"),
    ("deeply nested header", lambda p: _write(p, "[" * 100_000 + "]" * 100_000), "not valid JSON"),
]


@pytest.mark.parametrize(("build", "expected"), [c[1:] for c in HOSTILE_HEADERS], ids=[c[0] for c in HOSTILE_HEADERS])
def test_hostile_safetensors_are_refused(tmp_path, build, expected):
    path = tmp_path / "bad.safetensors"
    build(path)
    for read in (model_files.read_state_dict, model_files.read_metadata, model_files.read_safetensors_header):
        with pytest.raises(UnsafeFileError) as refused:
            read(path)
        assert str(refused.value).startswith(str(path)) and expected in str(refused.value), str(refused.value)


def test_header_cap_applies_to_real_headers(tmp_path, monkeypatch):
    path = tmp_path / "big-header.safetensors"
    safetensors.torch.save_file({"w": torch.ones(1)}, path, metadata={"notes": "x" * 2000})
    monkeypatch.setattr(model_files, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(UnsafeFileError, match="exceeds the 1000-byte limit"):
        model_files.read_state_dict(path)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(_tensors(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(UnsafeFileError, match="lies beyond the end of the file"):
        model_files.read_state_dict(path)
    path.write_bytes(data[:20])
    with pytest.raises(UnsafeFileError, match="runs past the end of the file"):
        model_files.read_state_dict(path)


def test_pickle_without_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(UserError, match="list.pt: does not contain a state dict"):
        model_files.read_state_dict(path)
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": [1, 2]}, path)
    with pytest.raises(UserError, match="'state_dict' entry is a list"):
        model_files.read_state_dict(path)


def test_non_tensor_entries_are_left_out(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1), "state_dict": {}, "step": 3}, "epoch": 1}, path)
    assert list(model_files.read_state_dict(path)) == ["w"]


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(NotFoundError, match="nothing.safetensors: file not found"):
        model_files.read_state_dict(tmp_path / "nothing.safetensors")
    with pytest.raises(NotFoundError):
        model_files.read_metadata(tmp_path / "nothing.safetensors")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported model file type '.onnx'"):
        model_files.read_state_dict(other)
