"""Classifier-free guidance around the model: the function samplers call as their denoiser.

For each call it picks the step's scheduled prompt conditioning, runs conditional and unconditional passes
(in one UNet batch when `batch_cond_uncond`), combines them as `uncond + Σ w·cfg·(cond − uncond)` over the
prompt's AND-parts, and applies the A1111 options that skip the unconditional pass (NGMS, Skip Early CFG).
Inpainting masks are blended here, and extension callbacks run before and after the model call.
"""

from __future__ import annotations

from typing import Any

import torch

from modules import prompt_parser, script_callbacks, sd_samplers_common
from modules.shared import opts, state


def cat_conds(conds: list[Any]) -> Any:
    """Concatenate along the batch axis; SDXL conditionings are dicts of tensors."""
    if isinstance(conds[0], dict):
        return {key: torch.cat([c[key] for c in conds]) for key in conds[0]}
    return torch.cat(conds)


def slice_cond(cond: Any, a: int, b: int) -> Any:
    if isinstance(cond, dict):
        return {key: value[a:b] for key, value in cond.items()}
    return cond[a:b]


def pad_to_tokens(cond: torch.Tensor, tokens: int, empty: torch.Tensor | None) -> torch.Tensor:
    """Pad the token axis to `tokens`: with the empty prompt's chunks when known (pad_cond_uncond), else by
    repeating the last token vector (A1111's v0 padding)."""
    missing = tokens - cond.shape[1]
    if missing <= 0:
        return cond
    if empty is not None and missing % empty.shape[1] == 0:
        filler = empty.to(cond).repeat(cond.shape[0], missing // empty.shape[1], 1)
    else:
        filler = cond[:, -1:].repeat(1, missing, 1)
    return torch.cat([cond, filler], dim=1)


def tokens_of(cond: Any) -> int:
    return (cond["crossattn"] if isinstance(cond, dict) else cond).shape[1]


def blend_hook(p: Any, current_latent: torch.Tensor, nmask: torch.Tensor, init_latent: torch.Tensor,
               mask: torch.Tensor, blended_latent: torch.Tensor, denoiser: Any = None,
               sigma: torch.Tensor | None = None) -> torch.Tensor:
    """Let scripts change an inpainting blend (A1111's `on_mask_blend` with `scripts.MaskBlendArgs`; no denoiser
    means the final blend after sampling)."""
    if p is None or getattr(p, "scripts", None) is None or not hasattr(p.scripts, "on_mask_blend"):
        return blended_latent
    from modules import scripts

    args = scripts.MaskBlendArgs(current_latent, nmask, init_latent, mask, blended_latent, denoiser=denoiser,
                                 sigma=sigma)
    p.scripts.on_mask_blend(p, args)
    return args.blended_latent


class CFGDenoiser(torch.nn.Module):
    """Guided denoiser for one sampler over `model_wrap`, the sampler-specific model wrapper (σ- or t-based)."""

    mask_before_denoising = False

    def __init__(self, sampler: Any, model_wrap: Any):
        super().__init__()
        self.sampler = sampler
        self.model_wrap = model_wrap
        self.p: Any = None
        self.mask: torch.Tensor | None = None
        self.nmask: torch.Tensor | None = None
        self.init_latent: torch.Tensor | None = None
        self.init_noise: torch.Tensor | None = None
        self.image_cfg_scale: float | None = None
        self.step = 0
        self.steps: int | None = None
        self.total_steps: int | None = None
        self.cond_scale_miltiplier = 1.0  # A1111's spelling; samplers like DDIM CFG++ set it
        self.need_last_noise_uncond = False
        self.last_noise_uncond: torch.Tensor | None = None
        self.padded_cond_uncond = False

    @property
    def inner_model(self) -> Any:
        return self.model_wrap

    def make_condition_dict(self, c_crossattn: Any, c_concat: torch.Tensor) -> dict[str, Any]:
        if isinstance(c_crossattn, dict):
            return {"crossattn": c_crossattn["crossattn"], "vector": c_crossattn["vector"], "c_concat": [c_concat]}
        return {"c_crossattn": [c_crossattn], "c_concat": [c_concat]}

    def combine_denoised(self, x_out: torch.Tensor, conds_list: list, uncond: Any, cond_scale: float) -> torch.Tensor:
        n_uncond = x_out.shape[0] - sum(len(c) for c in conds_list)
        denoised_uncond = x_out[-n_uncond:]
        denoised = torch.clone(denoised_uncond)
        for i, conds in enumerate(conds_list):
            for cond_index, weight in conds:
                denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
        return denoised

    def get_pred_x0(self, x_in: torch.Tensor, x_out: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x_out

    def initial_latent_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """The init latent as the blend needs it at `sigma`: clean here, since k-diffusion blends the denoised
        prediction (timestep samplers blend their noisy input instead and override this)."""
        return self.init_latent

    def apply_blend(self, latent: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Inpainting: keep the original latent where `mask` is 1, the sampled one where `nmask` is 1; scripts'
        `on_mask_blend` may change the result."""
        blended = latent * self.nmask + self.initial_latent_at(sigma) * self.mask
        return blend_hook(self.p, latent, self.nmask, self.init_latent, self.mask, blended, self, sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, uncond: Any, cond: Any, cond_scale: float,
                s_min_uncond: float, image_cond: torch.Tensor) -> torch.Tensor:
        if state.interrupted or state.skipped:
            raise sd_samplers_common.InterruptedException

        conds_list, tensor = prompt_parser.reconstruct_multicond_batch(cond, self.step)
        uncond = prompt_parser.reconstruct_cond_batch(uncond, self.step)

        if self.mask_before_denoising and self.mask is not None:
            x = self.apply_blend(x, sigma)

        batch_size = len(conds_list)
        repeats = [len(conds) for conds in conds_list]

        def per_part(t: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
            return torch.cat([t[i:i + 1].expand(n, *t.shape[1:]) for i, n in enumerate(repeats)] + [tail])

        image_uncond = image_cond
        x_in = per_part(x, x)
        sigma_in = per_part(sigma, sigma)
        image_cond_in = per_part(image_cond, image_uncond)

        params = script_callbacks.CFGDenoiserParams(x_in, image_cond_in, sigma_in, state.sampling_step,
                                                    state.sampling_steps, tensor, uncond, self)
        script_callbacks.cfg_denoiser_callback(params)
        x_in, image_cond_in, sigma_in = params.x, params.image_cond, params.sigma
        tensor, uncond = params.text_cond, params.text_uncond

        skip_uncond = False
        if opts.skip_early_cond != 0 and self.total_steps and self.step / self.total_steps <= opts.skip_early_cond:
            skip_uncond = True
            self.p.extra_generation_params["Skip Early CFG"] = opts.skip_early_cond
        elif (self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond:
            skip_uncond = True
            self.p.extra_generation_params["NGMS"] = s_min_uncond
            if opts.s_min_uncond_all:
                self.p.extra_generation_params["NGMS all steps"] = opts.s_min_uncond_all
        if skip_uncond:
            x_in, sigma_in, image_cond_in = x_in[:-batch_size], sigma_in[:-batch_size], image_cond_in[:-batch_size]

        if not skip_uncond and tokens_of(tensor) != tokens_of(uncond):
            tensor, uncond = self.pad_conds(tensor, uncond)

        x_out = self.run_model(x_in, sigma_in, tensor, None if skip_uncond else uncond, image_cond_in, batch_size)

        denoised_image_indexes = [conds[0][0] for conds in conds_list]
        if skip_uncond:
            x_out = torch.cat([x_out, torch.cat([x_out[i:i + 1] for i in denoised_image_indexes])])

        script_callbacks.cfg_denoised_callback(
            script_callbacks.CFGDenoisedParams(x_out, state.sampling_step, state.sampling_steps, self.inner_model))

        if self.need_last_noise_uncond:
            self.last_noise_uncond = (x - x_out[-batch_size:]) / sigma[:, None, None, None]

        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_miltiplier
        denoised = self.combine_denoised(x_out, conds_list, uncond, scale)

        if not self.mask_before_denoising and self.mask is not None:
            denoised = self.apply_blend(denoised, sigma)

        first_images = torch.cat([x_in[i:i + 1] for i in denoised_image_indexes])
        self.sampler.last_latent = self.get_pred_x0(first_images,
                                                    torch.cat([x_out[i:i + 1] for i in denoised_image_indexes]), sigma)
        if opts.live_preview_content == "Negative prompt":
            preview = self.get_pred_x0(x_in[-batch_size:], x_out[-batch_size:], sigma)
        elif opts.live_preview_content == "Combined":
            preview = self.get_pred_x0(first_images, torch.cat([denoised[i:i + 1] for i in range(batch_size)]), sigma)
        else:
            preview = self.sampler.last_latent
        sd_samplers_common.store_latent(preview)

        after = script_callbacks.AfterCFGCallbackParams(denoised, state.sampling_step, state.sampling_steps)
        script_callbacks.cfg_after_cfg_callback(after)
        self.step += 1
        return after.x

    def pad_conds(self, cond: Any, uncond: Any) -> tuple[Any, Any]:
        """Cond and uncond of different lengths: pad the shorter (A1111's pad_cond_uncond options), else the
        two are run in separate UNet calls by `run_model`."""
        if not (opts.pad_cond_uncond or opts.pad_cond_uncond_v0):
            return cond, uncond
        tokens = max(tokens_of(cond), tokens_of(uncond))
        if opts.pad_cond_uncond_v0:
            self.p.extra_generation_params["Pad conds v0"] = True
            empty = None
        else:
            self.p.extra_generation_params["Pad conds"] = True
            empty = getattr(self.p.sd_model, "cond_stage_model_empty_prompt", None)

        def pad(c: Any) -> Any:
            if isinstance(c, dict):
                return {**c, "crossattn": pad_to_tokens(c["crossattn"], tokens, empty)}
            return pad_to_tokens(c, tokens, empty)

        self.padded_cond_uncond = True
        return pad(cond), pad(uncond)

    def run_model(self, x_in: torch.Tensor, sigma_in: torch.Tensor, cond: Any, uncond: Any | None,
                  image_cond_in: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Model outputs for [cond parts..., uncond]; one call when possible (same token count + batching)."""
        model = self.inner_model
        if uncond is None:
            return model(x_in, sigma_in, cond=self.make_condition_dict(cond, image_cond_in))
        n_cond = x_in.shape[0] - batch_size
        if tokens_of(cond) == tokens_of(uncond):
            cond_in = cat_conds([cond, uncond])
            if opts.batch_cond_uncond:
                return model(x_in, sigma_in, cond=self.make_condition_dict(cond_in, image_cond_in))
            x_out = torch.zeros_like(x_in)
            for a in range(0, x_out.shape[0], batch_size):
                b = a + batch_size
                x_out[a:b] = model(x_in[a:b], sigma_in[a:b],
                                   cond=self.make_condition_dict(slice_cond(cond_in, a, b), image_cond_in[a:b]))
            return x_out
        x_out = torch.zeros_like(x_in)
        step = batch_size * 2 if opts.batch_cond_uncond else batch_size
        for a in range(0, n_cond, step):
            b = min(a + step, n_cond)
            x_out[a:b] = model(x_in[a:b], sigma_in[a:b],
                               cond=self.make_condition_dict(slice_cond(cond, a, b), image_cond_in[a:b]))
        x_out[n_cond:] = model(x_in[n_cond:], sigma_in[n_cond:],
                               cond=self.make_condition_dict(uncond, image_cond_in[n_cond:]))
        return x_out
