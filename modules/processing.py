"""The one generation pipeline: parameters in a processing object, `process_images()` → `Processed`.

txt2img, img2img, inpaint, hires fix and scripts all go through here (a1111-spec §9.5 for the fields). UI and
API build a processing object and render the result; nothing here knows about gradio or HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules import (
    conditioning,
    devices,
    extra_networks,
    hires_fix,
    images,
    infotext_utils,
    paths_internal,
    processing_img2img,
    prompt_parser,
    rng,
    scripts,
    sd_hijack,
    sd_models,
    sd_samplers,
    sd_samplers_common,
    sd_schedulers,
    sd_vae,
    shared,
)
from modules.color_correction import apply_color_correction, setup_color_correction  # noqa: F401 (A1111 names)
from modules.errors import UserError
from modules.masking import apply_overlay, create_binary_mask, uncrop  # noqa: F401 (A1111 names)
from modules.sd_samplers_cfg_denoiser import blend_hook
from modules.shared import opts, state

log = logging.getLogger(__name__)

opt_C = 4
opt_f = 8
MAX_SIDE = 8192
MAX_PROMPT_CHARS = 20000


def program_version() -> str:
    from modules import launch_utils

    return launch_utils.git_tag()


def get_fixed_seed(seed: Any) -> Any:
    """-1, empty or unparsable → a random seed (as A1111); a list (one seed per image) is kept as it is."""
    if isinstance(seed, list):
        return seed
    if seed == "" or seed is None:
        seed = -1
    elif isinstance(seed, str):
        try:
            seed = int(seed)
        except ValueError:
            seed = -1
    if seed == -1:
        return int(random.randrange(4294967294))
    return int(seed)


def fix_seed(p: StableDiffusionProcessing) -> None:
    p.seed = get_fixed_seed(p.seed)
    p.subseed = get_fixed_seed(p.subseed)


def create_random_tensors(shape, seeds, subseeds=None, subseed_strength=0.0, seed_resize_from_h=0,
                          seed_resize_from_w=0, p=None) -> torch.Tensor:
    """A1111's helper: the first noise of an ImageRNG."""
    g = rng.ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=subseed_strength,
                     seed_resize_from_h=seed_resize_from_h, seed_resize_from_w=seed_resize_from_w)
    return g.next()


def rng_settings() -> rng.RngSettings:
    return rng.RngSettings(source=opts.randn_source, eta_noise_seed_delta=int(opts.eta_noise_seed_delta or 0),
                           device=devices.device)


