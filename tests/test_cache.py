"""The JSON cache file: atomic saves, corrupt files, the default location and per-file entries."""

import json
import logging
import os

import pytest

from modules import cache as cache_module


@pytest.fixture
def default_cache_restored():
    saved = cache_module._default
    yield
    cache_module._default = saved


def test_round_trip_and_mapping_interface(tmp_path):
    store = cache_module.Cache(tmp_path / "sub" / "cache.json")
    section = store.section("safetensors-metadata")
    section["lora/a"] = {"value": {"ss_output_name": "a"}}
    section["lora/b"] = {"value": {}}
    del section["lora/b"]
    assert dict(section) == {"lora/a": {"value": {"ss_output_name": "a"}}}
    store.save()
    assert json.loads((tmp_path / "sub" / "cache.json").read_text()) == {
        "safetensors-metadata": {"lora/a": {"value": {"ss_output_name": "a"}}}
    }
    assert len(cache_module.Cache(tmp_path / "sub" / "cache.json").section("safetensors-metadata")) == 1
    assert os.listdir(tmp_path / "sub") == ["cache.json"]  # no temporary files left behind


def test_save_is_atomic_replacement(tmp_path, monkeypatch):
    path = tmp_path / "cache.json"
    path.write_text('{"hashes": {"x": {"sha256": "old"}}}')
    store = cache_module.Cache(path)
    store.section("hashes")["x"] = {"sha256": "new"}

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", broken_replace)
    store.save()  # logged, not raised
    assert json.loads(path.read_text()) == {"hashes": {"x": {"sha256": "old"}}}
    assert os.listdir(tmp_path) == ["cache.json"]


@pytest.mark.parametrize("content", ['{"hashes": {', "[1, 2]", "\x00\xff garbage"])
def test_corrupt_file_starts_empty_and_keeps_a_copy(tmp_path, caplog, content):
    path = tmp_path / "cache.json"
    path.write_text(content, encoding="latin-1")
    store = cache_module.Cache(path)
    with caplog.at_level(logging.WARNING, logger="modules.cache"):
        assert dict(store.section("hashes")) == {}
    assert "cache.json.corrupt" in caplog.text
    assert (tmp_path / "cache.json.corrupt").read_bytes() == content.encode("latin-1")
    store.section("hashes")["t"] = {"sha256": "abc"}
    store.save()
    assert json.loads(path.read_text()) == {"hashes": {"t": {"sha256": "abc"}}}


def test_non_object_subsection_is_dropped(tmp_path, caplog):
    path = tmp_path / "cache.json"
    path.write_text('{"hashes": [1], "hashes-addnet": {"lora/x": {"sha256": "f"}}}')
    store = cache_module.Cache(path)
    with caplog.at_level(logging.WARNING, logger="modules.cache"):
        assert dict(store.section("hashes")) == {}
    assert store.section("hashes-addnet")["lora/x"] == {"sha256": "f"}
    assert "'hashes'" in caplog.text


def test_default_location_from_environment_and_setter(tmp_path, monkeypatch, default_cache_restored):
    monkeypatch.setenv(cache_module.ENV_CACHE_FILE, str(tmp_path / "env.json"))
    cache_module._default = None
    cache_module.cache("hashes")["a"] = {"sha256": "1"}
    cache_module.dump_cache()
    assert json.loads((tmp_path / "env.json").read_text()) == {"hashes": {"a": {"sha256": "1"}}}

    cache_module.set_cache_file(tmp_path / "data" / "cache.json")
    assert cache_module.get_cache().path == str(tmp_path / "data" / "cache.json")
    assert dict(cache_module.cache("hashes")) == {}


def test_default_location_without_environment(monkeypatch, default_cache_restored):
    monkeypatch.delenv(cache_module.ENV_CACHE_FILE, raising=False)
    cache_module._default = None
    from modules.paths_internal import data_path

    assert cache_module.get_cache().path == os.path.join(data_path, "cache.json")


def test_cached_data_for_file(tmp_path):
    store = cache_module.Cache(tmp_path / "cache.json")
    model = tmp_path / "x.safetensors"
    model.write_bytes(b"12345")
    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    assert cache_module.cached_data_for_file("meta", "lora/x", model, compute, store=store) == {"n": 1}
    assert cache_module.cached_data_for_file("meta", "lora/x", model, compute, store=store) == {"n": 1}
    model.write_bytes(b"123456")
    assert cache_module.cached_data_for_file("meta", "lora/x", model, compute, store=store) == {"n": 2}
    assert cache_module.cached_data_for_file("meta", "lora/none", model, lambda: None, store=store) is None
    assert "lora/none" not in store.section("meta")
    assert json.loads((tmp_path / "cache.json").read_text())["meta"]["lora/x"]["value"] == {"n": 2}
