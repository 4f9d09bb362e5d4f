"""Hires fix: the second half of txt2img (a1111-spec §1.2, §5.5). `StableDiffusionProcessingTxt2Img`'s methods
(A1111's names) delegate to these functions, which take the processing object `p`.

The first pass is upscaled to the target size, either in latent space (the "Latent ..." modes of
`shared.latent_upscale_modes`) or by decoding, upscaling the image with an upscaler and encoding again, then
cropped (cover and crop) and re-drawn by an img2img pass with the hires sampler, schedule, steps and prompts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules import devices, extra_networks, images, prompt_parser, rng, sd_models, sd_samplers, sd_vae, shared
from modules.errors import UserError
from modules.processing_img2img import whole_number
from modules.shared import opts, state

OPT_F = 8  # pixels per latent cell


def unless_same(value: str | None, same: str) -> str | None:
    """The UI's "Use same ..." choice (and an empty value) means None: use the first pass's."""
    return None if value in (None, "", same) else value


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """The first-pass size the old hires fix derived from the final size: about 512×512 pixels, multiples of 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def validate(p: Any) -> None:
    """Refuse hires parameters that cannot work; resolve the hires sampler/schedule names and checkpoint."""
    if not p.enable_hr:
        return
    if not 0 <= float(p.denoising_strength) <= 1:
        raise UserError(f"Hires denoising strength must be between 0 and 1 (got {p.denoising_strength}).")
    for name in ("hr_resize_x", "hr_resize_y", "hr_second_pass_steps"):
        value = whole_number(getattr(p, name))
        if value is None or value < 0:
            raise UserError(f"{name} must be a whole number of at least 0 (got {getattr(p, name)!r}).")
        setattr(p, name, value)
    if p.hr_resize_x == 0 and p.hr_resize_y == 0 and not float(p.hr_scale) > 0:
        raise UserError(f"Hires upscale factor must be greater than 0 (got {p.hr_scale}).")
    if p.hr_upscaler is not None and p.hr_upscaler not in shared.latent_upscale_modes:
        from modules import upscaler

        upscaler.find_upscaler(p.hr_upscaler)
    if p.hr_sampler_name is not None:
        p.hr_sampler_name, scheduler = sd_samplers.resolve_sampler_and_scheduler(p.hr_sampler_name, p.hr_scheduler)
        if p.hr_scheduler is not None or scheduler != "Automatic":
            p.hr_scheduler = scheduler
    elif p.hr_scheduler is not None:
        p.hr_scheduler = sd_samplers.resolve_sampler_and_scheduler(p.sampler_name, p.hr_scheduler)[1]
    if p.hr_checkpoint_name:
        p.hr_checkpoint_info = sd_models.find_checkpoint(p.hr_checkpoint_name)


def init(p: Any) -> None:
    """Infotext fields (in A1111's order), the latent upscale mode, the target size and the job count."""
    p.extra_generation_params["Denoising strength"] = p.denoising_strength
    if p.hr_checkpoint_info is not None:
        info = p.hr_checkpoint_info
        # read when the infotext is written: loading the checkpoint for the hires pass computes its hash
        p.extra_generation_params["Hires checkpoint"] = lambda **kwargs: info.short_title
    if p.hr_sampler_name is not None and p.hr_sampler_name != p.sampler_name:
        p.extra_generation_params["Hires sampler"] = p.hr_sampler_name

    def hr_prompt_if_different(p, index, prompt_text, **kwargs):
        return p.all_hr_prompts[index] if p.all_hr_prompts[index] != prompt_text else None

    def hr_negative_prompt_if_different(p, index, negative_prompt, **kwargs):
        return p.all_hr_negative_prompts[index] if p.all_hr_negative_prompts[index] != negative_prompt else None

    p.extra_generation_params["Hires prompt"] = hr_prompt_if_different
    p.extra_generation_params["Hires negative prompt"] = hr_negative_prompt_if_different
    p.extra_generation_params["Hires schedule type"] = None  # filled by the hires pass when it differs
    if p.hr_scheduler is None:
        p.hr_scheduler = p.scheduler

    name = p.hr_upscaler if p.hr_upscaler is not None else shared.latent_upscale_default_mode
    p.latent_scale_mode = shared.latent_upscale_modes.get(name)
    p.calculate_target_resolution()

    if not state.processing_has_refined_job_count:
        if state.job_count <= 0:
            state.job_count = p.n_iter
        state.job_count *= 2  # every image is two jobs: first pass and hires pass
        state.processing_has_refined_job_count = True
    if p.hr_second_pass_steps:
        p.extra_generation_params["Hires steps"] = p.hr_second_pass_steps
    if p.hr_upscaler is not None:
        p.extra_generation_params["Hires upscaler"] = p.hr_upscaler


