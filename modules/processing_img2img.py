"""img2img and inpainting: preparing masks, init latents and inpainting conditioning, and finishing each image
(colour correction, pasting the original back, mask outputs). `StableDiffusionProcessingImg2Img`'s methods
(A1111's names) delegate to these functions, which take the processing object `p`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from modules import color_correction, devices, images, images_ops, masking, paths_internal, sd_samplers, sd_vae
from modules.errors import UserError
from modules.shared import opts

log = logging.getLogger(__name__)

OPT_F = 8  # pixels per latent cell


def whole_number(value: Any) -> int | None:
    """An int from an int or an integral float (UI sliders send 1024.0); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def validate(p: Any) -> None:
    """Refuse img2img parameters that cannot work, with one message naming the field."""
    if not p.init_images:
        raise UserError("img2img needs an init image: none was given.")
    if not all(isinstance(img, Image.Image) for img in p.init_images):
        raise UserError("Every init image must be an image (got something else).")
    if p.image_mask is not None and not isinstance(p.image_mask, Image.Image):
        raise UserError("The inpainting mask must be an image.")
    if p.resize_mode not in (0, 1, 2, 3):
        modes = ", ".join(f"{i} {name}" for i, name in enumerate(images_ops.RESIZE_MODES))
        raise UserError(f"Resize mode must be one of {modes}; got {p.resize_mode!r}.")
    if p.inpainting_fill not in (0, 1, 2, 3):
        raise UserError(f"Masked content (inpainting_fill) must be 0 fill, 1 original, 2 latent noise or "
                        f"3 latent nothing; got {p.inpainting_fill!r}.")
    if not 0 <= float(p.denoising_strength) <= 1:
        raise UserError(f"Denoising strength must be between 0 and 1 (got {p.denoising_strength}).")
    padding = whole_number(p.inpaint_full_res_padding)
    if p.mask_blur_x < 0 or p.mask_blur_y < 0 or padding is None or padding < 0:
        raise UserError("Mask blur and masked area padding must not be negative (padding: whole pixels).")
    p.inpaint_full_res_padding = padding
    if len(p.init_images) > 1 and len(p.init_images) > p.batch_size:
        raise UserError(f"bad number of images passed: {len(p.init_images)}; expecting {p.batch_size} or less")


def prepare_mask(p: Any) -> tuple[Image.Image | None, tuple[int, int, int, int] | None]:
    """The processing-size mask (binarised, inverted, blurred; cropped for "only masked") and the crop
    region; sets `mask_for_overlay` and the mask infotext fields."""
    if p.image_mask is None:
        return None, None
    image_mask = p.image_mask
    first = p.init_images[0]
    if p.inpaint_full_res and image_mask.size != first.size:
        # the crop rectangle is found on the mask and cut from the image: a mask of another size is
        # stretched over the image first (whole-picture masks are resized like the image, as A1111 does)
        image_mask = image_mask.resize(first.size, resample=images_ops.LANCZOS)
    image_mask = masking.create_binary_mask(image_mask, round=p.mask_round)
    if p.inpainting_mask_invert:
        image_mask = ImageOps.invert(image_mask)
        p.extra_generation_params["Mask mode"] = "Inpaint not masked"
    image_mask = masking.blur_mask(image_mask, p.mask_blur_x, p.mask_blur_y)
    if p.mask_blur_x > 0 or p.mask_blur_y > 0:
        p.extra_generation_params["Mask blur"] = p.mask_blur
    if image_mask.getbbox() is None:
        message = "The inpainting mask is empty (all black): nothing is inpainted."
        if p.inpaint_full_res:
            message = ('Unable to perform "Inpaint Only mask" because mask is blank, switch to img2img mode.')
        log.info(message)
        p.comment(message)

    if p.inpaint_full_res:
        p.mask_for_overlay = image_mask
        crop_region = masking.get_crop_region_v2(image_mask, p.inpaint_full_res_padding)
        if crop_region is None:
            p.mask_for_overlay = None
            p.inpaint_full_res = False
            return None, None
        crop_region = masking.expand_crop_region(crop_region, p.width, p.height, image_mask.width, image_mask.height)
        x1, y1, x2, y2 = crop_region
        image_mask = images_ops.resize_image(2, image_mask.crop(crop_region), p.width, p.height)
        p.paste_to = (x1, y1, x2 - x1, y2 - y1)
        p.extra_generation_params["Inpaint area"] = "Only masked"
        p.extra_generation_params["Masked area padding"] = p.inpaint_full_res_padding
        return image_mask, crop_region

    image_mask = images_ops.resize_image(p.resize_mode, image_mask, p.width, p.height)
    doubled = np.clip(np.asarray(image_mask.convert("L")).astype(np.float32) * 2, 0, 255).astype(np.uint8)
    p.mask_for_overlay = Image.fromarray(doubled)
    return image_mask, None