class StableDiffusionProcessing:
    """Every parameter of a generation, explicit. Subclasses add txt2img / img2img specifics."""

    cached_uc: list = [None, None]
    cached_c: list = [None, None]

    def __init__(
        self,
        sd_model=None,
        outpath_samples: str | None = None,
        outpath_grids: str | None = None,
        prompt: str | list[str] = "",
        styles: list[str] | None = None,
        seed: int = -1,
        subseed: int = -1,
        subseed_strength: float = 0,
        seed_resize_from_h: int = -1,
        seed_resize_from_w: int = -1,
        seed_enable_extras: bool = True,
        sampler_name: str | None = None,
        scheduler: str | None = None,
        batch_size: int = 1,
        n_iter: int = 1,
        steps: int = 50,
        cfg_scale: float = 7.0,
        width: int = 512,
        height: int = 512,
        restore_faces: bool | None = None,
        tiling: bool | None = None,
        do_not_save_samples: bool = False,
        do_not_save_grid: bool = False,
        extra_generation_params: dict | None = None,
        overlay_images: list | None = None,
        negative_prompt: str | list[str] = "",
        eta: float | None = None,
        do_not_reload_embeddings: bool = False,
        denoising_strength: float | None = None,
        ddim_discretize: str | None = None,
        s_min_uncond: float | None = None,
        s_churn: float | None = None,
        s_tmax: float | None = None,
        s_tmin: float | None = None,
        s_noise: float | None = None,
        override_settings: dict | None = None,
        override_settings_restore_afterwards: bool = True,
        sampler_index: int | None = None,
        refiner_checkpoint: str | None = None,
        refiner_switch_at: float | None = None,
        disable_extra_networks: bool = False,
        firstpass_image: Image.Image | None = None,
        comments: dict | None = None,
        prompt_for_display: str | None = None,
        **kwargs: Any,
    ):
        if sampler_index is not None:
            log.warning("sampler_index argument for StableDiffusionProcessing does not do anything; use sampler_name")
        self.outpath_samples = outpath_samples
        self.outpath_grids = outpath_grids
        self.prompt = prompt
        self.prompt_for_display = prompt_for_display
        self.negative_prompt = negative_prompt
        self.styles = list(styles or [])
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = subseed_strength
        self.seed_resize_from_h = seed_resize_from_h
        self.seed_resize_from_w = seed_resize_from_w
        self.seed_enable_extras = seed_enable_extras
        self.sampler_name = sampler_name
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.width = width
        self.height = height
        self.restore_faces = restore_faces
        self.tiling = tiling
        self.do_not_save_samples = do_not_save_samples
        self.do_not_save_grid = do_not_save_grid
        self.extra_generation_params = dict(extra_generation_params or {})
        self.overlay_images = overlay_images
        self.eta = eta
        self.do_not_reload_embeddings = do_not_reload_embeddings
        self.denoising_strength = denoising_strength
        self.ddim_discretize = ddim_discretize or opts.ddim_discretize
        self.s_min_uncond = s_min_uncond if s_min_uncond is not None else opts.s_min_uncond
        self.s_churn = s_churn if s_churn is not None else opts.s_churn
        self.s_tmin = s_tmin if s_tmin is not None else opts.s_tmin
        self.s_tmax = (s_tmax if s_tmax is not None else opts.s_tmax) or float("inf")
        self.s_noise = s_noise if s_noise is not None else opts.s_noise
        self.override_settings = {k: v for k, v in (override_settings or {}).items() if k not in shared.restricted_opts}
        self.override_settings_restore_afterwards = override_settings_restore_afterwards
        self.is_using_inpainting_conditioning = False
        self.disable_extra_networks = disable_extra_networks
        self.refiner_checkpoint = refiner_checkpoint
        self.refiner_switch_at = refiner_switch_at
        self.firstpass_image = firstpass_image
        self.comments: dict = dict(comments or {})
        self.token_merging_ratio = 0
        self.token_merging_ratio_hr = 0

        self.scripts_value = None
        self.script_args_value: list | tuple = []
        self.scripts_setup_complete = False
        self.sampler = None
        self.c = None
        self.uc = None
        self.rng: rng.ImageRNG | None = None
        self.step_multiplier = 1
        self.color_corrections = None
        self.extra_result_images: list[Image.Image] = []  # masks etc. shown with the results, not in grids
        self.all_prompts: list[str] = []
        self.all_negative_prompts: list[str] = []
        self.all_seeds: list[int] = []
        self.all_subseeds: list[int] = []
        self.iteration = 0
        self.batch_index = 0
        self.prompts: list[str] = []
        self.negative_prompts: list[str] = []
        self.seeds: list[int] = []
        self.subseeds: list[int] = []
        self.main_prompt = ""
        self.main_negative_prompt = ""
        self.extra_network_data: dict = {}
        self.user = None
        self.sd_model_name = None
        self.sd_model_hash = None
        self.sd_vae_name = None
        self.sd_vae_hash = None
        self.is_api = False
        self.is_hr_pass = False
        self.paste_to = None
        self.sampler_noise_scheduler_override = None
        self.clip_skip = int(opts.CLIP_stop_at_last_layers)
        if not seed_enable_extras:
            self.subseed = -1
            self.subseed_strength = 0
            self.seed_resize_from_h = 0
            self.seed_resize_from_w = 0

    @property
    def sd_model(self):
        return shared.sd_model

    # Scripts' setup() runs once both the runner and its arguments are set (as A1111).
    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value) -> None:
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value) -> None:
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self) -> None:
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    @sd_model.setter
    def sd_model(self, value):
        pass

    def comment(self, text: str) -> None:
        self.comments[text] = 1

    def validate(self) -> None:
        """Refuse parameters that cannot work, with one message naming the field."""
        if not isinstance(self.steps, int) or self.steps < 1:
            raise UserError(f"Sampling steps must be at least 1 (got {self.steps}).")
        if self.steps > 10000:
            raise UserError(f"Sampling steps must be at most 10000 (got {self.steps}).")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 8 or v > MAX_SIDE:
                raise UserError(f"{name.capitalize()} must be between 8 and {MAX_SIDE} pixels (got {v}).")
        if self.batch_size < 1 or self.n_iter < 1:
            raise UserError("Batch size and batch count must be at least 1.")
        self.sampler_name, self.scheduler = sd_samplers.resolve_sampler_and_scheduler(self.sampler_name, self.scheduler)
        for prompt in (self.prompt, self.negative_prompt):
            texts = prompt if isinstance(prompt, list) else [prompt]
            if any(len(t or "") > MAX_PROMPT_CHARS for t in texts):
                raise UserError(f"The prompt is longer than {MAX_PROMPT_CHARS} characters; shorten it.")

    def setup_prompts(self) -> None:
        """all_prompts / all_negative_prompts for every image, with styles applied and comments stripped."""
        # A1111: a list on either side sets the image count (prompt matrix varies the negative prompt alone)
        if isinstance(self.prompt, list):
            self.all_prompts = list(self.prompt)
        elif isinstance(self.negative_prompt, list):
            self.all_prompts = [self.prompt] * len(self.negative_prompt)
        else:
            self.all_prompts = self.batch_size * self.n_iter * [self.prompt]
        if isinstance(self.negative_prompt, list):
            self.all_negative_prompts = list(self.negative_prompt)
        else:
            self.all_negative_prompts = [self.negative_prompt] * len(self.all_prompts)
        if len(self.all_prompts) != len(self.all_negative_prompts):
            raise UserError(
                f"Received a different number of prompts ({len(self.all_prompts)}) and negative prompts "
                f"({len(self.all_negative_prompts)})."
            )
        if opts.enable_prompt_comments:
            self.all_prompts = [prompt_parser.strip_comments(x) for x in self.all_prompts]
            self.all_negative_prompts = [prompt_parser.strip_comments(x) for x in self.all_negative_prompts]
        if shared.prompt_styles is not None and self.styles:
            self.all_prompts = [shared.prompt_styles.apply_styles_to_prompt(x, self.styles) for x in self.all_prompts]
            self.all_negative_prompts = [
                shared.prompt_styles.apply_negative_styles_to_prompt(x, self.styles) for x in self.all_negative_prompts
            ]
        self.main_prompt = self.all_prompts[0]
        self.main_negative_prompt = self.all_negative_prompts[0]

    def cached_params(self, required_prompts, steps, extra_network_data, hires_steps=None, use_old_scheduling=False):
        """What a cached conditioning depends on: if any of it changes, it is recomputed."""
        model = self.sd_model
        return (
            required_prompts,
            steps,
            hires_steps,
            use_old_scheduling,
            opts.CLIP_stop_at_last_layers,
            model.sd_checkpoint_info,
            extra_network_data,
            opts.sdxl_crop_left,
            opts.sdxl_crop_top,
            self.width,
            self.height,
            opts.emphasis,
            opts.comma_padding_backtrack,
            opts.sdxl_clip_l_skip,
            opts.sdxl_refiner_low_aesthetic_score,
            opts.sdxl_refiner_high_aesthetic_score,
            sd_hijack.model_hijack.embedding_db.version,
        )

    def get_conds_with_caching(self, function, required_prompts, steps, caches, extra_network_data, hires_steps=None):
        """Conditioning for the prompts, reused from `caches` when nothing it depends on changed."""
        use_old = opts.use_old_scheduling
        cached_params = self.cached_params(required_prompts, steps, extra_network_data, hires_steps, use_old)
        for cache in caches:
            if cache[0] is not None and cached_params == cache[0]:
                return cache[1]
        cache = caches[0]
        with devices.autocast():
            cache[1] = function(self.sd_model, required_prompts, steps, hires_steps, use_old)
        cache[0] = cached_params
        return cache[1]

    def setup_conds(self) -> None:
        prompts = prompt_parser.SdConditioning(self.prompts, width=self.width, height=self.height)
        negative = prompt_parser.SdConditioning(self.negative_prompts, width=self.width, height=self.height,
                                                is_negative_prompt=True)
        sampler_config = sd_samplers.find_sampler_config(self.sampler_name)
        total_steps = sampler_config.total_steps(self.steps) if sampler_config else self.steps
        self.step_multiplier = total_steps // self.steps
        self.firstpass_steps = total_steps
        caches_uc = [self.cached_uc] if opts.persistent_cond_cache else [[None, None]]
        caches_c = [self.cached_c] if opts.persistent_cond_cache else [[None, None]]
        self.uc = self.get_conds_with_caching(prompt_parser.get_learned_conditioning, negative, total_steps,
                                              caches_uc, self.extra_network_data)
        self.c = self.get_conds_with_caching(prompt_parser.get_multicond_learned_conditioning, prompts, total_steps,
                                             caches_c, self.extra_network_data)
        self.extra_generation_params.update(conditioning.infotext_params(
            self.sd_model, self.prompts, self.negative_prompts, total_steps, use_old_scheduling=opts.use_old_scheduling))

    def get_conds(self):
        return self.c, self.uc

    def parse_extra_network_prompts(self) -> None:
        """Strip `<lora:...>`-style tags from this batch's prompts and keep their parameters (A1111)."""
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def init(self, all_prompts, all_seeds, all_subseeds) -> None:
        pass

    def close(self) -> None:
        self.sampler = None
        self.c = None
        self.uc = None
        if not opts.persistent_cond_cache:
            StableDiffusionProcessing.cached_c = [None, None]
            StableDiffusionProcessing.cached_uc = [None, None]

    def save_samples(self) -> bool:
        """Images are saved unless disabled, and interrupted/skipped ones only with save_incomplete_images."""
        return opts.samples_save and not self.do_not_save_samples and (
            opts.save_incomplete_images or not state.interrupted and not state.skipped
        )

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        if for_hr:
            return self.token_merging_ratio_hr or opts.token_merging_ratio_hr or self.token_merging_ratio or opts.token_merging_ratio
        return self.token_merging_ratio or opts.token_merging_ratio

    def txt2img_image_conditioning(self, x: torch.Tensor, width: int | None = None, height: int | None = None):
        """Extra UNet input channels: for inpainting models a fully-masked grey image, else nothing."""
        self.is_using_inpainting_conditioning = self.sd_model.is_inpaint
        if not self.sd_model.is_inpaint:
            return x.new_zeros(x.shape[0], 5, 1, 1, dtype=x.dtype, device=x.device)
        width = width or self.width
        height = height or self.height
        grey = torch.full((x.shape[0], 3, height, width), 0.0, device=devices.device)  # 0.5 grey in [-1, 1]
        latent = self.sd_model.get_first_stage_encoding(self.sd_model.encode_first_stage(grey))
        mask = torch.ones(x.shape[0], 1, *latent.shape[2:], device=latent.device, dtype=latent.dtype)
        return torch.cat([mask, latent], dim=1).to(x.dtype)

    def img2img_image_conditioning(self, source_image: torch.Tensor | None, latent_image: torch.Tensor,
                                   image_mask: Image.Image | torch.Tensor | None = None,
                                   round_image_mask: bool = True) -> torch.Tensor:
        """Extra UNet input channels for an img2img pass from `source_image` (in [-1, 1]): mask and masked-image
        latent for inpainting models, a dummy for the others."""
        return processing_img2img.image_conditioning(self, source_image, latent_image, image_mask, round_image_mask)

    def inpainting_image_conditioning(self, source_image: torch.Tensor, latent_image: torch.Tensor,
                                      image_mask: Image.Image | torch.Tensor | None = None,
                                      round_image_mask: bool = True) -> torch.Tensor:
        """[mask, latent of the masked image] weighted by inpainting_mask_weight (B, 1 + 4, h, w)."""
        return processing_img2img.inpainting_image_conditioning(self, source_image, latent_image, image_mask,
                                                                round_image_mask)


