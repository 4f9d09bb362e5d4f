"""Runs the benchmark plan: per case, load/switch times, our pipeline, the diffusers baseline, and on CUDA the
compiled and offloaded (--medvram, --lowvram) configurations."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

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

    def cases(self, cuda: bool) -> list[Case]:
        if self.quick:
            chosen = cases.quick_cases(self.steps)
        else:
            chosen = cases.cuda_cases(self.steps) if cuda else cases.cpu_cases(self.steps)
        return cases.with_checkpoints(chosen, self.checkpoints)

    def repeat_count(self, cuda: bool) -> int:
        return self.repeats or (3 if cuda else 1)


def _summarize(generate: Callable[[], Run], repeats: int) -> Summary:
    """One warm-up image, then `repeats` timed ones."""
    summary = Summary(first_total_s=generate().total_s)
    for _ in range(repeats):
        summary.runs.append(generate())
    return summary


def _config_text(extra: str = "") -> str:
    dtype = str(devices.dtype_unet).removeprefix("torch.")
    parts = [extra or "eager", dtype, attention.current_choice()]
    if shared.cmd_opts.opt_channelslast:
        parts.append("channels_last")
    return ", ".join(parts)


def _base_notes(case: Case, plan: Plan) -> list[str]:
    notes = [os.path.basename(case.checkpoint) if case.checkpoint else "random weights"]
    if plan.quick:
        notes.append("quick smoke run")
    if devices.device.type != "cuda" and hasattr(os, "getloadavg"):
        notes.append(f"load average {os.getloadavg()[0]:.1f} at start")
    return notes


def _max_pixel_difference(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def run_case(case: Case, plan: Plan) -> list[report.Row]:
    device = devices.device
    cuda = device.type == "cuda"
    repeats = plan.repeat_count(cuda)
    first, second = models.checkpoint_pair(case)
    log.info("%s: load and switch times", case.describe())
    times = models.measure(first, second, device)
    model = shared.sd_model
    notes = _base_notes(case, plan)

    log.info("%s: our pipeline", case.describe())
    last: dict = {}

    def generate_ours() -> Run:
        run, processed = ours.generate(case, device)
        last["image"] = processed.images[0]
        return run

    ours_summary = _summarize(generate_ours, repeats)
    eager_image = last["image"]

    base = None
    if plan.diffusers:
        log.info("%s: plain eager diffusers on the same modules", case.describe())
        pipe = baseline.build_pipeline(model)
        with baseline.plain_diffusers(model):
            base = _summarize(lambda: baseline.generate(pipe, model, case, device)[0], repeats)
        del pipe
    rows = [
        report.Row(
            case.describe(), _config_text(), ours_summary, base, times.load_s, times.switch_s, notes="; ".join(notes)
        )
    ]

    if plan.compile_mode:
        request = sd_speed.CompileRequest(plan.compile_mode, plan.compile_regional)
        log.info("%s: compiled UNet (%s)", case.describe(), request.describe())
        sd_speed.compile_unet(model.unet, request)
        try:
            compiled = _summarize(generate_ours, repeats)
            difference = _max_pixel_difference(eager_image, last["image"])
            # A second launch: dynamo's in-memory state is gone, inductor's on-disk cache is not.
            torch._dynamo.reset()
            sd_speed.compile_unet(model.unet, request)
            cached_first = generate_ours().total_s
        finally:
            sd_speed.uncompile(model.unet)
            torch._dynamo.reset()
        rows.append(
            report.Row(
                case.describe(),
                _config_text(f"compiled {request.describe()}"),
                compiled,
                base,
                compile_s=compiled.warmup_overhead_s,
                compile_cached_s=max(cached_first - compiled.s_per_image, 0.0),
                notes="; ".join(notes + [f"max pixel difference to eager: {difference}"]),
            )
        )

    if cuda and plan.offload:
        for flag in ("medvram", "lowvram"):
            log.info("%s: --%s", case.describe(), flag)
            setattr(shared.cmd_opts, flag, True)
            try:
                sd_models.reload_model_weights(info=sd_models.CheckpointInfo(first), forced_reload=True)
                summary = _summarize(lambda: ours.generate(case, device)[0], repeats)
            finally:
                setattr(shared.cmd_opts, flag, False)
                sd_models.reload_model_weights(info=sd_models.CheckpointInfo(first), forced_reload=True)
            rows.append(report.Row(case.describe(), _config_text(f"--{flag}"), summary, base, notes="; ".join(notes)))
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
