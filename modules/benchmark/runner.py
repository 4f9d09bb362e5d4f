"""Runs the benchmark plan: per case, load/switch times, our pipeline, the diffusers baseline, and on CUDA the
compiled and offloaded (--medvram, --lowvram) configurations."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from modules import attention, devices, sd_models, sd_speed, shared
from modules.benchmark import baseline, cases, models, ours, report
from modules.benchmark.cases import Case
from modules.benchmark.timing import Run, Summary

log = logging.getLogger(__name__)


@dataclass
class Plan:
    quick: bool = False
    checkpoints: dict[str, str] = field(default_factory=dict)
    steps: int | None = None
    repeats: int | None = None
    compile_mode: str | None = None  # None: max-autotune on CUDA, none without; "none": no compiled run
    compile_regional: bool = False
    diffusers: bool = True
    offload: bool = True
    only: str | None = None  # "sd1" or "sdxl": the cases of that family alone

    def cases(self, cuda: bool) -> list[Case]:
        if self.quick:
            chosen = cases.quick_cases(self.steps)
        else:
            chosen = cases.cuda_cases(self.steps) if cuda else cases.cpu_cases(self.steps)
        if self.only:
            chosen = [c for c in chosen if c.is_sdxl == (self.only == "sdxl")]
        return cases.with_checkpoints(chosen, self.checkpoints)

    def repeat_count(self) -> int:
        return self.repeats or (1 if self.quick else 3)


def _measure(generators: list[Callable[[], Run]], repeats: int) -> list[Summary]:
    """One warm-up image from each pipeline, then `repeats` timed images from each, taking turns, so that a change
    in the machine's load (a shared CPU, GPU clocks) affects every pipeline alike."""
    summaries = [Summary(first_total_s=generate().total_s) for generate in generators]
    for _ in range(repeats):
        for generate, summary in zip(generators, summaries, strict=True):
            summary.runs.append(generate())
    return summaries


def _config_text(extra: str = "") -> str:
    dtype = str(devices.dtype_unet).removeprefix("torch.")
    parts = [extra or "eager", dtype, attention.current_choice()]
    if shared.cmd_opts.opt_channelslast:
        parts.append("channels_last")
    return ", ".join(parts)


def _notes(case: Case, plan: Plan, *extra: str) -> str:
    notes = [os.path.basename(case.checkpoint) if case.checkpoint else "random weights"]
    if plan.quick:
        notes.append("quick smoke run")
    notes.append(f"median of {plan.repeat_count()}")
    if devices.device.type != "cuda" and hasattr(os, "getloadavg"):
        notes.append(f"load average {os.getloadavg()[0]:.1f}")  # a busy CPU makes every figure slower
    return "; ".join(notes + list(extra))


def _max_pixel_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


class _Ours:
    """Generations through our pipeline; keeps the last image (to compare compiled with eager output)."""

    def __init__(self, case: Case):
        self.case = case
        self.image: Image.Image | None = None

    def __call__(self) -> Run:
        run, processed = ours.generate(self.case, devices.device)
        self.image = processed.images[0]
        return run


def _compiled_row(
    case: Case, plan: Plan, generate: _Ours, eager_image: Image.Image, base: Summary | None, repeats: int
) -> report.Row:
    unet = shared.sd_model.unet
    request = sd_speed.CompileRequest(plan.compile_mode, plan.compile_regional)
    log.info("%s: compiled UNet (%s)", case.describe(), request.describe())
    sd_speed.compile_unet(unet, request)
    try:
        (compiled,) = _measure([generate], repeats)
        difference = _max_pixel_difference(eager_image, generate.image)
        # As on a second launch: dynamo's in-memory state is gone, inductor's on-disk cache is not.
        torch._dynamo.reset()
        sd_speed.compile_unet(unet, request)
        cached_first = generate().total_s
    finally:
        sd_speed.uncompile(unet)
        torch._dynamo.reset()
    return report.Row(
        case.describe(),
        _config_text(f"compiled {request.describe()}"),
        compiled,
        base,
        compile_s=compiled.warmup_overhead_s,
        compile_cached_s=max(cached_first - compiled.s_per_image, 0.0),
        notes=_notes(case, plan, f"max pixel difference to eager: {difference}"),
    )


def _offload_rows(case: Case, plan: Plan, checkpoint: str, base: Summary | None, repeats: int) -> list[report.Row]:
    rows = []
    for flag in ("medvram", "lowvram"):
        log.info("%s: --%s", case.describe(), flag)
        setattr(shared.cmd_opts, flag, True)
        try:
            sd_models.reload_model_weights(info=sd_models.CheckpointInfo(checkpoint), forced_reload=True)
            (summary,) = _measure([_Ours(case)], repeats)
        finally:
            setattr(shared.cmd_opts, flag, False)
            sd_models.reload_model_weights(info=sd_models.CheckpointInfo(checkpoint), forced_reload=True)
        rows.append(report.Row(case.describe(), _config_text(f"--{flag}"), summary, base, notes=_notes(case, plan)))
    return rows


def run_case(case: Case, plan: Plan) -> list[report.Row]:
    """Rows for one case: eager (with load/switch times), compiled, and on CUDA --medvram and --lowvram; each
    next to the same plain-diffusers figures."""
    device = devices.device
    repeats = plan.repeat_count()
    first, second = models.checkpoint_pair(case)
    log.info("%s: load and switch times", case.describe())
    times = models.measure(first, second, device)
    model = shared.sd_model

    generate = _Ours(case)
    generators: list[Callable[[], Run]] = [generate]
    if plan.diffusers:
        pipe = baseline.build_pipeline(model)

        def generate_baseline() -> Run:
            with baseline.plain_diffusers(model):
                return baseline.generate(pipe, model, case, device)[0]

        generators.append(generate_baseline)
    log.info("%s: our pipeline%s", case.describe(), " and plain eager diffusers, in turns" if plan.diffusers else "")
    summaries = _measure(generators, repeats)
    ours_summary, base = summaries[0], (summaries[1] if plan.diffusers else None)
    eager_image = generate.image
    rows = [
        report.Row(
            case.describe(), _config_text(), ours_summary, base, times.load_s, times.switch_s, notes=_notes(case, plan)
        )
    ]
    if plan.compile_mode:
        rows.append(_compiled_row(case, plan, generate, eager_image, base, repeats))
    if device.type == "cuda" and plan.offload:
        rows += _offload_rows(case, plan, first, base, repeats)
    return rows


def run(plan: Plan, output: str | None) -> list[str]:
    """Run every case of the plan; append the rows to `output` (unless None) and return them as markdown."""
    devices.configure(shared.cmd_opts)
    shared.refresh_device()
    cuda = devices.device.type == "cuda"
    if plan.compile_mode is None:
        plan.compile_mode = "max-autotune" if cuda and not plan.quick else "none"
    if plan.compile_mode == "none":
        plan.compile_mode = None
    lines: list[str] = []
    for case in plan.cases(cuda):
        lines += [report.format_row(row) for row in run_case(case, plan)]
    sd_models.unload_model_weights()
    if output:
        report.append(output, lines)
        log.info("Appended %d rows to %s", len(lines), output)
    return lines
