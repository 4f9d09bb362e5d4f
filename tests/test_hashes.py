"""Model hashes against the parity data (files rebuilt from hashes.json recipes) and the hash cache."""

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from modules import cache as cache_module
from modules import hashes
from modules.errors import NotFoundError

FIXTURES = Path(__file__).parent / "fixtures"
HASH_CASES = json.loads((FIXTURES / "hashes.json").read_text())["cases"]


def _payload(recipe: dict) -> bytes:
    if recipe["kind"] == "mod251":
        offset = recipe.get("offset", 0)
        return bytes((i + offset) % 251 for i in range(recipe["length"]))
    if recipe["kind"] == "lcg":
        out = bytearray(recipe["length"])
        x = recipe["seed"]
        for i in range(recipe["length"]):
            x = (1103515245 * x + 12345) & 0x7FFFFFFF
            out[i] = (x >> 16) & 0xFF
        return bytes(out)
    if recipe["kind"] == "safetensors":
        header = recipe["header_json"].encode("utf-8")
        length = recipe.get("declared_header_length", len(header))
        return length.to_bytes(8, "little") + header + _payload(recipe["payload"])
    raise AssertionError(f"unknown recipe {recipe['kind']}")


@pytest.fixture(scope="module")
def hash_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hashes")
    files = {}
    for case in HASH_CASES:
        data = _payload(case["recipe"])
        assert len(data) == case["size"]
        assert hashlib.sha256(data[:16]).hexdigest() == case["sha256_of_first_16_bytes"]
        path = directory / (case["recipe"]["name"] + (".safetensors" if "addnet_hash" in case else ".bin"))
        path.write_bytes(data)
        files[case["recipe"]["name"]] = path
    return files


@pytest.fixture
def store(tmp_path):
    return cache_module.Cache(tmp_path / "cache.json")


@pytest.mark.parametrize("case", HASH_CASES, ids=[c["recipe"]["name"] for c in HASH_CASES])
def test_hashes_match_parity(case, hash_files, store):
    path = hash_files[case["recipe"]["name"]]
    assert hashes.model_hash(path) == case["model_hash_legacy"]
    assert hashes.calculate_sha256(path) == case["sha256"]
    full = hashes.sha256(path, "checkpoint/" + path.name, cache=store)
    assert full == case["sha256"]
    assert hashes.shorthash(full) == case["shorthash10"]
    assert hashes.shorthash(full, hashes.EMBEDDING_SHORTHASH_LENGTH) == case["sha256_12"]
    if "addnet_hash" in case:
        with open(path, "rb") as file:
            assert hashes.addnet_hash_safetensors(file) == case["addnet_hash"]
        addnet = hashes.sha256(path, "lora/" + path.stem, use_addnet_hash=True, cache=store)
        assert addnet == case["addnet_hash"]
        assert hashes.shorthash(addnet, hashes.LORA_SHORTHASH_LENGTH) == case["lora_shorthash12"]


def test_addnet_hash_of_header_past_the_end_is_the_empty_hash(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10_000).to_bytes(8, "little") + b"{}")
    with open(path, "rb") as file:
        assert hashes.addnet_hash_safetensors(file) == hashlib.sha256(b"").hexdigest()


def test_missing_files(tmp_path, store):
    assert hashes.model_hash(tmp_path / "none.ckpt") == "NOFILE"
    with pytest.raises(NotFoundError, match="none.ckpt"):
        hashes.calculate_sha256(tmp_path / "none.ckpt")
    with pytest.raises(NotFoundError, match="none.ckpt"):
        hashes.sha256(tmp_path / "none.ckpt", "checkpoint/none", cache=store)
    assert hashes.sha256_from_cache(tmp_path / "none.ckpt", "checkpoint/none", cache=store) is None
    assert hashes.shorthash(None) is None


