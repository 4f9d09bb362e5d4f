"""Infotext: the generation-parameters text stored in images ("Steps: 20, Sampler: Euler a, ...").

`create_infotext` writes it from a processing object, `parse_generation_parameters` reads it back into a dict
(A1111 v1.10.1 behaviour, reference spec §6). The paste registry that maps its labels to UI fields and
settings lives in `modules.infotext_paste` and is importable from here, as in A1111.
Pure code: settings come in as an `opts` object (attribute access to A1111 setting keys).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from modules import errors, infotext_versions, sd_samplers
from modules.infotext_paste import (  # noqa: F401  (A1111 names, importable from here)
    ParamBinding,
    PasteField,
    add_paste_fields,
    create_override_settings_dict,
    get_override_settings,
    infotext_to_setting_name_mapping,
    paste_fields,
    register_paste_params_button,
    registered_param_bindings,
    reset,
)
from modules.options import current_opts

log = logging.getLogger(__name__)

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")

# Settings `parse_generation_parameters` reads, with A1111's defaults for when no `opts` is given.
_PARSE_DEFAULTS = {
    "infotext_styles": "Apply if any",
    "auto_backcompat": True,
    "use_old_hires_fix_width_height": False,
    "infotext_skip_pasting": [],
}


class StyleExtractor(Protocol):
    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]: ...


def quote(text: Any) -> Any:
    """An infotext value: unchanged, or a JSON string if it holds ``,``, ``:`` or a newline."""
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """Undo `quote`: JSON-decode a ``"..."`` value; anything else (or invalid JSON) is returned as is."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


# Emphasis detection needs the prompt-attention weights (parity README §2): the same segments as
# prompt_parser.parse_prompt_attention before merging, kept here so infotext does not depend on the prompt parser.
_re_attention = re.compile(
    r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:",
)
_re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def _attention_weights(text: str) -> list[tuple[str, float]]:
    """``(segment, weight)`` pairs of a prompt, before merging equal neighbours; BREAK markers have weight -1."""
    res: list[list[Any]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for segment in res[start:]:
            segment[1] *= multiplier

    for m in _re_attention.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_brackets.append(len(res))
        elif token == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_re_break.split(token)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)

    return [(segment, weight) for segment, weight in res]


def _uses_emphasis(*prompts: str) -> bool:
    return any(weight != 1.0 and text != "BREAK" for prompt in prompts for text, weight in _attention_weights(prompt))


def old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """First-pass size of the pre-1.0 hires fix: about 512x512 pixels, sides rounded up to multiples of 64."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def restore_old_hires_fix_params(res: dict[str, Any], *, use_old_hires_fix_width_height: bool = False) -> None:
    """Turn an old ``First pass size`` infotext into today's Size + Hires resize fields (in place)."""
    if use_old_hires_fix_width_height:
        hires_width = int(res.get("Hires resize-1", 0))
        hires_height = int(res.get("Hires resize-2", 0))
        if hires_width and hires_height:
            res["Size-1"] = hires_width
            res["Size-2"] = hires_height
            return

    firstpass_width = res.get("First pass size-1")
    firstpass_height = res.get("First pass size-2")
    if firstpass_width is None or firstpass_height is None:
        return

    firstpass_width, firstpass_height = int(firstpass_width), int(firstpass_height)
    width = int(res.get("Size-1", 512))
    height = int(res.get("Size-2", 512))

    if firstpass_width == 0 or firstpass_height == 0:
        firstpass_width, firstpass_height = old_hires_fix_first_pass_dimensions(width, height)

    res["Size-1"] = firstpass_width
    res["Size-2"] = firstpass_height
    res["Hires resize-1"] = width
    res["Hires resize-2"] = height


def _split_prompt_lines(lines: Iterable[str]) -> tuple[str, str]:
    # String accumulation, not "\n".join: A1111 drops empty lines at the start of either prompt.
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[len("Negative prompt:") :].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    return prompt, negative_prompt