def calculate_target_resolution(p: Any) -> None:
    """hr_upscale_to_x/y and, when both resize sides are given, the latent rows/columns to crop (cover and
    crop: scale to cover the requested size keeping the aspect ratio, then crop the overflow evenly)."""
    if opts.use_old_hires_fix_width_height and p.applied_old_hires_behavior_to != (p.width, p.height):
        p.hr_resize_x = p.width
        p.hr_resize_y = p.height
        p.hr_upscale_to_x = p.width
        p.hr_upscale_to_y = p.height
        p.width, p.height = old_hires_fix_first_pass_dimensions(p.width, p.height)
        p.applied_old_hires_behavior_to = (p.width, p.height)

    if p.hr_resize_x == 0 and p.hr_resize_y == 0:
        p.extra_generation_params["Hires upscale"] = p.hr_scale
        p.hr_upscale_to_x = int(p.width * p.hr_scale)
        p.hr_upscale_to_y = int(p.height * p.hr_scale)
        return

    p.extra_generation_params["Hires resize"] = f"{p.hr_resize_x}x{p.hr_resize_y}"
    if p.hr_resize_y == 0:
        p.hr_upscale_to_x = p.hr_resize_x
        p.hr_upscale_to_y = p.hr_resize_x * p.height // p.width
    elif p.hr_resize_x == 0:
        p.hr_upscale_to_x = p.hr_resize_y * p.width // p.height
        p.hr_upscale_to_y = p.hr_resize_y
    else:
        if p.width / p.height < p.hr_resize_x / p.hr_resize_y:
            p.hr_upscale_to_x = p.hr_resize_x
            p.hr_upscale_to_y = p.hr_resize_x * p.height // p.width
        else:
            p.hr_upscale_to_x = p.hr_resize_y * p.width // p.height
            p.hr_upscale_to_y = p.hr_resize_y
        p.truncate_x = (p.hr_upscale_to_x - p.hr_resize_x) // OPT_F
        p.truncate_y = (p.hr_upscale_to_y - p.hr_resize_y) // OPT_F


def setup_prompts(p: Any) -> None:
    """all_hr_prompts / all_hr_negative_prompts: the hires prompts (default: the prompts), comments stripped,
    styles applied."""
    if not p.enable_hr:
        return
    n = p.batch_size * p.n_iter
    hr_prompt = p.hr_prompt or p.prompt
    hr_negative_prompt = p.hr_negative_prompt or p.negative_prompt
    p.all_hr_prompts = list(hr_prompt) if isinstance(hr_prompt, list) else n * [hr_prompt]
    p.all_hr_negative_prompts = (
        list(hr_negative_prompt) if isinstance(hr_negative_prompt, list) else n * [hr_negative_prompt]
    )
    if opts.enable_prompt_comments:
        p.all_hr_prompts = [prompt_parser.strip_comments(x) for x in p.all_hr_prompts]
        p.all_hr_negative_prompts = [prompt_parser.strip_comments(x) for x in p.all_hr_negative_prompts]
    if shared.prompt_styles is not None and p.styles:
        styles = shared.prompt_styles
        p.all_hr_prompts = [styles.apply_styles_to_prompt(x, p.styles) for x in p.all_hr_prompts]
        p.all_hr_negative_prompts = [styles.apply_negative_styles_to_prompt(x, p.styles)
                                     for x in p.all_hr_negative_prompts]


def calculate_hr_conds(p: Any) -> None:
    """Conditioning of the hires prompts, with prompt-editing steps on the hires time base."""
    if p.hr_c is not None:
        return
    hr_prompts = prompt_parser.SdConditioning(p.hr_prompts, width=p.hr_upscale_to_x, height=p.hr_upscale_to_y)
    hr_negative = prompt_parser.SdConditioning(p.hr_negative_prompts, width=p.hr_upscale_to_x,
                                               height=p.hr_upscale_to_y, is_negative_prompt=True)
    sampler_config = sd_samplers.find_sampler_config(p.hr_sampler_name or p.sampler_name)
    steps = p.hr_second_pass_steps or p.steps
    total_steps = sampler_config.total_steps(steps) if sampler_config else steps
    persistent = opts.persistent_cond_cache
    caches_uc = [p.cached_hr_uc, p.cached_uc] if persistent else [[None, None]]
    caches_c = [p.cached_hr_c, p.cached_c] if persistent else [[None, None]]
    p.hr_uc = p.get_conds_with_caching(prompt_parser.get_learned_conditioning, hr_negative, p.firstpass_steps,
                                       caches_uc, p.hr_extra_network_data, total_steps)
    p.hr_c = p.get_conds_with_caching(prompt_parser.get_multicond_learned_conditioning, hr_prompts, p.firstpass_steps,
                                      caches_c, p.hr_extra_network_data, total_steps)