def test_cache_is_persisted_in_a1111_layout(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}abc")
    store = cache_module.Cache(tmp_path / "cache.json")
    full = hashes.sha256(model, "checkpoint/model.safetensors", cache=store)
    addnet = hashes.sha256(model, "lora/model", use_addnet_hash=True, cache=store)
    assert addnet == hashlib.sha256(b"abc").hexdigest()

    saved = json.loads((tmp_path / "cache.json").read_text())
    entry = saved["hashes"]["checkpoint/model.safetensors"]
    assert entry["sha256"] == full
    assert entry["mtime"] == os.path.getmtime(model)
    assert entry["size"] == model.stat().st_size
    assert entry["path"] == str(model.resolve())
    assert saved["hashes-addnet"]["lora/model"]["sha256"] == addnet

    fresh = cache_module.Cache(tmp_path / "cache.json")
    assert hashes.sha256_from_cache(model, "checkpoint/model.safetensors", cache=fresh) == full
    assert hashes.sha256_from_cache(model, "checkpoint/model.safetensors", use_addnet_hash=True, cache=fresh) is None


def test_cached_hash_is_used_until_the_file_changes(tmp_path, store, monkeypatch):
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"one")
    assert hashes.sha256(model, "checkpoint/m", cache=store) == hashlib.sha256(b"one").hexdigest()

    def fail(*args):
        raise AssertionError("hash recomputed although cached")

    monkeypatch.setattr(hashes, "_sha256_of_stream", fail)
    assert hashes.sha256(model, "checkpoint/m", cache=store) == hashlib.sha256(b"one").hexdigest()
    monkeypatch.undo()

    stat = model.stat()
    model.write_bytes(b"two!")  # size changes
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert hashes.sha256_from_cache(model, "checkpoint/m", cache=store) is None
    assert hashes.sha256(model, "checkpoint/m", cache=store) == hashlib.sha256(b"two!").hexdigest()

    model.write_bytes(b"six!")  # same size, new mtime
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert hashes.sha256_from_cache(model, "checkpoint/m", cache=store) is None

    moved = tmp_path / "moved.ckpt"
    model.rename(moved)  # same size and mtime, other path
    assert hashes.sha256(moved, "checkpoint/m", cache=store) == hashlib.sha256(b"six!").hexdigest()
    assert hashes.sha256_from_cache(model, "checkpoint/m", cache=store) is None


def test_no_hashing_returns_only_cached_values(tmp_path, store):
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"data")
    assert hashes.sha256(model, "checkpoint/m", no_hashing=True, cache=store) is None
    expected = hashes.sha256(model, "checkpoint/m", cache=store)
    assert hashes.sha256(model, "checkpoint/m", no_hashing=True, cache=store) == expected


def test_a1111_entries_without_size_and_path_are_recomputed(tmp_path):
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"data")
    (tmp_path / "cache.json").write_text(
        json.dumps({"hashes": {"checkpoint/m": {"mtime": os.path.getmtime(model), "sha256": "0" * 64}}})
    )
    store = cache_module.Cache(tmp_path / "cache.json")
    assert hashes.sha256_from_cache(model, "checkpoint/m", cache=store) is None
    assert hashes.sha256(model, "checkpoint/m", cache=store) == hashlib.sha256(b"data").hexdigest()


def test_concurrent_hashing_keeps_a_valid_cache(tmp_path, store):
    models = []
    for i in range(8):
        model = tmp_path / f"m{i}.ckpt"
        model.write_bytes(bytes([i]) * 1000)
        models.append(model)
    errors = []

    def work(model):
        try:
            for _ in range(5):
                hashes.sha256(model, "checkpoint/" + model.name, cache=store)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    saved = json.loads((tmp_path / "cache.json").read_text())["hashes"]
    assert {title: entry["sha256"] for title, entry in saved.items()} == {
        "checkpoint/" + m.name: hashlib.sha256(m.read_bytes()).hexdigest() for m in models
    }