def _extract_styles(
    res: dict[str, Any], prompt: str, negative_prompt: str, styles: StyleExtractor, mode: str
) -> tuple[str, str]:
    found, prompt_no_styles, negative_no_styles = styles.extract_styles_from_prompt(prompt, negative_prompt)

    same_hr_styles = True
    if "Hires prompt" in res or "Hires negative prompt" in res:
        version = infotext_versions.parse_version(res.get("Version"))
        if version is None or version > infotext_versions.v180_hr_styles:
            hr_prompt = res.get("Hires prompt", prompt)
            hr_negative = res.get("Hires negative prompt", negative_prompt)
            hr_found, hr_prompt_no_styles, hr_negative_no_styles = styles.extract_styles_from_prompt(
                hr_prompt, hr_negative
            )
            same_hr_styles = found == hr_found
            if same_hr_styles:
                res["Hires prompt"] = "" if hr_prompt_no_styles == prompt_no_styles else hr_prompt_no_styles
                res["Hires negative prompt"] = (
                    "" if hr_negative_no_styles == negative_no_styles else hr_negative_no_styles
                )

    if not same_hr_styles:
        return prompt, negative_prompt

    if (mode == "Apply if any" and found) or mode == "Apply":
        res["Styles array"] = found
    return prompt_no_styles, negative_no_styles


# Filled in when missing, in this order (A1111 adds them between the prompt and the old-hires-fix conversion).
_DEFAULTS_BEFORE_HIRES_FIX: tuple[tuple[str, Any], ...] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
_DEFAULTS_AFTER_HIRES_FIX: tuple[tuple[str, Any], ...] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)


def parse_generation_parameters(
    x: str,
    skip_fields: Sequence[str] | None = None,
    *,
    opts: Any = None,
    styles: StyleExtractor | None = None,
) -> dict[str, Any]:
    """Parse an infotext into ``{label: value}`` (values are strings except the defaults A1111 adds).

    `skip_fields` defaults to the ``infotext_skip_pasting`` setting. With a style database in `styles`, style
    texts found in the prompts are removed and listed in ``Styles array`` (setting ``infotext_styles``).
    Raises ValueError for a prompt whose emphasis weight is not a number, e.g. ``(a:1.2.3)`` (as A1111).
    """

    def setting(key: str) -> Any:
        return getattr(opts, key) if opts is not None else _PARSE_DEFAULTS[key]

    if skip_fields is None:
        skip_fields = setting("infotext_skip_pasting")

    res: dict[str, Any] = {}

    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""

    prompt, negative_prompt = _split_prompt_lines(lines)

    for k, v in re_param.findall(lastline):
        if not v:
            log.debug('Infotext field "%s" has no value; ignored', k)
            continue
        if v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"] = m.group(1)
            res[f"{k}-2"] = m.group(2)
        else:
            res[k] = v

    styles_mode = setting("infotext_styles")
    if styles is not None and styles_mode != "Ignore":
        prompt, negative_prompt = _extract_styles(res, prompt, negative_prompt, styles, styles_mode)

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt

    # A missing Clip skip means the default, 1.
    res.setdefault("Clip skip", "1")

    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] += f"<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"

    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, value in _DEFAULTS_BEFORE_HIRES_FIX:
        res.setdefault(key, value)

    restore_old_hires_fix_params(res, use_old_hires_fix_width_height=setting("use_old_hires_fix_width_height"))

    for key, value in _DEFAULTS_AFTER_HIRES_FIX:
        res.setdefault(key, value)
    if res["FP8 weight"] != "Disable":
        res.setdefault("Cache FP16 weight for LoRA", False)

    if "Emphasis" not in res and _uses_emphasis(prompt, negative_prompt):
        res["Emphasis"] = "Original"

    res.setdefault("Refiner switch by sampling steps", False)

    infotext_versions.backcompat(res, auto_backcompat=setting("auto_backcompat"))

    for key in skip_fields:
        res.pop(key, None)

    return res


def _token_merging_ratio(p: Any, opts: Any, *, for_hr: bool = False) -> float:
    if hasattr(p, "get_token_merging_ratio"):
        return p.get_token_merging_ratio(for_hr=for_hr)
    if for_hr:
        return (
            p.token_merging_ratio_hr or opts.token_merging_ratio_hr or p.token_merging_ratio or opts.token_merging_ratio
        )
    return p.token_merging_ratio or opts.token_merging_ratio


def _uses_ensd(p: Any, opts: Any) -> bool:
    """Whether ENSD changes this generation: a sampler that draws ancestral noise, with eta not 0."""
    if opts.eta_noise_seed_delta == 0:
        return False
    eta = getattr(p, "eta", None)
    sampler = getattr(p, "sampler", None)
    if eta is None and sampler is not None:
        eta = getattr(sampler, "eta", None)
    if eta == 0:
        return False
    config = sd_samplers.all_samplers_map.get(p.sampler_name)
    return config is not None and bool(config.options.get("uses_ensd"))


