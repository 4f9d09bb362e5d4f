"""Clocks for the benchmark: sampler it/s as A1111 defines it, seconds per image, peak VRAM.

Sampler it/s is sampler steps over the time of the sampling loop alone (A1111's console progress bar), with the
device synchronised when the loop starts and when it ends, so queued GPU work is counted where it belongs.
Our pipeline marks the start at the first denoiser call (a `cfg_denoiser` callback) and the end when
`p.sample()` returns; diffusers' pipelines open `self.progress_bar(...)` right around their loop, so a stand-in
progress bar marks both ends there.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes allocated by torch on the device since the last reset; None off CUDA."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


class LoopClock:
    """Start and end of one sampling loop, device-synchronised."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start: float | None = None
        self.end: float | None = None

    def mark_start(self) -> None:
        if self.start is None:
            synchronize(self.device)
            self.start = time.perf_counter()

    def mark_end(self) -> None:
        synchronize(self.device)
        self.end = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the sampling loop was not observed (no start or end mark)")
        return self.end - self.start


class ProgressBarClock(LoopClock):
    """Replaces a diffusers pipeline's `progress_bar` (`pipe.progress_bar = clock`): the pipeline enters it just
    before its denoising loop and leaves it just after."""

    def __call__(self, iterable: Any = None, total: int | None = None) -> ProgressBarClock:
        return self

    def __enter__(self) -> ProgressBarClock:
        self.mark_start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mark_end()

    def update(self, n: int = 1) -> None:
        pass


@dataclass
class Run:
    """One timed generation."""

    steps: int
    sampling_s: float
    total_s: float
    peak_bytes: int | None = None

    @property
    def it_per_s(self) -> float:
        return self.steps / self.sampling_s


@dataclass
class Summary:
    """Medians over the timed runs of one pipeline (plus its first, warm-up run)."""

    runs: list[Run] = field(default_factory=list)
    first_total_s: float | None = None

    @property
    def it_per_s(self) -> float:
        return statistics.median(r.it_per_s for r in self.runs)

    @property
    def s_per_image(self) -> float:
        return statistics.median(r.total_s for r in self.runs)

    @property
    def peak_bytes(self) -> int | None:
        values = [r.peak_bytes for r in self.runs if r.peak_bytes is not None]
        return max(values) if values else None

    @property
    def warmup_overhead_s(self) -> float | None:
        """How much longer the first image took than a steady one: the compile time when compiling."""
        if self.first_total_s is None or not self.runs:
            return None
        return max(self.first_total_s - self.s_per_image, 0.0)
