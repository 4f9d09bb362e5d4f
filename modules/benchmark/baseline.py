"""The reference point: plain eager diffusers (StableDiffusionPipeline / StableDiffusionXLPipeline, SDPA attention,
EulerDiscreteScheduler) assembled from the very modules of the loaded model, so both pipelines run the same weights
in the same precision.

While the baseline runs, whatever this program changed on those modules is set back to diffusers' defaults:
compiled code runs eagerly, attention uses `AttnProcessor2_0` (SDPA), and the SDXL UNet embeds its size numbers
itself again (the loader hands it ready-made embeddings instead, see model_builder). The VAE decodes in the dtype
ours uses (diffusers would upcast a half SDXL VAE to fp32 by its config; ours does so only after a NaN).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.embeddings import Timesteps
from transformers import CLIPTokenizer

from modules import sd_speed
from modules.benchmark import cases
from modules.benchmark.cases import Case
from modules.benchmark.timing import ProgressBarClock, Run, peak_memory, reset_peak_memory, synchronize
from modules.errors import UserError
from modules.paths_internal import configs_path

MAX_TOKENS = 77


def tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """The shipped CLIP tokenizer with the 77-token limit diffusers pads and truncates to. CLIP-L pads with the end
    token, OpenCLIP with "!" (id 0), as in the official diffusers repositories and in A1111."""
    folder = os.path.join(configs_path, "tokenizers", "clip")
    return CLIPTokenizer(
        os.path.join(folder, "vocab.json"),
        os.path.join(folder, "merges.txt"),
        model_max_length=MAX_TOKENS,
        pad_token=pad_token,
    )


def scheduler(model: Any) -> EulerDiscreteScheduler:
    """Euler over the model's own ᾱ table, timesteps spaced like k-diffusion's (linspace over 999..0)."""
    sched = EulerDiscreteScheduler(
        num_train_timesteps=len(model.alphas_cumprod),
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction" if model.parameterization == "v" else "epsilon",
        timestep_spacing="linspace",
        steps_offset=1,
    )
    # The sigma table then comes from exactly the ᾱ the checkpoint carries, not a float32 recomputation.
    sched.alphas_cumprod = model.alphas_cumprod.detach().float().cpu()
    return sched


def build_pipeline(model: Any) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """A diffusers pipeline over the loaded StableDiffusionModel's UNet, VAE and text encoders (no copies)."""
    if model.is_inpaint or model.is_sdxl_refiner:
        raise UserError(
            "The diffusers baseline covers SD1, SD2 and SDXL base txt2img models; choose such a "
            "checkpoint (inpainting and refiner models have no plain txt2img pipeline)."
        )
    encoders = [enc.transformer for enc in model.cond_stage_model.encoders]
    if model.is_sdxl:
        return StableDiffusionXLPipeline(
            vae=model.first_stage_model,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizer(),
            tokenizer_2=tokenizer("!"),
            unet=model.unet,
            scheduler=scheduler(model),
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    pad = "!" if model.cond_stage_model.encoders[0].spec.pad_token == 0 else "<|endoftext|>"
    return StableDiffusionPipeline(
        vae=model.first_stage_model,
        text_encoder=encoders[0],
        tokenizer=tokenizer(pad),
        unet=model.unet,
        scheduler=scheduler(model),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@contextlib.contextmanager
def plain_diffusers(model: Any) -> Iterator[None]:
    """Inside the block the model's modules behave as stock diffusers ones (see the module docstring)."""
    unet, vae = model.unet, model.first_stage_model
    saved_unet, saved_vae = unet.attn_processors, vae.attn_processors
    saved_time_proj = getattr(unet, "add_time_proj", None)
    saved_upcast = vae.config.force_upcast
    unet.set_attn_processor(AttnProcessor2_0())
    vae.set_attn_processor(AttnProcessor2_0())
    if model.is_sdxl:
        cfg = unet.config
        unet.add_time_proj = Timesteps(cfg.addition_time_embed_dim, cfg.flip_sin_to_cos, cfg.freq_shift).to(unet.device)
    vae.register_to_config(force_upcast=False)
    try:
        with sd_speed.eager():
            yield
    finally:
        unet.set_attn_processor(saved_unet)
        vae.set_attn_processor(saved_vae)
        if model.is_sdxl:
            unet.add_time_proj = saved_time_proj
        vae.register_to_config(force_upcast=saved_upcast)


def call_arguments(model: Any, case: Case, device: torch.device, seed: int = cases.SEED) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        prompt=cases.PROMPT,
        # None, not "": only then does diffusers' SDXL zero the negative embeddings, as A1111 does for "".
        negative_prompt=cases.NEGATIVE_PROMPT or None,
        num_inference_steps=case.steps,
        guidance_scale=cases.CFG_SCALE,
        height=case.height,
        width=case.width,
        generator=torch.Generator(device).manual_seed(seed),
        output_type="pil",
    )
    if model.is_sd2:
        args["clip_skip"] = 1  # A1111 reads SD2's penultimate layer; diffusers' clip_skip=1 is that layer
    return args


def generate(pipe: Any, model: Any, case: Case, device: torch.device, **overrides: Any) -> tuple[Run, list]:
    """One image through the pipeline (inside `plain_diffusers`): times, peak VRAM and the images."""
    clock = ProgressBarClock(device)
    pipe.progress_bar = clock
    kwargs = {**call_arguments(model, case, device), **overrides}
    synchronize(device)
    reset_peak_memory(device)
    start = time.perf_counter()
    images = pipe(**kwargs).images
    synchronize(device)
    total = time.perf_counter() - start
    return Run(case.steps, clock.seconds, total, peak_memory(device)), images