old_hires_fix_first_pass_dimensions = hires_fix.old_hires_fix_first_pass_dimensions


class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    """txt2img, with the optional hires fix: a first pass at width×height, an upscale (in latent space or with an
    image upscaler), and an img2img pass at the target size (a1111-spec §5.5)."""

    cached_hr_uc: list = [None, None]
    cached_hr_c: list = [None, None]

    def __init__(
        self,
        enable_hr: bool = False,
        denoising_strength: float = 0.75,
        firstphase_width: int = 0,
        firstphase_height: int = 0,
        hr_scale: float = 2.0,
        hr_upscaler: str | None = None,
        hr_second_pass_steps: int = 0,
        hr_resize_x: int = 0,
        hr_resize_y: int = 0,
        hr_checkpoint_name: str | None = None,
        hr_sampler_name: str | None = None,
        hr_scheduler: str | None = None,
        hr_prompt: str = "",
        hr_negative_prompt: str = "",
        force_task_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(denoising_strength=denoising_strength, **kwargs)
        self.enable_hr = enable_hr
        self.firstphase_width = firstphase_width
        self.firstphase_height = firstphase_height
        self.hr_scale = hr_scale
        self.hr_upscaler = hr_upscaler
        self.hr_second_pass_steps = hr_second_pass_steps
        self.hr_resize_x = hr_resize_x
        self.hr_resize_y = hr_resize_y
        self.hr_checkpoint_name = hires_fix.unless_same(hr_checkpoint_name, "Use same checkpoint")
        self.hr_sampler_name = hires_fix.unless_same(hr_sampler_name, "Use same sampler")
        self.hr_scheduler = hires_fix.unless_same(hr_scheduler, "Use same scheduler")
        self.hr_prompt = hr_prompt
        self.hr_negative_prompt = hr_negative_prompt
        self.force_task_id = force_task_id
        self.hr_checkpoint_info = None
        self.hr_upscale_to_x = 0
        self.hr_upscale_to_y = 0
        self.truncate_x = 0
        self.truncate_y = 0
        self.applied_old_hires_behavior_to = None
        self.latent_scale_mode: dict[str, Any] | None = None
        self.hr_c = None
        self.hr_uc = None
        self.all_hr_prompts: list[str] = []
        self.all_hr_negative_prompts: list[str] = []
        self.hr_prompts: list[str] = []
        self.hr_negative_prompts: list[str] = []
        self.hr_extra_network_data: dict = {}
        if firstphase_width != 0 or firstphase_height != 0:
            # legacy API fields: width/height were the final size, firstphase_* the first pass
            self.hr_upscale_to_x = self.width
            self.hr_upscale_to_y = self.height
            self.width = firstphase_width
            self.height = firstphase_height

    def validate(self) -> None:
        super().validate()
        hires_fix.validate(self)

    def init(self, all_prompts, all_seeds, all_subseeds) -> None:
        if self.enable_hr:
            hires_fix.init(self)

    def calculate_target_resolution(self) -> None:
        hires_fix.calculate_target_resolution(self)

    def setup_prompts(self) -> None:
        super().setup_prompts()
        hires_fix.setup_prompts(self)

    def setup_conds(self) -> None:
        if self.is_hr_pass:  # called again during the hires pass (e.g. by a refiner): only the hires conds
            self.hr_c = None
            self.calculate_hr_conds()
            return
        super().setup_conds()
        self.hr_c = None
        self.hr_uc = None
        if not self.enable_hr:
            return
        bs, n = self.batch_size, self.iteration
        self.hr_prompts = self.all_hr_prompts[n * bs:(n + 1) * bs]
        self.hr_negative_prompts = self.all_hr_negative_prompts[n * bs:(n + 1) * bs]
        if self.disable_extra_networks or opts.hires_fix_use_firstpass_conds:
            self.hr_extra_network_data = self.extra_network_data
            self.hr_prompts = extra_networks.parse_prompts(self.hr_prompts)[0]
        else:
            self.hr_prompts, self.hr_extra_network_data = extra_networks.parse_prompts(self.hr_prompts)
        self.hr_negative_prompts = extra_networks.parse_prompts(self.hr_negative_prompts)[0]
        if self.hr_checkpoint_info is None and opts.hires_fix_use_firstpass_conds:
            self.calculate_hr_conds()

    def calculate_hr_conds(self) -> None:
        hires_fix.calculate_hr_conds(self)

    def get_conds(self):
        if self.is_hr_pass:
            return self.hr_c, self.hr_uc
        return super().get_conds()

    def close(self) -> None:
        super().close()
        self.hr_c = None
        self.hr_uc = None
        if not opts.persistent_cond_cache:
            StableDiffusionProcessingTxt2Img.cached_hr_c = [None, None]
            StableDiffusionProcessingTxt2Img.cached_hr_uc = [None, None]

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        if self.enable_hr and self.firstpass_image is not None:
            samples, decoded_samples = hires_fix.first_pass_from_image(self, len(seeds))
        else:
            x = self.rng.next()
            if self.scripts is not None:
                self.scripts.process_before_every_sampling(self, x=x, noise=x, c=conditioning,
                                                           uc=unconditional_conditioning)
            samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning,
                                          image_conditioning=self.txt2img_image_conditioning(x))
            del x
            if not self.enable_hr:
                return samples
            devices.torch_gc()
            decoded_samples = None
            if self.latent_scale_mode is None:
                devices.test_for_nans(samples, "unet")
                decoded_samples = decode_latent_batch(self.sd_model, samples)

        first_model = self.sd_model.sd_checkpoint_info
        info = self.hr_checkpoint_info
        if info is None or info.filename == first_model.filename:
            return self.sample_hr_pass(samples, decoded_samples, seeds, subseeds, subseed_strength, prompts)
        sd_models.reload_model_weights(info=info)
        try:
            return self.sample_hr_pass(samples, decoded_samples, seeds, subseeds, subseed_strength, prompts)
        finally:
            sd_models.reload_model_weights(info=first_model)

    def save_before_highres(self, image: Image.Image | torch.Tensor, index: int) -> None:
        hires_fix.save_before_highres(self, image, index)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        """Upscale the first pass and re-draw it at the target size; returns decoded images (`already_decoded`)."""
        return hires_fix.sample_hr_pass(self, samples, decoded_samples)