def create_infotext(
    p: Any,
    all_prompts: Sequence[str],
    all_seeds: Sequence[int],
    all_subseeds: Sequence[int],
    comments: Any = None,
    iteration: int = 0,
    position_in_batch: int = 0,
    use_main_prompt: bool = False,
    index: int | None = None,
    all_negative_prompts: Sequence[str] | None = None,
    *,
    opts: Any = None,
    program_version: str,
    fp8: bool = False,
) -> str:
    """The infotext of one image of a generation (reference spec §6.1).

    `p` is a processing object (duck-typed); `fp8` says whether the model runs with FP8 weights.
    ``p.extra_generation_params`` values may be lists (one per image) or callables taking keyword arguments.
    """
    opts = opts if opts is not None else current_opts()
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size

    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts

    clip_skip = getattr(p, "clip_skip", opts.CLIP_stop_at_last_layers)
    enable_hr = getattr(p, "enable_hr", False)
    token_merging_ratio = _token_merging_ratio(p, opts)
    token_merging_ratio_hr = _token_merging_ratio(p, opts, for_hr=True)

    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index]

    variation = p.subseed_strength != 0
    generation_params: dict[str, Any] = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler,
        "CFG scale": p.cfg_scale,
        "Image CFG scale": getattr(p, "image_cfg_scale", None),
        "Seed": p.all_seeds[0] if use_main_prompt else all_seeds[index],
        "Face restoration": opts.face_restoration_model if p.restore_faces else None,
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if opts.add_model_hash_to_info else None,
        "Model": p.sd_model_name if opts.add_model_name_to_info else None,
        "FP8 weight": opts.fp8_storage if fp8 else None,
        "Cache FP16 weight for LoRA": opts.cache_fp16_weight if fp8 else None,
        "VAE hash": p.sd_vae_hash if opts.add_vae_hash_to_info else None,
        "VAE": p.sd_vae_name if opts.add_vae_name_to_info else None,
        "Variation seed": (p.all_subseeds[0] if use_main_prompt else all_subseeds[index]) if variation else None,
        "Variation seed strength": p.subseed_strength if variation else None,
        "Seed resize from": (
            f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
            if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0
            else None
        ),
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        "Conditional mask weight": (
            getattr(p, "inpainting_mask_weight", opts.inpainting_mask_weight)
            if p.is_using_inpainting_conditioning
            else None
        ),
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "ENSD": opts.eta_noise_seed_delta if _uses_ensd(p, opts) else None,
        "Token merging ratio": None if token_merging_ratio == 0 else token_merging_ratio,
        "Token merging ratio hr": None if not enable_hr or token_merging_ratio_hr == 0 else token_merging_ratio_hr,
        "Init image hash": getattr(p, "init_img_hash", None),
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
        **p.extra_generation_params,
        "Version": program_version if opts.add_version_to_infotext else None,
        "User": p.user if opts.add_user_name_to_info else None,
    }

    # What a callable value may ask for (A1111 passes its local variables).
    context = {
        "p": p,
        "all_prompts": all_prompts,
        "all_seeds": all_seeds,
        "all_subseeds": all_subseeds,
        "comments": comments,
        "iteration": iteration,
        "position_in_batch": position_in_batch,
        "use_main_prompt": use_main_prompt,
        "index": index,
        "all_negative_prompts": all_negative_prompts,
        "prompt_text": prompt_text,
        "negative_prompt": negative_prompt,
        "generation_params": generation_params,
    }
    for key, value in generation_params.items():
        try:
            if isinstance(value, list):
                generation_params[key] = value[index]
            elif callable(value):
                generation_params[key] = value(**context)
        except Exception:
            errors.report(f'Error creating infotext for key "{key}"', exc_info=True)
            generation_params[key] = None

    params_text = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in generation_params.items() if v is not None)
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""

    return f"{prompt_text}{negative_prompt_text}\n{params_text}".strip()


# ---- A1111's "Send to" helpers, which extensions call from here; the page's code is modules/ui_infotext.py ----

def create_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """"Send to <tab>" buttons (build-time, inside a gr.Blocks)."""
    from modules import ui_infotext

    return ui_infotext.create_buttons(tabs_list)


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    from modules import ui_infotext

    ui_infotext.bind_buttons(buttons, send_image, send_generate_info)


def connect_paste_params_buttons() -> None:
    from modules import ui_infotext

    ui_infotext.connect_paste_params_buttons()
