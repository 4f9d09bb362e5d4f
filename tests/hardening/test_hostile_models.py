"""Hostile model files through every loader: checkpoint, VAE, LoRA, embedding, hypernetwork, upscaler, and extension
code calling torch.load. Nothing runs (no marker file appears) and each file is refused with a message that names
it and the reason.

The payloads are proven live first: loading them the unsafe way in a separate process creates every marker.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from modules import hypernetworks, model_files, safe, sd_models, sd_vae, textual_inversion, upscaler_nets
from modules.errors import UserError
from modules.networks import network
from modules.networks.ondisk import NetworkOnDisk
from tests.hardening import hostile_pickles
from tests.hardening.figures import record
from tests.test_model_files import HOSTILE_HEADERS

# What a refusal says (one of these, after the file's name).
REASONS = (
    "is forbidden",
    "legacy (non-zip)",
    "unexpected file inside the archive",
    "data.pkl",
    "not a PyTorch checkpoint",
    "damaged or truncated",
    "persistent id",
    "malformed",
    "weights-only loader",
)


class ExtensionClass:
    """A class an extension approves for its own files with safe.Extra / load_with_extra."""


def _extension_handler(module: str, name: str):
    return ExtensionClass if (module, name) == (__name__, "ExtensionClass") else None


def _load_extension_file_object(path: Path) -> None:
    with open(path, "rb") as f:
        torch.load(f, map_location="cpu")


def _load_embedding(path: Path) -> None:
    database = textual_inversion.EmbeddingDatabase()
    if path.suffix not in textual_inversion.EMBEDDING_EXTENSIONS:
        pytest.fail("only embedding file types are scanned")
    database.load_from_file(str(path), path.name)


LOADERS = {
    "checkpoint": lambda path: sd_models.load_model(sd_models.CheckpointInfo(str(path))),
    "VAE": lambda path: sd_vae.load_vae_dict(str(path)),
    "LoRA": lambda path: network.load_network("hostile", NetworkOnDisk("hostile", str(path))),
    "embedding": _load_embedding,
    "hypernetwork": lambda path: hypernetworks.Hypernetwork().load(str(path)),
    "upscaler": lambda path: upscaler_nets.read_state_dict(str(path)),
    "extension torch.load": lambda path: torch.load(str(path), map_location="cpu"),
    "extension torch.load(weights_only=False)": lambda path: torch.load(str(path), weights_only=False),
    "extension torch.load(file object)": _load_extension_file_object,
    "extension safe.load_with_extra": lambda path: safe.load_with_extra(str(path), _extension_handler),
}
# Embeddings are only read from .pt/.bin/.safetensors files: a .ckpt in embeddings/ is never opened.
SKIPPED = {("embedding", ".ckpt")}


@pytest.fixture
def torch_load_guard(monkeypatch):
    """torch.load as the app installs it; the original comes back after the test."""
    monkeypatch.setattr(torch, "load", torch.load)
    monkeypatch.setattr(safe, "_guard_allows_unsafe", False)
    safe.install_torch_load_guard()


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> tuple[Path, Path]:
    """Every payload in every extension; one marker shared by all (any execution anywhere leaves a trace)."""
    folder = tmp_path_factory.mktemp("hostile-pickles")
    marker = folder / "EXECUTED"
    for index, payload in enumerate(hostile_pickles.PAYLOADS):
        for extension in hostile_pickles.EXTENSIONS:
            hostile_pickles.write(payload, folder / f"hostile{index:03d}{extension}", marker)
    return folder, marker


def test_there_are_enough_distinct_payloads():
    names = [p.name for p in hostile_pickles.PAYLOADS]
    assert len(set(names)) == len(names) >= 50
    assert sum(p.live for p in hostile_pickles.PAYLOADS) >= 50


def test_live_payloads_run_when_loaded_unsafely(tmp_path):
    """The control: outside this process, the unsafe loaders run every live payload (each leaves its marker)."""
    live = [(i, p) for i, p in enumerate(hostile_pickles.PAYLOADS) if p.live]
    for index, payload in live:
        hostile_pickles.write(payload, tmp_path / f"{index}.pt", tmp_path / f"marker{index}")
    script = (
        "import pickle, sys, torch\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        torch.load(path, weights_only=False)\n"
        "    except Exception:\n"
        "        try:\n"
        "            pickle.load(open(path, 'rb'))\n"
        "        except Exception:\n"
        "            pass\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, *(str(tmp_path / f"{i}.pt") for i, _ in live)],
        cwd=tmp_path,
        capture_output=True,
        timeout=240,
        check=False,
    )
    deadline = time.monotonic() + 10  # Popen and os.popen payloads finish on their own
    missing = live
    while missing and time.monotonic() < deadline:
        missing = [(i, p) for i, p in live if not hostile_pickles.traces(tmp_path / f"marker{i}")]
        time.sleep(0.2)
    assert not [p.name for _, p in missing]


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_refuses_every_hostile_pickle(loader, hostile_dir, torch_load_guard):
    folder, marker = hostile_dir
    load = LOADERS[loader]
    tried, refused, problems = 0, 0, []
    reasons: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    for path in sorted(folder.glob("hostile*")):
        if (loader, path.suffix) in SKIPPED:
            continue
        tried += 1
        try:
            load(path)
        except UserError as e:
            message = str(e)
            reason = next((r for r in REASONS if r in message), None)
            if path.name in message and reason:
                refused += 1
                reasons[reason] += 1
            else:
                problems.append(f"{path.name}: unclear message {message!r}")
        except Exception as e:  # anything but a clear refusal is a bug
            problems.append(f"{path.name}: {type(e).__name__}: {e}")
        else:
            problems.append(f"{path.name}: loaded")
    executed = len(hostile_pickles.traces(marker))
    record(
        "hostile pickles",
        loader=loader,
        tried=tried,
        refused=refused,
        executed=executed,
        seconds=round(time.perf_counter() - start, 2),
        reasons=dict(reasons),
    )
    assert executed == 0
    assert not problems, "\n".join(problems[:20])
    assert tried == refused >= 50 * (len(hostile_pickles.EXTENSIONS) - (1 if loader == "embedding" else 0))


def test_a_failed_checkpoint_load_keeps_the_loaded_model(tiny_checkpoints, hostile_dir):
    folder, marker = hostile_dir
    from modules import devices, shared

    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    model = sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1"].name))
    with pytest.raises(UserError, match="is forbidden"):
        sd_models.reload_model_weights(info=sd_models.CheckpointInfo(str(folder / "hostile000.ckpt")))
    assert sd_models.model_data.sd_model is model
    assert not hostile_pickles.traces(marker)


# --- safetensors ----------------------------------------------------------------------------------------------------

SAFETENSORS_LOADERS = {
    "checkpoint": LOADERS["checkpoint"],
    "VAE": LOADERS["VAE"],
    "LoRA": LOADERS["LoRA"],
    "embedding": LOADERS["embedding"],
    "upscaler": LOADERS["upscaler"],
    "metadata": lambda path: model_files.read_metadata(path),
}


def test_every_loader_refuses_every_hostile_safetensors(tmp_path):
    tried, refused, problems = 0, 0, []
    for index, (name, build, expected) in enumerate(HOSTILE_HEADERS):
        path = tmp_path / f"hostile{index:02d}.safetensors"
        build(path)
        for loader, load in SAFETENSORS_LOADERS.items():
            tried += 1
            try:
                load(path)
            except UserError as e:
                if path.name in str(e) and expected in str(e):
                    refused += 1
                else:
                    problems.append(f"{name} via {loader}: unclear message {e}")
            except Exception as e:  # anything but a clear refusal is a bug
                problems.append(f"{name} via {loader}: {type(e).__name__}: {e}")
            else:
                problems.append(f"{name} via {loader}: loaded")
    record(
        "hostile safetensors",
        kinds=len(HOSTILE_HEADERS),
        loaders=len(SAFETENSORS_LOADERS),
        tried=tried,
        refused=refused,
    )
    assert not problems, "\n".join(problems[:20])
    assert tried == refused == len(HOSTILE_HEADERS) * len(SAFETENSORS_LOADERS)


def test_a_header_length_at_the_cap_is_refused_without_reading_it(tmp_path):
    """A file that declares a 100 MB header (the format's limit, plus one) is refused from its first 8 bytes."""
    path = tmp_path / "huge-header.safetensors"
    with open(path, "wb") as f:
        f.write((model_files.MAX_HEADER_BYTES + 1).to_bytes(8, "little"))
        f.truncate(model_files.MAX_HEADER_BYTES + 64)  # sparse: the size is real, nothing is written
    start = time.perf_counter()
    with pytest.raises(UserError, match="exceeds the 100000000-byte limit"):
        model_files.read_state_dict(path)
    assert time.perf_counter() - start < 1.0


def test_a_real_100_mb_header_is_read_within_limits(tmp_path):
    """A header of 100,000,000 bytes (the format's limit) is a legal file: metadata of that size loads in bounded
    time and memory, and its tensors load."""
    import psutil

    path = tmp_path / "big-metadata.safetensors"
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"notes": ""}}
    padding = model_files.MAX_HEADER_BYTES - len(json.dumps(header, separators=(",", ":")))
    header["__metadata__"]["notes"] = "<script>alert(1)</script>"[: min(padding, 25)] + "x" * (padding - 25)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) == model_files.MAX_HEADER_BYTES
    path.write_bytes(len(text).to_bytes(8, "little") + text + torch.ones(2).numpy().tobytes())
    del text
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    metadata = model_files.read_metadata(path)
    seconds = time.perf_counter() - start
    grown = process.memory_info().rss - before
    assert len(metadata["notes"]) == padding
    assert torch.equal(model_files.read_state_dict(path)["w"], torch.ones(2))
    record("100 MB safetensors header", seconds=round(seconds, 2), rss_growth_mb=round(grown / 2**20))
    assert seconds < 30


def test_metadata_is_returned_as_text_never_interpreted(tmp_path):
    """HTML and script in metadata stay plain strings (the views escape them; tests/hardening/test_escaping.py)."""
    path = tmp_path / "lora.safetensors"
    evil = {
        "ss_output_name": "<img src=x onerror=alert(1)>",
        "ss_tag_frequency": '{"<script>": {"x": 1}}',
        "modelspec.title": '"><svg onload=alert(1)>',
    }
    safetensors.torch.save_file({"w": torch.ones(1)}, path, metadata=evil)
    assert model_files.read_metadata(path) == evil
    on_disk = NetworkOnDisk("lora", str(path))
    assert on_disk.alias == evil["ss_output_name"]  # a name like any other; escaping is the view's job
    assert not os.path.exists("x")