class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """img2img and inpainting: start from `init_images` (a1111-spec §1.3, §5.5, §9.5).

    `mask` (white = inpaint) is kept as `image_mask`; after `init()`, `mask`/`nmask` are the latent keep/inpaint
    masks and `init_latent` the encoded init images.
    """

    def __init__(
        self,
        init_images: list | None = None,
        resize_mode: int = 0,
        denoising_strength: float = 0.75,
        image_cfg_scale: float | None = None,
        mask: Image.Image | None = None,
        mask_blur_x: int = 4,
        mask_blur_y: int = 4,
        mask_blur: int | None = None,
        mask_round: bool = True,
        inpainting_fill: int = 0,
        inpaint_full_res: bool = True,
        inpaint_full_res_padding: int = 0,
        inpainting_mask_invert: int = 0,
        initial_noise_multiplier: float | None = None,
        latent_mask: Image.Image | None = None,
        force_task_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(denoising_strength=denoising_strength, **kwargs)
        self.init_images = init_images
        self.resize_mode = resize_mode
        self.image_cfg_scale = image_cfg_scale
        self.image_mask = mask
        self.mask: torch.Tensor | None = None
        self.mask_blur_x = mask_blur_x
        self.mask_blur_y = mask_blur_y
        if mask_blur is not None:
            self.mask_blur = mask_blur
        self.mask_round = mask_round
        self.inpainting_fill = inpainting_fill
        self.inpaint_full_res = inpaint_full_res
        self.inpaint_full_res_padding = inpaint_full_res_padding
        self.inpainting_mask_invert = inpainting_mask_invert
        self.initial_noise_multiplier = (opts.initial_noise_multiplier if initial_noise_multiplier is None
                                         else initial_noise_multiplier)
        self.latent_mask = latent_mask
        self.force_task_id = force_task_id
        self.nmask: torch.Tensor | None = None
        self.init_latent: torch.Tensor | None = None
        self.encoded_latent: torch.Tensor | None = None  # init_latent before per-batch "latent noise" fill
        self.image_conditioning: torch.Tensor | None = None
        self.init_img_hash: str | None = None
        self.mask_for_overlay: Image.Image | None = None
        if self.outpath_samples is None:
            self.outpath_samples = opts.outdir_samples or opts.outdir_img2img_samples
        if self.outpath_grids is None:
            self.outpath_grids = opts.outdir_grids or opts.outdir_img2img_grids

    @property
    def mask_blur(self) -> int | None:
        return self.mask_blur_x if self.mask_blur_x == self.mask_blur_y else None

    @mask_blur.setter
    def mask_blur(self, value: int | float) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            self.mask_blur_x = int(value)
            self.mask_blur_y = int(value)

    def validate(self) -> None:
        super().validate()
        processing_img2img.validate(self)

    def init(self, all_prompts, all_seeds, all_subseeds) -> None:
        processing_img2img.init(self)

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        if self.initial_noise_multiplier != 1.0:
            self.extra_generation_params["Noise multiplier"] = self.initial_noise_multiplier
            x = x * self.initial_noise_multiplier
        if self.mask is not None and self.inpainting_fill == 2:
            processing_img2img.fill_latent_noise(self, seeds)
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(self, x=self.init_latent, noise=x, c=conditioning,
                                                       uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, self.init_latent, x, conditioning, unconditional_conditioning,
                                              image_conditioning=self.image_conditioning)
        if self.mask is not None:
            blended = samples * self.nmask + self.init_latent * self.mask
            samples = blend_hook(self, samples, self.nmask, self.init_latent, self.mask, blended)
        return samples

    def get_token_merging_ratio(self, for_hr: bool = False) -> float:
        return (self.token_merging_ratio
                or ("token_merging_ratio" in self.override_settings and opts.token_merging_ratio)
                or opts.token_merging_ratio_img2img or opts.token_merging_ratio)


class Processed:
    """The result of a generation: images, the infotext of each, seeds, and the parameters used."""

    def __init__(self, p: StableDiffusionProcessing, images_list: list, seed: int = -1, info: str = "",
                 subseed: int | None = None, all_prompts=None, all_negative_prompts=None, all_seeds=None,
                 all_subseeds=None, index_of_first_image: int = 0, infotexts: list[str] | None = None,
                 comments: str = "", extra_images_list: list | None = None):
        self.images = images_list
        self.extra_images = extra_images_list or []
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{comment}\n" for comment in p.comments)
        self.width = p.width
        self.height = p.height
        self.sampler_name = p.sampler_name
        self.cfg_scale = p.cfg_scale
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.restore_faces = p.restore_faces
        self.face_restoration_model = opts.face_restoration_model if p.restore_faces else None
        self.sd_model_name = p.sd_model_name
        self.sd_model_hash = p.sd_model_hash
        self.sd_vae_name = p.sd_vae_name
        self.sd_vae_hash = p.sd_vae_hash
        self.seed_resize_from_w = p.seed_resize_from_w
        self.seed_resize_from_h = p.seed_resize_from_h
        self.denoising_strength = getattr(p, "denoising_strength", None)
        self.extra_generation_params = p.extra_generation_params
        self.index_of_first_image = index_of_first_image
        self.styles = p.styles
        self.job_timestamp = state.job_timestamp
        self.clip_skip = p.clip_skip
        self.eta = p.eta
        self.ddim_discretize = p.ddim_discretize
        self.s_churn = p.s_churn
        self.s_tmin = p.s_tmin
        self.s_tmax = p.s_tmax
        self.s_noise = p.s_noise
        self.s_min_uncond = p.s_min_uncond
        self.sampler_noise_scheduler_override = p.sampler_noise_scheduler_override
        self.prompt = self.prompt if not isinstance(self.prompt, list) else self.prompt[0]
        self.negative_prompt = self.negative_prompt if not isinstance(self.negative_prompt, list) else self.negative_prompt[0]
        self.is_using_inpainting_conditioning = p.is_using_inpainting_conditioning
        self.all_prompts = all_prompts or p.all_prompts or [self.prompt]
        self.all_negative_prompts = all_negative_prompts or p.all_negative_prompts or [self.negative_prompt]
        self.all_seeds = all_seeds or p.all_seeds or [self.seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [self.subseed]
        self.infotexts = infotexts or [info] * len(images_list)
        self.version = program_version()

    def js(self) -> str:
        """A1111's `info` JSON (the API returns it as a string)."""
        obj = {
            "prompt": self.all_prompts[0] if self.all_prompts else self.prompt,
            "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0] if self.all_negative_prompts else self.negative_prompt,
            "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed,
            "all_seeds": self.all_seeds,
            "subseed": self.subseed,
            "all_subseeds": self.all_subseeds,
            "subseed_strength": self.subseed_strength,
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler_name,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": self.restore_faces,
            "face_restoration_model": self.face_restoration_model,
            "sd_model_name": self.sd_model_name,
            "sd_model_hash": self.sd_model_hash,
            "sd_vae_name": self.sd_vae_name,
            "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w,
            "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image,
            "infotexts": self.infotexts,
            "styles": self.styles,
            "job_timestamp": self.job_timestamp,
            "clip_skip": self.clip_skip,
            "is_using_inpainting_conditioning": self.is_using_inpainting_conditioning,
            "version": self.version,
        }
        return json.dumps(obj, default=str)

    def infotext(self, p: StableDiffusionProcessing, index: int) -> str:
        return create_infotext(p, self.all_prompts, self.all_seeds, self.all_subseeds, comments=[],
                               position_in_batch=index % self.batch_size, iteration=index // self.batch_size)


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0,
                    use_main_prompt=False, index=None, all_negative_prompts=None) -> str:
    return infotext_utils.create_infotext(
        p, all_prompts, all_seeds, all_subseeds, comments, iteration, position_in_batch, use_main_prompt, index,
        all_negative_prompts, opts=opts, program_version=program_version(),
    )


def apply_override_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply per-job settings; returns the previous values. A checkpoint or VAE override loads it now."""
    stored: dict[str, Any] = {}
    try:
        for key, value in overrides.items():
            if key not in opts.data_labels:
                continue
            stored[key] = opts.data.get(key)
            if key == "sd_model_checkpoint":
                info = sd_models.find_checkpoint(str(value))
                sd_models.reload_model_weights(info=info)
                continue
            opts.data[key] = value
            if key == "sd_vae":
                sd_vae.reload_vae_weights()
    except BaseException:
        restore_settings(stored)  # a failed override must not leave the earlier ones applied
        raise
    return stored


def restore_settings(stored: dict[str, Any]) -> None:
    for key, value in stored.items():
        opts.data[key] = value
        if key == "sd_model_checkpoint" and value:
            info = sd_models.get_closet_checkpoint_match(value)
            if info is not None:
                sd_models.reload_model_weights(info=info)
        elif key == "sd_vae":
            sd_vae.reload_vae_weights()


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Validate, apply override settings, generate, restore settings."""
    p.validate()
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored = apply_override_settings(p.override_settings)
    p.clip_skip = int(opts.CLIP_stop_at_last_layers)  # an override may have changed it (infotext, Processed)
    try:
        sd_samplers_common.apply_setting_overrides(p)
        model = shared.sd_model
        if model is None:
            raise UserError(sd_models.no_checkpoints_message())
        p.clip_skip = int(opts.CLIP_stop_at_last_layers)  # after overrides: the value this job uses
        p.sd_model_name = model.sd_checkpoint_info.name_for_extra
        p.sd_model_hash = model.sd_model_hash
        p.sd_vae_name, p.sd_vae_hash = sd_vae.vae_name_and_hash(model)
        rng.set_default_settings(rng_settings())
        original_alphas = model.alphas_cumprod
        alphas, extra = sd_schedulers.apply_alpha_schedule_override(original_alphas, opts)
        p.extra_generation_params.update(extra)
        model.alphas_cumprod = alphas.to(original_alphas.device)
        try:
            return process_images_inner(p)
        finally:
            model.alphas_cumprod = original_alphas
    finally:
        if p.override_settings_restore_afterwards:
            restore_settings(stored)


def decode_latent_batch(model, batch: torch.Tensor) -> torch.Tensor:
    """Latents → float images in [0, 1], one image at a time (peak memory of one decode)."""
    return torch.cat([sd_vae.decode_latents(model, batch[i:i + 1]) for i in range(batch.shape[0])])


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """One image tensor in [0, 1] (3,H,W) → PIL, rounding like A1111 (255·x, truncated to uint8)."""
    arr = (255.0 * np.moveaxis(x.numpy(), 0, 2)).astype(np.uint8)
    return Image.fromarray(arr)


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    if isinstance(p.prompt, list):
        assert len(p.prompt) > 0
    devices.torch_gc()

    seed = get_fixed_seed(p.seed)
    subseed = get_fixed_seed(p.subseed)
    if p.restore_faces is None:
        p.restore_faces = opts.face_restoration
    if p.tiling is None:
        p.tiling = opts.tiling
    if p.outpath_samples is None:
        p.outpath_samples = opts.outdir_samples or opts.outdir_txt2img_samples
    if p.outpath_grids is None:
        p.outpath_grids = opts.outdir_grids or opts.outdir_txt2img_grids
    p.outpath_samples = paths_internal.data_relative(p.outpath_samples)
    p.outpath_grids = paths_internal.data_relative(p.outpath_grids)

    sd_hijack.model_hijack.clear_comments()
    p.setup_prompts()
    n_images = len(p.all_prompts)
    if isinstance(seed, list):
        p.all_seeds = list(seed)
    else:
        p.all_seeds = [int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(n_images)]
    if isinstance(subseed, list):
        p.all_subseeds = list(subseed)
    else:
        p.all_subseeds = [int(subseed) + x for x in range(n_images)]
    p.seed, p.subseed = p.all_seeds[0], p.all_subseeds[0]
    if not p.do_not_reload_embeddings:
        sd_hijack.model_hijack.embedding_db.load_textual_inversion_embeddings()

    if p.scripts is not None:
        p.scripts.process(p)

    infotexts: list[str] = []
    output_images: list[Image.Image] = []

    def infotext(index: int = 0, use_main_prompt: bool = False) -> str:
        return create_infotext(p, p.prompts, p.seeds, p.subseeds, use_main_prompt=use_main_prompt, index=index,
                               all_negative_prompts=p.negative_prompts)

    with torch.no_grad():
        p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        if state.job_count <= 0:
            state.job_count = p.n_iter

        for n in range(p.n_iter):
            p.iteration = n
            if state.skipped:
                state.skipped = False
            if state.interrupted or state.stopping_generation:
                break

            bs = p.batch_size
            p.prompts = p.all_prompts[n * bs:(n + 1) * bs]
            p.negative_prompts = p.all_negative_prompts[n * bs:(n + 1) * bs]
            p.seeds = p.all_seeds[n * bs:(n + 1) * bs]
            p.subseeds = p.all_subseeds[n * bs:(n + 1) * bs]
            if not p.prompts:
                break
            latent_channels = getattr(shared.sd_model, "latent_channels", opt_C)
            p.rng = rng.ImageRNG((latent_channels, p.height // opt_f, p.width // opt_f), p.seeds,
                                 subseeds=p.subseeds, subseed_strength=p.subseed_strength,
                                 seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w)

            if p.scripts is not None:
                p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds,
                                               subseeds=p.subseeds)
            p.parse_extra_network_prompts()
            if not p.disable_extra_networks:
                with devices.autocast():
                    extra_networks.activate(p, p.extra_network_data)
            if p.scripts is not None:
                p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)

            p.setup_conds()
            p.extra_generation_params.update(sd_hijack.model_hijack.extra_generation_params)
            for comment in sd_hijack.model_hijack.comments:
                p.comment(comment)

            if n == 0 and not shared.cmd_opts.no_prompt_history:
                _write_params_txt(create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, index=0))

            samples = p.sample(conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds,
                               subseeds=p.subseeds, subseed_strength=p.subseed_strength, prompts=p.prompts)
            if p.scripts is not None:
                ps = scripts.PostSampleArgs(samples)
                p.scripts.post_sample(p, ps)
                samples = ps.samples

            if getattr(samples, "already_decoded", False):  # a script or the hires pass decoded them
                x_samples = samples
            else:
                devices.test_for_nans(samples, "unet")
                x_samples = decode_latent_batch(p.sd_model, samples)
            del samples

            if p.scripts is not None:
                p.scripts.postprocess_batch(p, x_samples, batch_number=n)
            # infotexts show the prompts as written, extra-network tags included (A1111)
            p.prompts = p.all_prompts[n * bs:(n + 1) * bs]
            p.negative_prompts = p.all_negative_prompts[n * bs:(n + 1) * bs]
            if p.scripts is not None:
                batch_params = scripts.PostprocessBatchListArgs(list(x_samples))
                p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
                x_samples = batch_params.images

            for i, x_sample in enumerate(x_samples):
                p.batch_index = i
                image = tensor_to_pil(x_sample)
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)
                    p.scripts.postprocess_image(p, pp)
                    image = pp.image
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)
                    p.scripts.postprocess_image_after_composite(p, pp)
                    image = pp.image
                text = infotext(i)
                image = processing_img2img.finish_image(p, i, image, text)  # img2img: overlay, colours, masks
                infotexts.append(text)
                if p.save_samples():
                    images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i], opts.samples_format,
                                      info=text, p=p)
                output_images.append(image)
            del x_samples
            devices.torch_gc()
            state.nextjob()

    index_of_first_image = 0
    unwanted_grid = len(output_images) < 2 and opts.grid_only_if_multiple
    if (opts.return_grid or opts.grid_save) and not p.do_not_save_grid and not unwanted_grid:
        grid = images.image_grid(output_images, p.batch_size)
        if opts.return_grid:
            text = infotext(use_main_prompt=True)
            infotexts.insert(0, text)
            output_images.insert(0, grid)
            index_of_first_image = 1
        if opts.grid_save:
            images.save_image(grid, p.outpath_grids, "grid", p.all_seeds[0], p.all_prompts[0], opts.grid_format,
                              info=infotext(use_main_prompt=True), short_filename=not opts.grid_extended_filename,
                              p=p, grid=True)

    if not p.disable_extra_networks:
        extra_networks.deactivate(p, p.extra_network_data)

    res = Processed(p, images_list=output_images, seed=p.all_seeds[0], info=infotexts[0] if infotexts else "",
                    subseed=p.all_subseeds[0], index_of_first_image=index_of_first_image, infotexts=infotexts,
                    extra_images_list=p.extra_result_images)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    p.close()
    return res


def _write_params_txt(text: str) -> None:
    """params.txt in the data dir holds the last generation's infotext (the ↙️ button reads it)."""
    from modules.fileio import atomic_write_text

    try:
        atomic_write_text(os.path.join(shared.data_path, "params.txt"), text)
    except OSError as e:
        log.warning("Could not write params.txt: %s", e)

