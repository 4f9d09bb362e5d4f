"""Samplers, seeds and noise end to end through `processing.process_images` on the tiny SD1 checkpoint.

What a user relies on to reproduce an image from its infotext: image i of a batch equals its seed alone, for every
sampler (ancestral and SDE noise included); ENSD, variation seeds, seed resize and the noise source behave as in
A1111; interrupt and skip stop a job between steps.

Bit-exactness: the UNet on CPU is not batch-invariant (oneDNN convolutions and MKL matrix products pick other
kernels for other batch sizes, moving results by ~1e-6 relative per call). Everything else in the pipeline is per
image, so with the UNet evaluated one row at a time (`rowwise_unet`) a batch image must equal the single image
bit for bit. With the plain batched UNet, as A1111 runs it, the images agree to one pixel level (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from modules import (
    devices,
    infotext_paste,
    infotext_utils,
    processing,
    rng_philox,
    script_callbacks,
    sd_models,
    sd_samplers,
    sd_samplers_common,
    sd_schedulers,
    sd_vae,
    shared,
)
from modules.errors import NotFoundError
from modules.shared import opts, state

STEPS = 3
SIZE = 64


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoints):
    devices.configure(shared.cmd_opts)
    sd_models.list_models()
    sd_vae.refresh_vae_list()
    yield tiny_checkpoints
    sd_models.unload_model_weights()


@pytest.fixture
def model(checkpoints):
    """The tiny SD1 model, current (loaded once; reloaded if a test switched to another family)."""
    return sd_models.load_model(sd_models.find_checkpoint(checkpoints["sd1"].name))


@pytest.fixture(autouse=True)
def no_gc_between_batches(monkeypatch):
    """processing collects garbage around every batch (~0.5 s in a test process, more than a tiny generation);
    it does not change any result."""
    monkeypatch.setattr(devices, "torch_gc", lambda: None)


@contextlib.contextmanager
def settings(**values: Any) -> Iterator[None]:
    """Set options for the block and restore them afterwards."""
    old = {key: getattr(opts, key) for key in values}
    opts.data.update(values)
    try:
        yield
    finally:
        opts.data.update(old)


def defaults_of(keys: Any) -> dict[str, Any]:
    return {key: opts.data_labels[key].default for key in keys}


@contextlib.contextmanager
def rowwise_unet(model) -> Iterator[None]:
    """Evaluate the UNet one batch row at a time, so its numerics do not depend on the batch size."""
    apply_model = model.apply_model

    def per_row(x, t, cond):
        rows = []
        for i in range(x.shape[0]):
            row_cond = {k: [v[0][i : i + 1]] if isinstance(v, list) else v[i : i + 1] for k, v in cond.items()}
            rows.append(apply_model(x[i : i + 1], t[i : i + 1], row_cond))
        return torch.cat(rows)

    model.apply_model = per_row
    try:
        yield
    finally:
        del model.apply_model


@contextlib.contextmanager
def denoiser_calls() -> Iterator[list[dict[str, Any]]]:
    """Every CFG denoiser call of the block: model input, sigma and the progress counters at that moment."""
    calls: list[dict[str, Any]] = []

    def record(params):
        calls.append(
            {
                "x": params.x.clone(),
                "sigma": params.sigma.clone(),
                "sampling_step": params.sampling_step,
                "sampling_steps": params.total_sampling_steps,
                "call": params.denoiser.step,
                "total_calls": params.denoiser.total_steps,
                "job_no": state.job_no,
                "job_count": state.job_count,
            }
        )

    script_callbacks.on_cfg_denoiser(record)
    try:
        yield calls
    finally:
        script_callbacks.remove_callbacks_for_function(record)


@contextlib.contextmanager
def unet_batch_sizes(model) -> Iterator[list[int]]:
    """The batch size of every UNet call of the block."""
    sizes: list[int] = []
    apply_model = model.apply_model

    def counting(x, t, cond):
        sizes.append(x.shape[0])
        return apply_model(x, t, cond)

    model.apply_model = counting
    try:
        yield sizes
    finally:
        del model.apply_model


class Result:
    def __init__(self, latents: torch.Tensor, processed: processing.Processed):
        self.latents = latents
        self.processed = processed
        self.pixels = [np.asarray(im, dtype=np.int16) for im in processed.images[processed.index_of_first_image :]]
        self.infotexts = processed.infotexts[processed.index_of_first_image :]


DEFAULTS = dict(prompt="a photo of a cat", negative_prompt="ugly", steps=STEPS, width=SIZE, height=SIZE, cfg_scale=5.0)


def run(**kwargs: Any) -> Result:
    """One txt2img job on the loaded model from processing arguments; the final latents are taken where
    processing decodes them."""
    captured = []
    decode = processing.decode_latent_batch

    def capture(model, batch):
        captured.append(batch.clone())
        return decode(model, batch)

    processing.decode_latent_batch = capture
    state.begin(job="test")  # as a queued job: a fresh state (interrupt and skip flags cleared)
    try:
        p = processing.StableDiffusionProcessingTxt2Img(do_not_save_samples=True, do_not_save_grid=True, **kwargs)
        processed = processing.process_images(p)
    finally:
        processing.decode_latent_batch = decode
    return Result(torch.cat(captured) if captured else torch.empty(0), processed)


def generate(sampler: str = "Euler", seed: int = 100, **kwargs: Any) -> Result:
    return run(**{**DEFAULTS, "sampler_name": sampler, "seed": seed, **kwargs})


ALL_SAMPLERS = [s.name for s in sd_samplers.all_samplers]


# ---- 1. image i of a batch of 4 is that seed alone ----------------------------------------------------------------


@pytest.mark.parametrize("sampler", ALL_SAMPLERS)
def test_batch_image_is_its_seed_alone_bit_exact(model, sampler):
    with rowwise_unet(model):
        batch = generate(sampler, seed=100, batch_size=4)
        assert batch.latents.shape[0] == 4
        assert [f"Seed: {100 + i}," in text for i, text in enumerate(batch.infotexts)] == [True] * 4
        for i in range(4):
            alone = generate(sampler, seed=100 + i)
            assert torch.equal(batch.latents[i], alone.latents[0]), f"{sampler}: image {i} latents differ"
            assert np.array_equal(batch.pixels[i], alone.pixels[0]), f"{sampler}: image {i} pixels differ"
            assert batch.infotexts[i] == alone.infotexts[0]


@pytest.mark.parametrize("family", ["sd2v", "sdxl"])
def test_batch_image_is_its_seed_alone_on_v_prediction_and_sdxl(checkpoints, family):
    other = sd_models.load_model(sd_models.find_checkpoint(checkpoints[family].name))
    with rowwise_unet(other):
        for sampler in ("Euler a", "DPM++ 2M SDE", "DDIM"):
            batch = generate(sampler, seed=60, batch_size=2)
            for i in range(2):
                alone = generate(sampler, seed=60 + i)
                assert torch.equal(batch.latents[i], alone.latents[0]), f"{family} {sampler}: image {i}"
                assert batch.infotexts[i] == alone.infotexts[0]


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE", "DPM++ 2M SDE", "Heun", "DDIM", "UniPC", "LCM"])
def test_batch_image_is_its_seed_alone_with_batched_unet(model, sampler):
    """As A1111 runs it (cond and uncond of the whole batch in one UNet call): one pixel level at most."""
    batch = generate(sampler, seed=200, batch_size=4)
    for i in (1, 3):
        alone = generate(sampler, seed=200 + i)
        assert torch.allclose(batch.latents[i], alone.latents[0], rtol=0, atol=2e-3), sampler
        assert np.abs(batch.pixels[i] - alone.pixels[0]).max() <= 1, sampler


# ---- 2. seeds, variation, resize, ENSD, noise source ----------------------------------------------------------------


def cpu_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def first_noise(calls: list[dict[str, Any]]) -> torch.Tensor:
    """The initial latent noise of image 0: the first model input divided by the first sigma (Euler)."""
    return calls[0]["x"][0] / calls[0]["sigma"][0]


def test_ensd_changes_ancestral_output_and_leaves_euler_unchanged(model):
    plain_a, plain_e = generate("Euler a", seed=5), generate("Euler", seed=5)
    with settings(eta_noise_seed_delta=31337):
        ensd_a, ensd_e = generate("Euler a", seed=5), generate("Euler", seed=5)
        no_eta = generate("Euler a", seed=5, eta=0.0)
    assert not torch.equal(plain_a.latents, ensd_a.latents)
    assert "ENSD: 31337" in ensd_a.infotexts[0] and "ENSD" not in plain_a.infotexts[0]
    assert torch.equal(plain_e.latents, ensd_e.latents)
    assert "ENSD" not in ensd_e.infotexts[0]
    assert "ENSD" not in no_eta.infotexts[0]  # ancestral with eta 0 draws no noise: ENSD has no effect


def test_variation_strength_zero_and_one_are_the_two_endpoints(model):
    seed_alone, subseed_alone = generate("Euler", seed=11), generate("Euler", seed=22)
    zero = generate("Euler", seed=11, subseed=22, subseed_strength=0.0)
    one = generate("Euler", seed=11, subseed=22, subseed_strength=1.0)
    half = generate("Euler", seed=11, subseed=22, subseed_strength=0.5)
    assert torch.equal(zero.latents, seed_alone.latents)
    assert torch.equal(one.latents, subseed_alone.latents)
    assert not torch.equal(half.latents, seed_alone.latents) and not torch.equal(half.latents, subseed_alone.latents)
    assert "Variation seed" not in zero.infotexts[0]
    assert "Seed: 11," in one.infotexts[0] and "Variation seed: 22, Variation seed strength: 1.0" in one.infotexts[0]
    # Ancestral noise after the first step still comes from the image's own seed.
    assert torch.equal(
        generate("Euler a", seed=11, subseed=22, subseed_strength=0.0).latents, generate("Euler a", seed=11).latents
    )


def test_variation_seeds_in_a_batch_share_the_seed_and_step_the_subseed(model):
    res = generate("Euler", seed=11, subseed=22, subseed_strength=0.5, batch_size=2)
    assert res.processed.all_seeds == [11, 11] and res.processed.all_subseeds == [22, 23]
    assert "Seed: 11," in res.infotexts[1] and "Variation seed: 23," in res.infotexts[1]


@pytest.mark.parametrize("from_w,from_h", [(128, 128), (128, 64), (32, 96)])
def test_seed_resize_pastes_the_noise_of_the_other_size_centred(model, from_w, from_h):
    with settings(randn_source="CPU"), denoiser_calls() as calls:
        res = generate("Euler", seed=7, seed_resize_from_w=from_w, seed_resize_from_h=from_h)
    assert f"Seed resize from: {from_w}x{from_h}" in res.infotexts[0]
    small = SIZE // 8
    expected = cpu_noise(7, (4, small, small))  # the image's own noise around the pasted part
    other = cpu_noise(7, (4, from_h // 8, from_w // 8))
    dy, dx = (small - other.shape[1]) // 2, (small - other.shape[2]) // 2
    ty, tx, sy, sx = max(dy, 0), max(dx, 0), max(-dy, 0), max(-dx, 0)
    h, w = min(small, other.shape[1]), min(small, other.shape[2])
    expected[:, ty : ty + h, tx : tx + w] = other[:, sy : sy + h, sx : sx + w]
    torch.testing.assert_close(first_noise(calls), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("source", ["CPU", "NV", "GPU"])
def test_noise_source(model, source):
    """CPU: torch's CPU generator; NV: Philox, as CUDA's torch.randn; GPU without CUDA: generated on the CPU."""
    with settings(randn_source=source), denoiser_calls() as calls:
        res = generate("Euler a", seed=3)
    shape = (4, SIZE // 8, SIZE // 8)
    if source == "NV":
        expected = torch.from_numpy(rng_philox.Generator(3).randn(shape))
    else:
        expected = cpu_noise(3, shape)
    torch.testing.assert_close(first_noise(calls), expected, rtol=1e-6, atol=1e-6)
    rng_field = [x for x in res.infotexts[0].split(", ") if x.startswith("RNG: ")]
    assert rng_field == ([] if source == "GPU" else [f"RNG: {source}"])
    if not torch.cuda.is_available() and source == "GPU":
        with settings(randn_source="CPU"):
            assert torch.equal(generate("Euler a", seed=3).latents, res.latents)


def test_euler_a_ignores_sigma_noise_as_a1111_does(model):
    """A1111 passes s_noise only to some samplers (Euler, Heun, DPM2, DPM fast, DPM2 a, DPM++ 2S a, the SDE ones)."""
    plain = generate("Euler a", seed=8)
    with settings(s_noise=0.5):
        euler_a = generate("Euler a", seed=8)
        dpm2_a = generate("DPM2 a", seed=8)
    assert torch.equal(plain.latents, euler_a.latents) and "Sigma noise" not in euler_a.infotexts[0]
    assert "Sigma noise: 0.5" in dpm2_a.infotexts[0]
    assert not torch.equal(generate("DPM2 a", seed=8).latents, dpm2_a.latents)


def test_sampler_parameter_fields_and_settings(model):
    """A field (API s_churn...) is used while the setting is neutral, and is written to the infotext (A1111 uses it
    without writing it); a non-neutral setting wins over the field, as in A1111."""
    res = generate("Euler", seed=8, s_churn=1.0, s_noise=0.9)
    assert "Sigma churn: 1.0" in res.infotexts[0] and "Sigma noise: 0.9" in res.infotexts[0]
    assert not torch.equal(res.latents, generate("Euler", seed=8).latents)
    with settings(s_churn=1.0, s_noise=0.9):
        from_settings = generate("Euler", seed=8, s_churn=0.0, s_noise=1.0)  # what API clients send by default
    assert torch.equal(from_settings.latents, res.latents) and from_settings.infotexts[0] == res.infotexts[0]


def test_override_settings_reach_setting_backed_fields(model):
    """Sampler settings given per job (override_settings, a pasted infotext) apply as if set globally."""
    values = {"s_churn": 1.0, "s_min_uncond": 15.0}
    with settings(**defaults_of(values)):
        with settings(**values):
            globally = generate("Euler", seed=9)
        per_job = generate("Euler", seed=9, override_settings=values)
        assert torch.equal(globally.latents, per_job.latents)
        assert globally.infotexts[0] == per_job.infotexts[0]
        assert "Sigma churn: 1.0" in per_job.infotexts[0] and "NGMS: 15.0" in per_job.infotexts[0]
        assert {key: getattr(opts, key) for key in values} == defaults_of(values)


# ---- infotext round trip: create -> parse -> processing arguments -> same infotext and latents -----------------------


ROUND_TRIP_CASES = [
    ("Euler a", {}, {"eta_noise_seed_delta": 31337}, ["ENSD: 31337"]),
    ("Euler a", {}, {"eta_ancestral": 0.5, "eta_noise_seed_delta": 1}, ["Eta: 0.5", "ENSD: 1"]),
    ("DPM++ 2S a", {}, {"eta_ancestral": 0.7, "s_noise": 0.9}, ["Eta: 0.7", "Sigma noise: 0.9"]),
    (
        "Euler",
        {},
        {"s_churn": 1.0, "s_tmin": 0.1, "s_tmax": 10.0, "s_noise": 0.9},
        ["Sigma churn: 1.0", "Sigma tmin: 0.1", "Sigma tmax: 10.0", "Sigma noise: 0.9"],
    ),
    ("Heun", {}, {"s_churn": 0.5}, ["Sigma churn: 0.5"]),
    (
        "DPM++ 2M",
        {},
        {"sigma_min": 0.1, "sigma_max": 10.0, "rho": 5.0},
        ["Schedule type: Karras", "Schedule min sigma: 0.1", "Schedule max sigma: 10.0", "Schedule rho: 5.0"],
    ),
    ("DPM++ SDE", {}, {"s_noise": 0.8}, ["Sigma noise: 0.8"]),
    ("DPM++ 2M SDE", {}, {"eta_ancestral": 0.5}, ["Schedule type: Exponential", "Eta: 0.5"]),
    ("DPM fast", {}, {"eta_noise_seed_delta": 5, "s_noise": 0.9}, ["ENSD: 5", "Sigma noise: 0.9"]),
    ("DDIM", {}, {"eta_ddim": 0.5}, ["Eta DDIM: 0.5"]),
    ("DDIM", {}, {"always_discard_next_to_last_sigma": True}, ["Discard penultimate sigma: True"]),
    (
        "UniPC",
        {},
        {"uni_pc_variant": "bh2", "uni_pc_skip_type": "logSNR", "uni_pc_order": 2, "uni_pc_lower_order_final": False},
        ["UniPC variant: bh2", "UniPC skip type: logSNR", "UniPC order: 2", "UniPC lower order final: False"],
    ),
    ("Euler", {}, {"s_min_uncond": 15.0}, ["NGMS: 15.0"]),
    ("Euler", {}, {"s_min_uncond": 15.0, "s_min_uncond_all": True}, ["NGMS: 15.0", "NGMS all steps: True"]),
    ("Euler", {}, {"skip_early_cond": 0.5}, ["Skip Early CFG: 0.5"]),
    ("Euler", {}, {"always_discard_next_to_last_sigma": True}, ["Discard penultimate sigma: True"]),
    ("Euler", {}, {"sgm_noise_multiplier": True}, ["SGM noise multiplier: True"]),
    ("Euler", {}, {"enable_quantization": True}, ["Enable quantization: True"]),
    ("Euler", {}, {"sd_noise_schedule": "Zero Terminal SNR"}, ["Noise Schedule: Zero Terminal SNR"]),
    ("Euler", {}, {"use_downcasted_alpha_bar": True}, ["Downcast alphas_cumprod: True"]),
    ("Euler a", {}, {"randn_source": "NV"}, ["RNG: NV"]),
    ("Euler a", {}, {"randn_source": "CPU"}, ["RNG: CPU"]),
    (
        "Euler",
        {"scheduler": "Beta"},
        {"beta_dist_alpha": 0.5, "beta_dist_beta": 0.7},
        ["Schedule type: Beta", "Beta schedule alpha: 0.5", "Beta schedule beta: 0.7"],
    ),
    (
        "Euler",
        {"subseed": 77, "subseed_strength": 0.3, "seed_resize_from_w": 128, "seed_resize_from_h": 96},
        {},
        ["Variation seed: 77", "Variation seed strength: 0.3", "Seed resize from: 128x96"],
    ),
    ("DPM++ 2M Karras", {}, {}, ["Sampler: DPM++ 2M, Schedule type: Karras"]),
    *[("Euler", {"scheduler": s.label}, {}, [f"Schedule type: {s.label}"]) for s in sd_schedulers.schedulers[1:]],
]


@pytest.mark.parametrize(
    "sampler,kwargs,values,fragments",
    ROUND_TRIP_CASES,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(ROUND_TRIP_CASES)],
)
def test_infotext_round_trip(model, sampler, kwargs, values, fragments):
    """Generate with non-default settings; with the defaults back, the parsed infotext restores them."""
    with settings(**defaults_of(values)):
        with settings(**values):
            first = generate(sampler, seed=21, **kwargs)
        text = first.infotexts[0]
        for fragment in fragments:
            assert fragment in text, text

        params = infotext_utils.parse_generation_parameters(text, opts=opts)
        args, overrides = infotext_paste.processing_args_from_infotext(params, opts)
        assert overrides == values
        second = run(**args, override_settings=overrides)
        assert second.infotexts[0] == text
        assert torch.equal(second.latents, first.latents)
        assert {key: getattr(opts, key) for key in values} == defaults_of(values)  # the overrides were undone


# ---- 3. interrupt, skip, progress, unknown names ---------------------------------------------------------------------


def run_with_action_from_thread(
    action: Callable[[], None], when: Callable[[list[tuple[int, int]]], bool], sampler: str, **kwargs: Any
):
    """Run a job; at the model call where `when(seen)` first holds, another thread performs `action`
    (state.interrupt / skip) while the job waits for it, so the action lands at a known point. `seen` lists the
    (batch, call) pairs the CFG denoiser saw so far, the current one last. Returns the result and `seen`."""
    reached, acted = threading.Event(), threading.Event()
    seen: list[tuple[int, int]] = []

    def record(params):
        seen.append((state.job_no, params.denoiser.step))
        if not reached.is_set() and when(seen):
            reached.set()
            assert acted.wait(60), "the other thread did not act"

    def other_thread():
        if reached.wait(120):
            action()
        acted.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    script_callbacks.on_cfg_denoiser(record)
    try:
        result = generate(sampler, **kwargs)
    finally:
        script_callbacks.remove_callbacks_for_function(record)
        reached.set()
        thread.join()
    return result, seen


def at(batch: int, call: int) -> Callable[[list[tuple[int, int]]], bool]:
    return lambda seen: seen[-1] == (batch, call)


def calls_of(seen: list[tuple[int, int]], batch: int) -> list[int]:
    return [call for b, call in seen if b == batch]


@pytest.mark.parametrize("sampler,calls", [("Euler a", 8), ("DDIM", 7)])
def test_interrupt_from_another_thread_stops_the_job_with_the_images_so_far(model, sampler, calls):
    res, seen = run_with_action_from_thread(state.interrupt, at(1, 2), sampler, seed=30, n_iter=3, steps=8)
    assert len(res.pixels) == 2 and res.latents.shape[0] == 2  # batch 0 done, batch 1 stopped, batch 2 never ran
    assert calls_of(seen, 0) == list(range(calls)) and calls_of(seen, 1) == [0, 1, 2] and calls_of(seen, 2) == []
    assert torch.equal(res.latents[0], generate(sampler, seed=30, steps=8).latents[0])
    assert torch.isfinite(res.latents[1]).all()
    assert not torch.equal(res.latents[1], generate(sampler, seed=31, steps=8).latents[0])


def test_skip_ends_the_current_batch_and_continues_with_the_next(model):
    res, seen = run_with_action_from_thread(state.skip, at(1, 2), "Euler a", seed=30, n_iter=3, steps=8)
    assert len(res.pixels) == 3
    assert calls_of(seen, 1) == [0, 1, 2] and calls_of(seen, 2) == list(range(8))
    assert torch.equal(res.latents[2], generate("Euler a", seed=32, steps=8).latents[0])
    assert "Seed: 32," in res.infotexts[2]


def test_interrupt_of_a_per_image_sampler_keeps_the_finished_images(model):
    """DPM adaptive runs image by image: an interrupt during image 1 keeps image 0 and image 1's latest state."""

    def in_image_1(seen):  # calls restart at 0 for each image
        return seen[-1] == (0, 2) and seen.count((0, 2)) == 2

    res, seen = run_with_action_from_thread(state.interrupt, in_image_1, "DPM adaptive", seed=40, batch_size=3)
    assert res.latents.shape[0] == 2 and len(res.pixels) == 2
    assert seen.count((0, 0)) == 2  # image 2 never started
    assert torch.equal(res.latents[0], generate("DPM adaptive", seed=40).latents[0])