def first_pass_from_image(p: Any, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A given first-pass image (the UI's "Upscale" button) instead of generating one: (latents for a latent
    upscale, else None; pixels in [0, 1] for an image upscaler, else None)."""
    image = images.flatten(p.firstpass_image, opts.img2img_background_color)
    pixels = torch.from_numpy(np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, 2, 0).copy())
    pixels = pixels[None].expand(batch_size, -1, -1, -1)
    if p.latent_scale_mode is None:
        return None, pixels
    return sd_vae.encode_images(p.sd_model, pixels.to(devices.device)), None


def save_before_highres(p: Any, image: Image.Image | torch.Tensor, index: int) -> None:
    """Setting save_images_before_highres_fix: save the first-pass image (decoding a latent batch if needed)."""
    from modules import processing

    if not p.save_samples() or not opts.save_images_before_highres_fix:
        return
    if not isinstance(image, Image.Image):
        image = processing.tensor_to_pil(processing.decode_latent_batch(p.sd_model, image[index:index + 1])[0])
    info = processing.create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, [], iteration=p.iteration,
                                      position_in_batch=index)
    images.save_image(image, p.outpath_samples, "", p.seeds[index], p.prompts[index], opts.samples_format, info=info,
                      p=p, suffix="-before-highres-fix")


def sample_hr_pass(p: Any, samples: torch.Tensor, decoded_samples: torch.Tensor | None) -> torch.Tensor:
    """Upscale the first pass to the target size and run img2img over it; returns decoded images in [0, 1]
    (marked `already_decoded`), decoded by the hires model."""
    from modules import processing

    if state.interrupted:
        return samples
    p.is_hr_pass = True
    try:
        target_width, target_height = p.hr_upscale_to_x, p.hr_upscale_to_y
        p.sampler = sd_samplers.create_sampler(p.hr_sampler_name or p.sampler_name, p.sd_model)
        source = None  # pixels in [-1, 1] for an inpainting model's conditioning
        if p.latent_scale_mode is not None:
            for i in range(samples.shape[0]):
                p.save_before_highres(samples, i)
            samples = torch.nn.functional.interpolate(
                samples, size=(target_height // OPT_F, target_width // OPT_F),
                mode=p.latent_scale_mode["mode"], antialias=p.latent_scale_mode["antialias"])
        else:
            batch_images = []
            for i, x_sample in enumerate(decoded_samples):
                image = processing.tensor_to_pil(x_sample)
                p.save_before_highres(image, i)
                image = images.resize_image(0, image, target_width, target_height, upscaler_name=p.hr_upscaler)
                batch_images.append(np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, 2, 0))
            pixels = torch.from_numpy(np.stack(batch_images)).to(devices.device)
            samples = sd_vae.encode_images(p.sd_model, pixels)
            source = pixels * 2 - 1
        state.nextjob()

        ty, tx = p.truncate_y, p.truncate_x
        samples = samples[:, :, ty // 2:samples.shape[2] - (ty + 1) // 2, tx // 2:samples.shape[3] - (tx + 1) // 2]
        if source is not None:
            source = source[:, :, ty // 2 * OPT_F:(samples.shape[2] + ty // 2) * OPT_F,
                            tx // 2 * OPT_F:(samples.shape[3] + tx // 2) * OPT_F]
        if not p.sd_model.is_inpaint:
            image_conditioning = p.img2img_image_conditioning(None, samples)
        elif source is not None:
            image_conditioning = p.img2img_image_conditioning(source, samples)
        elif getattr(p, "inpainting_mask_weight", opts.inpainting_mask_weight) < 1.0:
            image_conditioning = p.img2img_image_conditioning(
                p.sd_model.decode_first_stage(samples).float(), samples)
        else:
            image_conditioning = p.txt2img_image_conditioning(
                samples, width=samples.shape[3] * OPT_F, height=samples.shape[2] * OPT_F)

        p.rng = rng.ImageRNG(samples.shape[1:], p.seeds, subseeds=p.subseeds, subseed_strength=p.subseed_strength,
                             seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w)
        noise = p.rng.next()
        if p.hr_extra_network_data is not p.extra_network_data and not p.disable_extra_networks:
            extra_networks.activate(p, p.hr_extra_network_data)  # the hires prompts' own networks
        p.calculate_hr_conds()
        if p.scripts is not None and hasattr(p.scripts, "before_hr"):
            p.scripts.before_hr(p)
        samples = p.sampler.sample_img2img(p, samples, noise, p.hr_c, p.hr_uc, steps=p.hr_second_pass_steps or p.steps,
                                           image_conditioning=image_conditioning)
        p.sampler = None
        devices.test_for_nans(samples, "unet")
        decoded = processing.decode_latent_batch(p.sd_model, samples)
        decoded.already_decoded = True
        return decoded
    finally:
        p.is_hr_pass = False
