"""Checkpoints for the benchmark, and how long loading and switching them takes.

Without a user checkpoint the benchmark writes one with random weights in A1111's single-file format
(`checkpoint_factory`, full-size SD1.5 / SDXL architectures in fp16, or the tiny test models) under
`<data dir>/cache/benchmark`, once: later runs reuse it. Switching needs a second checkpoint: a symbolic link to the
first, which the loader treats as another file, so it really reads and builds the model again (from the page cache,
as when switching between two recently used checkpoints).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import torch

from modules import paths_internal
from modules.benchmark.cases import Case
from modules.benchmark.timing import synchronize

log = logging.getLogger(__name__)


def cache_dir() -> str:
    return os.path.join(paths_internal.data_path, "cache", "benchmark")


def _link(target: str, link: str) -> None:
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(target, link)


def checkpoint_pair(case: Case) -> tuple[str, str]:
    """(checkpoint, its switch partner) for the case, writing the random checkpoint if it is not cached yet."""
    from modules import checkpoint_factory

    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    if case.checkpoint:
        first = os.path.abspath(case.checkpoint)
        stem, ext = os.path.splitext(os.path.basename(first))
    else:
        stem, ext = f"random-{case.family}-{case.size}", ".safetensors"
        first = os.path.join(folder, stem + ext)
        if not os.path.exists(first):
            log.info("Writing a %s %s checkpoint with random weights to %s (once)", case.size, case.family, first)
            dtype = torch.float16 if case.size == "full" else torch.float32
            checkpoint_factory.write_checkpoint(first, case.family, size=case.size, seed=0, dtype=dtype)
    second = os.path.join(folder, f"{stem}-switch{ext}")
    _link(first, second)
    yaml = os.path.splitext(first)[0] + ".yaml"
    if os.path.exists(yaml):
        _link(yaml, os.path.splitext(second)[0] + ".yaml")
    return first, second


@dataclass
class LoadTimes:
    load_s: float
    switch_s: float


def _timed_load(info, device: torch.device) -> float:
    from modules import sd_models

    start = time.perf_counter()
    sd_models.load_model(info)
    synchronize(device)
    return time.perf_counter() - start


def measure(first: str, second: str, device: torch.device) -> LoadTimes:
    """Load time from the page cache with nothing loaded, and the slower of two switches between the pair.
    Both files are loaded once beforehand: that fills the page cache and the hash cache."""
    from modules import sd_models, shared

    shared.opts.sd_checkpoints_limit = 1
    infos = [sd_models.CheckpointInfo(first), sd_models.CheckpointInfo(second)]
    for info in infos:
        sd_models.load_model(info)
    sd_models.unload_model_weights()
    load_s = _timed_load(infos[0], device)
    switch_s = max(_timed_load(infos[1], device), _timed_load(infos[0], device))
    return LoadTimes(load_s, switch_s)