@pytest.mark.parametrize(
    "sampler,callbacks,calls_per_batch",
    [
        ("Euler", 4, 4),
        ("Heun", 4, 7),
        ("DPM2", 4, 7),
        ("DPM++ SDE", 4, 7),
        ("DPM++ 2M", 4, 4),
        ("UniPC", 4, 4),
        ("DDIM", 3, 3),  # A1111's DDIM makes steps - 1 model calls
    ],
)
def test_progress_counts_steps_and_batches_as_a1111(model, monkeypatch, sampler, callbacks, calls_per_batch):
    """state.sampling_steps is the step count (not the model calls of second-order samplers); sampling_step is the
    sampler callback's step index; job_no counts finished batches of job_count."""
    progress: list[tuple[int, int, int, int]] = []
    callback_state = sd_samplers_common.Sampler.callback_state

    def spy(self, d):
        callback_state(self, d)
        progress.append((state.job_no, state.job_count, state.sampling_step, state.sampling_steps))

    monkeypatch.setattr(sd_samplers_common.Sampler, "callback_state", spy)
    with denoiser_calls() as calls:
        generate(sampler, steps=4, n_iter=2)
    assert progress == [(job, 2, step, 4) for job in range(2) for step in range(callbacks)]
    assert state.job_no == 2
    per_batch = [sum(1 for c in calls if c["job_no"] == job) for job in range(2)]
    assert per_batch == [calls_per_batch] * 2
    second_order = sd_samplers.find_sampler_config(sampler).options.get("second_order", False)
    assert {c["total_calls"] for c in calls} == {8 if second_order else 4}
    assert [c["call"] for c in calls if c["job_no"] == 0] == list(range(calls_per_batch))


@pytest.mark.parametrize("sampler,skipped", [("Euler", 2), ("Heun", 3)])
def test_skip_early_cfg_is_measured_in_model_calls(model, sampler, skipped):
    """Skip Early CFG 0.25 of 4 steps: Euler skips calls 0-1 of 4, Heun calls 0-2 of its 8 expected calls."""
    with settings(skip_early_cond=0.25), unet_batch_sizes(model) as sizes:
        res = generate(sampler, steps=4)
    assert sizes[:skipped] == [1] * skipped and set(sizes[skipped:]) == {2}
    assert "Skip Early CFG: 0.25" in res.infotexts[0]


def test_unknown_sampler_is_a_clear_error_listing_the_valid_names(model):
    with pytest.raises(NotFoundError) as e:
        generate("Euler b")
    message = str(e.value)
    assert "'Euler b'" in message
    assert all(name in message for name in ALL_SAMPLERS)
