"""BENCHMARKS.md: one table row per case and configuration, naming the machine, versions and settings."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass

import torch

from modules.benchmark.timing import Summary

PREAMBLE = """# Benchmarks

Rows are appended by `python -m modules.benchmark` (see README.md). Every row compares this program's pipeline
(`processing.process_images`, as the UI and API run it) with plain eager diffusers (`StableDiffusionPipeline` /
`StableDiffusionXLPipeline`, SDPA attention, `EulerDiscreteScheduler`) built from the same loaded modules, in the
same run, on the same weights and precision.

- **it/s**: sampler steps / time of the sampling loop, the device synchronised at both ends (A1111's console it/s;
  one step = one UNet call on the cond+uncond batch). **× it/s** = ours / diffusers.
- **s/img**: end to end, prompt to PIL image (text encoders, sampling, VAE decode; no file saving).
  **× s/img** = diffusers / ours (above 1: ours is faster).
- Medians over the timed runs, after one warm-up image each. **compile s**: how much longer the first image took
  than a steady one (the compile, when compiling; in brackets: again with the compile cache filled).
- **peak VRAM**: `torch.cuda.max_memory_allocated` during one image (weights included), ours / diffusers.
- **load s**: a checkpoint from the page cache to ready on the device, nothing loaded before; **switch s**: the slower
  of two switches between two cached checkpoints (default `sd_checkpoints_limit` 1).
- Settings for every row: batch 1, CFG 7, Euler, seed 1234, default settings, random weights unless a checkpoint
  is named. Without CUDA the run uses the tiny test models and SD1.5 at 256×256 for 2 steps; the notes give the
  CPU's load average, and figures taken on a busy CPU (load above its core count) are noise.

"""

HEADER = (
    "| date | machine | software | case | ours | it/s ours | it/s diffusers | × it/s | s/img ours | s/img diffusers "
    "| × s/img | peak VRAM GiB | load s | switch s | compile s | notes |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
COLUMNS = HEADER.splitlines()[0].count("|") - 1


def machine() -> str:
    """The GPU (name and memory) or the CPU model and core count."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {name}, {os.cpu_count()} cores"


def software() -> str:
    import diffusers

    cuda = f", CUDA {torch.version.cuda}" if torch.cuda.is_available() else ""
    return f"torch {torch.__version__}{cuda}, diffusers {diffusers.__version__}, Python {platform.python_version()}"


@dataclass
class Row:
    case: str
    config: str
    ours: Summary
    diffusers: Summary | None
    load_s: float | None = None
    switch_s: float | None = None
    compile_s: float | None = None
    compile_cached_s: float | None = None
    notes: str = ""


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def _escape(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def format_row(
    row: Row, when: datetime.date | None = None, machine_text: str | None = None, software_text: str | None = None
) -> str:
    base = row.diffusers
    it_ratio = row.ours.it_per_s / base.it_per_s if base else None
    s_ratio = base.s_per_image / row.ours.s_per_image if base else None
    vram = f"{_gib(row.ours.peak_bytes)} / {_gib(base.peak_bytes) if base else '—'}"
    compile_text = _num(row.compile_s, 1)
    if row.compile_cached_s is not None:
        compile_text += f" ({row.compile_cached_s:.1f})"
    cells = [
        (when or datetime.date.today()).isoformat(),
        machine_text or machine(),
        software_text or software(),
        row.case,
        row.config,
        _num(row.ours.it_per_s),
        _num(base.it_per_s if base else None),
        _num(it_ratio),
        _num(row.ours.s_per_image, 3),
        _num(base.s_per_image if base else None, 3),
        _num(s_ratio),
        vram,
        _num(row.load_s),
        _num(row.switch_s),
        compile_text,
        row.notes,
    ]
    return "| " + " | ".join(_escape(c) for c in cells) + " |\n"


def append(path: str, rows: list[str]) -> None:
    """Add rows at the end of the table, creating the file with its explanation and header if needed."""
    from modules.fileio import atomic_write_text

    existing = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            existing = f.read()
    if not existing.strip():
        existing = PREAMBLE + HEADER
    elif not existing.endswith("\n"):
        existing += "\n"
    atomic_write_text(path, existing + "".join(rows))
