"""Timed txt2img through this program's own pipeline: `processing.process_images`, as the UI and API run it."""

from __future__ import annotations

import time
from typing import Any

import torch

from modules import processing, script_callbacks, shared
from modules.benchmark import cases
from modules.benchmark.cases import Case
from modules.benchmark.timing import LoopClock, Run, peak_memory, reset_peak_memory, synchronize


class _TimedTxt2Img(processing.StableDiffusionProcessingTxt2Img):
    """txt2img whose sampling loop is clocked: start at the first denoiser call, end when sampling returns."""

    clock: LoopClock

    def sample(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        samples = super().sample(*args, **kwargs)
        self.clock.mark_end()
        return samples


def make_processing(case: Case, seed: int = cases.SEED) -> processing.StableDiffusionProcessingTxt2Img:
    return _TimedTxt2Img(
        prompt=cases.PROMPT,
        negative_prompt=cases.NEGATIVE_PROMPT,
        seed=seed,
        sampler_name=cases.SAMPLER,
        steps=case.steps,
        cfg_scale=cases.CFG_SCALE,
        width=case.width,
        height=case.height,
        batch_size=1,
        n_iter=1,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )


def generate(case: Case, device: torch.device, seed: int = cases.SEED) -> tuple[Run, processing.Processed]:
    """One image; its sampling-loop and end-to-end times and the peak VRAM."""
    p = make_processing(case, seed)
    p.clock = LoopClock(device)

    def on_denoiser(params: script_callbacks.CFGDenoiserParams) -> None:
        p.clock.mark_start()

    script_callbacks.on_cfg_denoiser(on_denoiser, name="benchmark clock")
    shared.state.begin(job="benchmark")
    try:
        synchronize(device)
        reset_peak_memory(device)
        start = time.perf_counter()
        processed = processing.process_images(p)
        synchronize(device)
        total = time.perf_counter() - start
    finally:
        shared.state.end()
        script_callbacks.remove_callbacks_for_function(on_denoiser)
    return Run(case.steps, p.clock.seconds, total, peak_memory(device)), processed
