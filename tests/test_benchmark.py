"""The benchmark command: an end-to-end quick run appending a well-formed BENCHMARKS.md row, its diffusers baseline
reproducing our image from the same modules, and the pieces (clocks, rows, cached checkpoints)."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import devices, rng, sd_models, shared
from modules.benchmark import baseline, cases, models, ours, report
from modules.benchmark.cases import Case
from modules.benchmark.runner import Plan
from modules.benchmark.timing import LoopClock, ProgressBarClock, Run, Summary

ROOT = Path(__file__).resolve().parent.parent


def cells(row: str) -> list[str]:
    assert row.startswith("| ") and row.endswith(" |"), row
    return [c.strip() for c in row[2:-2].split(" | ")]


def test_quick_benchmark_command_appends_one_row(tmp_path):
    """`python -m modules.benchmark --quick` runs our pipeline and the diffusers baseline on the tiny model and
    appends one row to (a copy of) BENCHMARKS.md."""
    output = tmp_path / "BENCHMARKS.md"
    if (ROOT / "BENCHMARKS.md").exists():
        shutil.copy(ROOT / "BENCHMARKS.md", output)
    before = output.read_text(encoding="utf-8") if output.exists() else ""
    env = {k: v for k, v in os.environ.items() if k not in ("IGNORE_CMD_ARGS_ERRORS", "COMMANDLINE_ARGS")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modules.benchmark",
            "--quick",
            "--steps",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text(encoding="utf-8")
    assert text.startswith(before or "# Benchmarks")
    added = text[len(before) :] if before else text[text.index(report.HEADER) + len(report.HEADER) :]
    rows = added.splitlines()
    assert len(rows) == 1 and result.stdout.strip() == rows[0]
    row = cells(rows[0])
    assert len(row) == report.COLUMNS == 16
    date, machine, software, case, config = row[:5]
    assert date == datetime.date.today().isoformat()
    assert machine.startswith("CPU: ") and f"torch {torch.__version__}" in software and "diffusers" in software
    assert case == "tiny SD1 64×64, 2 steps" and config == "eager, float32, sdp"
    it_ours, it_base, it_ratio, s_ours, s_base, s_ratio = (float(x) for x in row[5:11])
    assert min(it_ours, it_base, s_ours, s_base) > 0
    assert it_ratio == pytest.approx(it_ours / it_base, abs=0.02, rel=0.05)
    assert s_ratio == pytest.approx(s_base / s_ours, abs=0.02, rel=0.05)
    assert row[11] == "— / —"  # no VRAM on the CPU
    assert float(row[12]) > 0 and float(row[13]) > 0 and row[14] == "—"
    assert row[15].startswith("random weights; quick smoke run; median of 1; load average")
    # the random checkpoint and its switch partner are cached for the next run
    cached = sorted(p.name for p in (tmp_path / "data" / "cache" / "benchmark").iterdir())
    assert cached == [
        "random-sd1-tiny-switch.safetensors",
        "random-sd1-tiny-switch.yaml",
        "random-sd1-tiny.safetensors",
        "random-sd1-tiny.yaml",
    ]


@pytest.mark.parametrize("key,family", [("sd1", "sd1"), ("sdxl", "sdxl")])
def test_diffusers_baseline_reproduces_our_image_from_the_same_modules(tiny_checkpoints, key, family):
    """Same weights, same start noise, Euler over 2 steps (the timesteps 999 and 0, where both pipelines' sigma
    interpolations agree): the plain diffusers pipeline must give our image, up to rounding (diffusers rounds to
    8 bits, A1111 truncates) — evidence that the baseline really runs the same model."""
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    model = sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints[key].name))
    case = Case("tiny", family, "tiny", 64, 64, 2)
    run, processed = ours.generate(case, devices.device)
    assert run.steps == 2 and 0 < run.sampling_s < run.total_s

    pipe = baseline.build_pipeline(model)
    assert pipe.unet is model.unet and pipe.vae is model.first_stage_model
    processors = model.unet.attn_processors
    time_proj = getattr(model.unet, "add_time_proj", None)
    noise = rng.ImageRNG((4, 8, 8), [cases.SEED]).next()
    with baseline.plain_diffusers(model):
        base_run, images = baseline.generate(pipe, model, case, devices.device, latents=noise)
    assert base_run.steps == 2 and 0 < base_run.sampling_s < base_run.total_s
    difference = np.abs(np.asarray(images[0], dtype=np.int16) - np.asarray(processed.images[0], dtype=np.int16))
    assert difference.max() <= 2 and difference.mean() < 1.0
    # everything the baseline changed is back
    assert model.unet.attn_processors == processors
    assert getattr(model.unet, "add_time_proj", None) is time_proj


def test_baseline_refuses_inpainting_models(tiny_checkpoints):
    from modules.errors import UserError

    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    model = sd_models.load_model(sd_models.find_checkpoint(tiny_checkpoints["sd1_inpaint"].name))
    with pytest.raises(UserError, match="inpainting and refiner"):
        baseline.build_pipeline(model)


def test_random_checkpoint_is_written_once_with_a_switch_partner(data_dir):
    case = Case("tiny SD1", "sd1", "tiny", 64, 64, 2)
    first, second = models.checkpoint_pair(case)
    mtime = os.path.getmtime(first)
    assert models.checkpoint_pair(case) == (first, second)
    assert os.path.getmtime(first) == mtime
    assert os.path.realpath(second) == first and os.path.islink(second)
    assert os.path.realpath(os.path.splitext(second)[0] + ".yaml") == os.path.splitext(first)[0] + ".yaml"
    user = Case("SD1.5", "sd1", "full", 64, 64, 2, checkpoint=first)
    assert models.checkpoint_pair(user) == (
        first,
        os.path.join(models.cache_dir(), "random-sd1-tiny-switch.safetensors"),
    )


def test_cases_swap_in_user_checkpoints_only_for_full_size_models():
    chosen = cases.with_checkpoints(cases.cpu_cases(), {"sd1": "/m/a.safetensors"})
    assert [(c.name, c.checkpoint) for c in chosen] == [
        ("tiny SD1", None),
        ("tiny SDXL", None),
        ("SD1.5", "/m/a.safetensors"),
    ]
    assert [(c.width, c.steps) for c in cases.cuda_cases()] == [(512, 20), (1024, 20)]
    assert [(c.width, c.steps) for c in cases.cpu_cases()][-1] == (256, 2)
    assert [c.name for c in Plan(only="sdxl").cases(cuda=True)] == ["SDXL"]
    assert [c.name for c in Plan(only="sd1").cases(cuda=False)] == ["tiny SD1", "SD1.5"]


def test_clocks_and_medians():
    clock = ProgressBarClock(torch.device("cpu"))
    with clock(total=3) as bar:
        bar.update()
    assert clock.seconds >= 0
    with pytest.raises(RuntimeError, match="not observed"):
        _ = LoopClock(torch.device("cpu")).seconds
    summary = Summary(runs=[Run(20, 2.0, 3.0), Run(20, 1.0, 2.0), Run(20, 4.0, 5.0)], first_total_s=12.0)
    assert summary.it_per_s == 10.0 and summary.s_per_image == 3.0 and summary.warmup_overhead_s == 9.0
    assert summary.peak_bytes is None


def test_row_format_and_appending(tmp_path):
    ours_summary = Summary(runs=[Run(20, 0.5, 0.8, 3 * 2**30)], first_total_s=60.8)
    base = Summary(runs=[Run(20, 1.0, 1.6, 4 * 2**30)])
    row = report.Row(
        "SD1.5 512×512, 20 steps",
        "compiled max-autotune, float16, sdp",
        ours_summary,
        base,
        load_s=1.234,
        switch_s=0.9,
        compile_s=60.0,
        compile_cached_s=5.25,
        notes="random weights",
    )
    text = report.format_row(
        row,
        when=datetime.date(2026, 1, 2),
        machine_text="NVIDIA H100 80GB HBM3 (79 GiB)",
        software_text="torch 2.13.0, diffusers 0.42.1",
    )
    assert text == (
        "| 2026-01-02 | NVIDIA H100 80GB HBM3 (79 GiB) | torch 2.13.0, diffusers 0.42.1 | SD1.5 512×512, 20 steps | "
        "compiled max-autotune, float16, sdp | 40.00 | 20.00 | 2.00 | 0.800 | 1.600 | 2.00 | 3.00 / 4.00 | 1.23 | "
        "0.90 | 60.0 (5.2) | random weights |\n"
    )
    path = tmp_path / "BENCHMARKS.md"
    report.append(str(path), [text])
    report.append(str(path), [text.replace("2026-01-02", "2026-01-03")])
    content = path.read_text(encoding="utf-8")
    assert content.startswith(report.PREAMBLE + report.HEADER)
    assert re.findall(r"^\| (2026-01-0\d) ", content, flags=re.M) == ["2026-01-02", "2026-01-03"]
    assert len(cells(report.HEADER.splitlines()[0])) == report.COLUMNS