def init(p: Any) -> None:
    """Masks, overlays, colour-correction targets, the init latents and the image conditioning of a job."""
    p.extra_generation_params["Denoising strength"] = p.denoising_strength
    p.image_cfg_scale = p.image_cfg_scale if p.sd_model.cond_stage_key == "edit" else None
    p.sampler = sd_samplers.create_sampler(p.sampler_name, p.sd_model)

    image_mask, crop_region = prepare_mask(p)
    if image_mask is not None:
        p.overlay_images = []
    latent_mask = p.latent_mask if p.latent_mask is not None else image_mask

    add_color_corrections = opts.img2img_color_correction and p.color_corrections is None
    if add_color_corrections:
        p.color_corrections = []
    imgs = []
    for img in p.init_images:
        if opts.save_init_img:
            p.init_img_hash = hashlib.md5(img.tobytes()).hexdigest()
            images.save_image(img, paths_internal.data_relative(opts.outdir_init_images), "",
                              forced_filename=p.init_img_hash, save_to_dirs=False, existing_info=img.info)
        image = images.flatten(img, opts.img2img_background_color)
        if crop_region is None and p.resize_mode != 3:
            image = images_ops.resize_image(p.resize_mode, image, p.width, p.height)
        if image_mask is not None:
            if p.mask_for_overlay.size != image.size:
                p.mask_for_overlay = images_ops.resize_image(p.resize_mode, p.mask_for_overlay, image.width,
                                                             image.height)
            p.overlay_images.append(masking.overlay_image(image, p.mask_for_overlay))
        if crop_region is not None:
            image = images_ops.resize_image(2, image.crop(crop_region), p.width, p.height)
        if image_mask is not None and p.inpainting_fill != 1:
            fill_mask = latent_mask if latent_mask.size == image.size else latent_mask.resize(image.size)
            image = masking.fill(image, fill_mask)
            if p.inpainting_fill == 0:
                p.extra_generation_params["Masked content"] = "fill"
        if add_color_corrections:
            p.color_corrections.append(color_correction.setup_color_correction(image))
        imgs.append(np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, 2, 0))

    if len(imgs) == 1:
        batch_images = np.repeat(imgs[0][None], p.batch_size, axis=0)
        if p.overlay_images is not None:
            p.overlay_images = p.overlay_images * p.batch_size
        if p.color_corrections is not None and len(p.color_corrections) == 1:
            p.color_corrections = p.color_corrections * p.batch_size
    else:
        p.batch_size = len(imgs)
        batch_images = np.stack(imgs)

    image = torch.from_numpy(batch_images).to(devices.device, dtype=devices.dtype_vae)
    p.init_latent = sd_vae.encode_images(p.sd_model, image)
    if p.resize_mode == 3:
        p.init_latent = torch.nn.functional.interpolate(
            p.init_latent, size=(p.height // OPT_F, p.width // OPT_F), mode="bilinear")

    if image_mask is not None:
        latmask = latent_mask.convert("RGB").resize((p.init_latent.shape[3], p.init_latent.shape[2]))
        latmask = np.asarray(latmask, dtype=np.float32)[:, :, 0] / 255
        if p.mask_round:
            latmask = np.around(latmask)
        latmask = np.tile(latmask[None], (p.init_latent.shape[1], 1, 1))
        p.mask = torch.asarray(1.0 - latmask).to(devices.device).type(devices.dtype)
        p.nmask = torch.asarray(latmask).to(devices.device).type(devices.dtype)
        if p.inpainting_fill == 2:
            p.extra_generation_params["Masked content"] = "latent noise"
        elif p.inpainting_fill == 3:
            p.init_latent = p.init_latent * p.mask
            p.extra_generation_params["Masked content"] = "latent nothing"
    p.encoded_latent = p.init_latent
    p.image_conditioning = p.img2img_image_conditioning(image * 2 - 1, p.init_latent, image_mask, p.mask_round)


def fill_latent_noise(p: Any, seeds: list[int]) -> None:
    """Masked content "latent noise": the masked area of this batch's start latent is each image's seed noise."""
    from modules import processing

    noise = processing.create_random_tensors(p.encoded_latent.shape[1:], seeds[:p.encoded_latent.shape[0]])
    p.init_latent = p.encoded_latent * p.mask + noise.to(p.encoded_latent) * p.nmask


def image_conditioning(p: Any, source_image: torch.Tensor | None, latent_image: torch.Tensor,
                       image_mask: Image.Image | torch.Tensor | None = None, round_image_mask: bool = True) -> torch.Tensor:
    """Extra UNet input channels for an img2img pass from `source_image` (in [-1, 1]): the mask and the
    masked image's latent for inpainting models, a dummy for the others."""
    if not p.sd_model.is_inpaint:
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)
    return p.inpainting_image_conditioning(devices.cond_cast_float(source_image), latent_image, image_mask=image_mask,
                                           round_image_mask=round_image_mask)


def inpainting_image_conditioning(p: Any, source_image: torch.Tensor, latent_image: torch.Tensor,
                                  image_mask: Image.Image | torch.Tensor | None = None,
                                  round_image_mask: bool = True) -> torch.Tensor:
    """[mask, latent of the masked image] (B, 1 + 4, h, w). The masked image blends from the source towards
    the source with the masked area blanked by `inpainting_mask_weight` (1 = fully blanked)."""
    p.is_using_inpainting_conditioning = True
    if image_mask is None:
        conditioning_mask = source_image.new_ones(1, 1, *source_image.shape[-2:])
    elif torch.is_tensor(image_mask):
        conditioning_mask = image_mask
    else:
        arr = np.asarray(image_mask.convert("L"), dtype=np.float32) / 255.0
        conditioning_mask = torch.from_numpy(arr[None, None].copy())
        if round_image_mask:
            conditioning_mask = torch.round(conditioning_mask)
    conditioning_mask = conditioning_mask.to(device=source_image.device, dtype=source_image.dtype)
    if conditioning_mask.shape[-2:] != source_image.shape[-2:]:
        conditioning_mask = torch.nn.functional.interpolate(conditioning_mask, size=source_image.shape[-2:])
    weight = getattr(p, "inpainting_mask_weight", opts.inpainting_mask_weight)
    conditioning_image = torch.lerp(source_image, source_image * (1.0 - conditioning_mask), weight)
    conditioning_image = sd_vae.encode_latents(p.sd_model, conditioning_image)
    conditioning_mask = torch.nn.functional.interpolate(conditioning_mask, size=latent_image.shape[-2:])
    conditioning_mask = conditioning_mask.expand(conditioning_image.shape[0], -1, -1, -1)
    image_conditioning = torch.cat([conditioning_mask, conditioning_image.to(conditioning_mask)], dim=1)
    return image_conditioning.to(devices.device).type(p.sd_model.dtype)


def finish_image(p: Any, index: int, image: Image.Image, text: str) -> Image.Image:
    """img2img's finishing of image `index` of the batch: colour correction, the original pasted back outside the
    mask ("only masked" crops first), and the mask / masked composite outputs (settings return_mask,
    return_mask_composite, save_mask, save_mask_composite)."""
    mask_for_overlay = getattr(p, "mask_for_overlay", None)
    overlay = None
    if opts.overlay_inpaint and p.overlay_images is not None and index < len(p.overlay_images):
        overlay = p.overlay_images[index]
    if p.scripts is not None and hasattr(p.scripts, "postprocess_maskoverlay"):
        from modules import scripts

        args = scripts.PostProcessMaskOverlayArgs(index, mask_for_overlay, overlay)
        p.scripts.postprocess_maskoverlay(p, args)
        mask_for_overlay, overlay = args.mask_for_overlay, args.overlay_image
    corrections = p.color_corrections
    if overlay is None and mask_for_overlay is None and (corrections is None or index >= len(corrections)):
        return image

    save = p.save_samples()

    def save_variant(img: Image.Image, suffix: str) -> None:
        images.save_image(img, p.outpath_samples, "", p.seeds[index], p.prompts[index], opts.samples_format,
                          info=text, p=p, suffix=suffix)

    if corrections is not None and index < len(corrections):
        if save and opts.save_images_before_color_correction:
            save_variant(masking.apply_overlay(image, p.paste_to, overlay)[0], "-before-color-correction")
        image = color_correction.apply_color_correction(corrections[index], image)
    image, original_denoised_image = masking.apply_overlay(image, p.paste_to, overlay)
    if p.scripts is not None and hasattr(p.scripts, "postprocess_image_after_composite"):
        from modules import scripts

        pp = scripts.PostprocessImageArgs(image)
        p.scripts.postprocess_image_after_composite(p, pp)
        image = pp.image

    if mask_for_overlay is not None:
        if opts.return_mask or opts.save_mask:
            image_mask = mask_for_overlay.convert("RGB")
            if save and opts.save_mask:
                save_variant(image_mask, "-mask")
            if opts.return_mask:
                p.extra_result_images.append(image_mask)
        if opts.return_mask_composite or opts.save_mask_composite:
            mask = images_ops.resize_image(2, mask_for_overlay, image.width, image.height).convert("L")
            composite = Image.composite(original_denoised_image.convert("RGBA").convert("RGBa"),
                                        Image.new("RGBa", image.size), mask).convert("RGBA")
            if save and opts.save_mask_composite:
                save_variant(composite, "-mask-composite")
            if opts.return_mask_composite:
                p.extra_result_images.append(composite)
    return image
