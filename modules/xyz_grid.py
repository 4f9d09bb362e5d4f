"""X/Y/Z plot: A1111's axis types, their value syntax, and the grids (a1111-spec §8).

The "X/Y/Z plot" script (scripts/xyz_grid.py) is a thin UI over `run()`. Extensions find that script's module
by `script_class.__module__ == "xyz_grid.py"` and append their own `AxisOption`s to its `axis_options` list, so
the names A1111 exposes there (AxisOption, apply_field, apply_override, format_value, boolean_choice, ...) are
defined here and re-exported by the script.

Values: comma-separated (CSV quoting allowed); int axes also take `1-5`, `1-5 (+2)`, `10-1 (-3)`, `1-10 [5]`
(count, evenly spaced); float axes `0.1-1 (+0.2)` (inclusive arange) and `0-1 [5]`.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import os
import random
import re
from collections.abc import Callable, Sequence
from copy import copy
from typing import Any

import numpy as np
from PIL import Image

from modules import (
    errors,
    images,
    images_grid,
    processing,
    script_outputs,
    sd_models,
    sd_samplers,
    sd_schedulers,
    sd_vae,
    shared,
)
from modules.errors import UserError
from modules.shared import opts, state

log = logging.getLogger(__name__)

MAX_AXIS_VALUES = 10000

# -- applying a value to a processing object ------------------------------------------------------------------


def apply_field(field: str) -> Callable:
    def fun(p, x, xs):
        setattr(p, field, x)

    return fun


def apply_override(field: str, boolean: bool = False) -> Callable:
    """Set a setting for this cell only (`p.override_settings`); `boolean`: the value is "True"/"False"."""

    def fun(p, x, xs):
        if boolean:
            x = str(x).lower() == "true"
        p.override_settings[field] = x

    return fun


def apply_prompt(p, x: str, xs: Sequence[str]) -> None:
    """Prompt S/R: replace the first value (the search term) with this one in the prompt and negative prompt."""
    if xs[0] not in p.prompt and xs[0] not in p.negative_prompt:
        raise UserError(f"Prompt S/R did not find {xs[0]} in prompt or negative prompt.")
    p.prompt = p.prompt.replace(xs[0], x)
    p.negative_prompt = p.negative_prompt.replace(xs[0], x)


def apply_order(p, x: Sequence[str], xs) -> None:
    """Prompt order: put the terms of `x` back into the prompt in this order, at the places they were found."""
    found = sorted(((p.prompt.find(token), token) for token in x), key=lambda t: t[0])
    parts = []
    rest = p.prompt
    for _, token in found:
        n = rest.find(token)
        parts.append(rest[:n])
        rest = rest[n + len(token):]
    p.prompt = "".join(part + token for part, token in zip(parts, x, strict=True)) + rest


def confirm_samplers(p, xs) -> None:
    for x in xs:
        if x.lower() not in sd_samplers.samplers_map:
            raise UserError(f"Unknown sampler: {x}")


def apply_checkpoint(p, x: str, xs) -> None:
    info = sd_models.get_closet_checkpoint_match(x)
    if info is None:
        raise UserError(f"Unknown checkpoint: {x}")
    p.override_settings["sd_model_checkpoint"] = info.name


def confirm_checkpoints(p, xs) -> None:
    for x in xs:
        if sd_models.get_closet_checkpoint_match(x) is None:
            raise UserError(f"Unknown checkpoint: {x}")


def confirm_checkpoints_or_none(p, xs) -> None:
    for x in xs:
        if x in (None, "", "None", "none"):
            continue
        if sd_models.get_closet_checkpoint_match(x) is None:
            raise UserError(f"Unknown checkpoint: {x}")


def apply_size(p, x: str, xs) -> None:
    width, _, height = x.partition("x")
    try:
        p.width, p.height = int(width.strip()), int(height.strip())
    except ValueError:
        log.warning("Invalid size in XYZ plot: %s", x)  # A1111 keeps the size and goes on


def find_vae(name: str) -> str:
    name = name.strip().lower()
    if name in ("auto", "automatic"):
        return "Automatic"
    if name == "none":
        return "None"
    found = next((k for k in sd_vae.vae_dict if k.lower() == name), None)
    if found is None:
        log.warning("No VAE found for %s; using Automatic", name)
        return "Automatic"
    return found


def apply_vae(p, x: str, xs) -> None:
    p.override_settings["sd_vae"] = find_vae(x)


def apply_styles(p, x: str, _) -> None:
    p.styles.extend(s.strip() for s in x.split(","))


def apply_uni_pc_order(p, x: int, xs) -> None:
    p.override_settings["uni_pc_order"] = min(x, p.steps - 1)


def apply_face_restore(p, opt: str, x) -> None:
    opt = opt.lower()
    if opt == "codeformer":
        is_active = True
        p.face_restoration_model = "CodeFormer"
    elif opt == "gfpgan":
        is_active = True
        p.face_restoration_model = "GFPGAN"
    else:
        is_active = opt in ("true", "yes", "y", "1")
    p.restore_faces = is_active


def do_nothing(p, x, xs) -> None:
    pass


# -- labels -------------------------------------------------------------------------------------------------


def format_value_add_label(p, opt: AxisOption, x) -> str:
    if type(x) is float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_value(p, opt: AxisOption, x):
    if type(x) is float:
        x = round(x, 8)
    return x


def format_value_join_list(p, opt: AxisOption, x) -> str:
    return ", ".join(x)


def format_nothing(p, opt: AxisOption, x) -> str:
    return ""


def format_remove_path(p, opt: AxisOption, x) -> str:
    return os.path.basename(x)


def str_permutations(x):
    """Marker type of the "Prompt order" axis: its values are every permutation of the terms given."""
    return x


def boolean_choice(reverse: bool = False) -> Callable[[], list[str]]:
    def choice():
        return ["False", "True"] if reverse else ["True", "False"]

    return choice


# -- axis types ---------------------------------------------------------------------------------------------


class AxisOption:
    """One axis type: how its values parse (`type`), apply to a processing object and label the grid."""

    is_img2img: bool | None = None
    """None: on both tabs; True/False: img2img or txt2img only."""

    def __init__(self, label: str, type: Callable, apply: Callable, format_value: Callable = format_value_add_label,
                 confirm: Callable | None = None, cost: float = 0.0, choices: Callable[[], list] | None = None,
                 prepare: Callable[[str], list] | None = None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        """Axes that are slow to change (checkpoints) are iterated outermost."""
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    is_img2img = False


class AxisInfo:
    """An axis and its values while a plot runs (A1111: `shared.state.xyz_plot_x` ...)."""

    def __init__(self, axis: AxisOption, values: list):
        self.axis = axis
        self.values = values


def _checkpoint_names() -> list[str]:
    return sorted(sd_models.checkpoints_list, key=str.casefold)


def _hires_upscalers() -> list[str]:
    return [*shared.latent_upscale_modes, *[x.name for x in shared.sd_upscalers]]


def default_axis_options() -> list[AxisOption]:
    """A fresh list of A1111's axis types, in A1111's order: API callers select axes by index into it (after
    dropping the other tab's entries)."""
    return [
        AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
        AxisOption("Seed", int, apply_field("seed")),
        AxisOption("Var. seed", int, apply_field("subseed")),
        AxisOption("Var. strength", float, apply_field("subseed_strength")),
        AxisOption("Steps", int, apply_field("steps")),
        AxisOptionTxt2Img("Hires steps", int, apply_field("hr_second_pass_steps")),
        AxisOption("CFG Scale", float, apply_field("cfg_scale")),
        AxisOptionImg2Img("Image CFG Scale", float, apply_field("image_cfg_scale")),
        AxisOption("Prompt S/R", str, apply_prompt, format_value=format_value),
        AxisOption("Prompt order", str_permutations, apply_order, format_value=format_value_join_list),
        AxisOptionTxt2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value,
                          confirm=confirm_samplers, choices=sd_samplers.visible_sampler_names),
        AxisOptionTxt2Img("Hires sampler", str, apply_field("hr_sampler_name"), confirm=confirm_samplers,
                          choices=sd_samplers.visible_sampler_names),
        AxisOptionImg2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value,
                          confirm=confirm_samplers, choices=sd_samplers.visible_sampler_names),
        AxisOption("Checkpoint name", str, apply_checkpoint, format_value=format_remove_path,
                   confirm=confirm_checkpoints, cost=1.0, choices=_checkpoint_names),
        AxisOption("Negative Guidance minimum sigma", float, apply_field("s_min_uncond")),
        AxisOption("Sigma Churn", float, apply_field("s_churn")),
        AxisOption("Sigma min", float, apply_field("s_tmin")),
        AxisOption("Sigma max", float, apply_field("s_tmax")),
        AxisOption("Sigma noise", float, apply_field("s_noise")),
        AxisOption("Schedule type", str, apply_field("scheduler"),
                   choices=lambda: [x.label for x in sd_schedulers.schedulers]),
        AxisOption("Schedule min sigma", float, apply_override("sigma_min")),
        AxisOption("Schedule max sigma", float, apply_override("sigma_max")),
        AxisOption("Schedule rho", float, apply_override("rho")),
        AxisOption("Beta schedule alpha", float, apply_override("beta_dist_alpha")),
        AxisOption("Beta schedule beta", float, apply_override("beta_dist_beta")),
        AxisOption("Eta", float, apply_field("eta")),
        AxisOption("Clip skip", int, apply_override("CLIP_stop_at_last_layers")),
        AxisOption("Denoising", float, apply_field("denoising_strength")),
        AxisOption("Initial noise multiplier", float, apply_field("initial_noise_multiplier")),
        AxisOption("Extra noise", float, apply_override("img2img_extra_noise")),
        AxisOptionTxt2Img("Hires upscaler", str, apply_field("hr_upscaler"), choices=_hires_upscalers),
        AxisOptionImg2Img("Cond. Image Mask Weight", float, apply_field("inpainting_mask_weight")),
        AxisOption("VAE", str, apply_vae, cost=0.7, choices=lambda: ["Automatic", "None", *sd_vae.vae_dict]),
        AxisOption("Styles", str, apply_styles,
                   choices=lambda: list(shared.prompt_styles.styles) if shared.prompt_styles is not None else []),
        AxisOption("UniPC Order", int, apply_uni_pc_order, cost=0.5),
        AxisOption("Face restore", str, apply_face_restore, format_value=format_value),
        AxisOption("Token merging ratio", float, apply_override("token_merging_ratio")),
        AxisOption("Token merging ratio high-res", float, apply_override("token_merging_ratio_hr")),
        AxisOption("Always discard next-to-last sigma", str,
                   apply_override("always_discard_next_to_last_sigma", boolean=True),
                   choices=boolean_choice(reverse=True)),
        AxisOption("SGM noise multiplier", str, apply_override("sgm_noise_multiplier", boolean=True),
                   choices=boolean_choice(reverse=True)),
        AxisOption("Refiner checkpoint", str, apply_field("refiner_checkpoint"), format_value=format_remove_path,
                   confirm=confirm_checkpoints_or_none, cost=1.0, choices=lambda: ["None", *_checkpoint_names()]),
        AxisOption("Refiner switch at", float, apply_field("refiner_switch_at")),
        AxisOption("RNG source", str, apply_override("randn_source"), choices=lambda: ["GPU", "CPU", "NV"]),
        AxisOption("FP8 mode", str, apply_override("fp8_storage"), cost=0.9,
                   choices=lambda: ["Disable", "Enable for SDXL", "Enable"]),
        AxisOption("Size", str, apply_size),
    ]


def axis_options_for(options: Sequence[AxisOption], is_img2img: bool) -> list[AxisOption]:
    """The axes shown on one tab: common ones plus that tab's own."""
    return [x for x in options if getattr(x, "is_img2img", None) in (None, is_img2img)]


def resolve_axis(options: Sequence[AxisOption], selected: int | str | None, axis_name: str) -> AxisOption:
    """The dropdown sends an index; API callers may also name the axis type."""
    if selected is None or selected == "":
        return options[0]
    if isinstance(selected, str) and not selected.strip().lstrip("-").isdigit():
        for opt in options:
            if opt.label.lower() == selected.strip().lower():
                return opt
        raise UserError(f"X/Y/Z plot: {axis_name} type '{selected}' does not exist; choose one of "
                        f"{', '.join(o.label for o in options)}.")
    index = int(selected)
    if not 0 <= index < len(options):
        raise UserError(f"X/Y/Z plot: {axis_name} type {index} does not exist; give an index from 0 to "
                        f"{len(options) - 1} or a name such as 'Steps'.")
    return options[index]


# -- value syntax -------------------------------------------------------------------------------------------

_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
re_range = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(([+-]\d+)\s*\))?\s*")
re_range_count = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\[(\d+)\s*])?\s*")
re_range_float = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
re_range_count_float = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\[(\d+)\s*])?\s*")

RANGE_HELP = "a value, or a range such as 1-5, 1-5 (+2), 10-1 (-3) or 1-10 [5]"


def csv_string_to_list_strip(data_str: str) -> list[str]:
    """Comma-separated values (double quotes protect commas), each stripped."""
    return [x.strip() for x in itertools.chain.from_iterable(csv.reader(io.StringIO(data_str or ""),
                                                                        skipinitialspace=True))]


def list_to_csv_string(data_list: Sequence) -> str:
    with io.StringIO() as o:
        csv.writer(o).writerow(data_list)
        return o.getvalue().strip()


def _number(text: str, kind: Callable) -> Any:
    return kind(text.replace(" ", ""))


def _limit(count: int, label: str) -> None:
    """Refuse axes that would have more values than any grid could show (before making the list)."""
    if count > MAX_AXIS_VALUES:
        raise UserError(f"X/Y/Z plot: the {label} values would be {count}; at most {MAX_AXIS_VALUES} are allowed.")


def expand_int_values(values: Sequence, label: str = "axis") -> list:
    """Expand int ranges: `a-b` and `a-b (+s)` step (the end is included when the step lands on it: A1111's
    `range(a, b + 1, s)`), `a-b [n]` n values evenly spaced and truncated. Other entries pass through."""
    out: list = []
    for val in values:
        if not isinstance(val, str):
            out.append(val)
            continue
        if val.strip() == "":
            continue
        m = re_range.fullmatch(val)
        mc = re_range_count.fullmatch(val)
        if m is not None:
            start, end = _number(m.group(1), int), _number(m.group(2), int) + 1
            step = int(m.group(3)) if m.group(3) is not None else 1
            if step == 0:
                raise UserError(f"X/Y/Z plot: the step of the {label} range '{val}' must not be 0.")
            _limit(len(out) + len(range(start, end, step)), label)
            out += list(range(start, end, step))
        elif mc is not None:
            start, end = _number(mc.group(1), int), _number(mc.group(2), int)
            num = int(mc.group(3)) if mc.group(3) is not None else 1
            _limit(len(out) + num, label)
            out += [int(x) for x in np.linspace(start=start, stop=end, num=num).tolist()]
        else:
            out.append(val)
    return out


def expand_float_values(values: Sequence, label: str = "axis") -> list:
    """Expand float ranges: `a-b (+s)` is numpy's arange(a, b + s, s) (A1111: the end is usually included),
    `a-b` steps by 1, `a-b [n]` n values evenly spaced. Other entries pass through."""
    out: list = []
    for val in values:
        if not isinstance(val, str):
            out.append(val)
            continue
        if val.strip() == "":
            continue
        m = re_range_float.fullmatch(val)
        mc = re_range_count_float.fullmatch(val)
        if m is not None:
            start, end = _number(m.group(1), float), _number(m.group(2), float)
            step = float(m.group(3)) if m.group(3) is not None else 1.0
            if step == 0:
                raise UserError(f"X/Y/Z plot: the step of the {label} range '{val}' must not be 0.")
            _limit(len(out) + max(0, math.ceil((end + step - start) / step)), label)
            out += np.arange(start, end + step, step).tolist()
        elif mc is not None:
            start, end = _number(mc.group(1), float), _number(mc.group(2), float)
            num = int(mc.group(3)) if mc.group(3) is not None else 1
            _limit(len(out) + num, label)
            out += np.linspace(start=start, stop=end, num=num).tolist()
        else:
            out.append(val)
    return out


def parse_axis_values(opt: AxisOption, values_text: str, values_dropdown: Sequence | None = None,
                      csv_mode: bool = False, p: Any = None, axis_name: str = "X") -> list:
    """The values of one axis, expanded, typed and confirmed (A1111's rules).

    Axes with a fixed list of choices take the dropdown's values unless `csv_mode` ("Use text inputs instead of
    dropdowns"); an empty dropdown falls back to the text (what API callers usually send).
    """
    if opt.label == "Nothing":
        return [0]
    if opt.choices is not None and not csv_mode and values_dropdown:
        valslist = list(values_dropdown)
    elif opt.prepare is not None:
        valslist = opt.prepare(values_text)
    else:
        valslist = csv_string_to_list_strip(values_text)

    label = f"{axis_name} ({opt.label})"
    if opt.type is int:
        valslist = expand_int_values(valslist, label)
    elif opt.type is float:
        valslist = expand_float_values(valslist, label)
    elif opt.type is str_permutations:
        _limit(math.factorial(min(len(valslist), 10)), label)  # 10! is already far over the limit
        valslist = list(itertools.permutations(valslist))
    _limit(len(valslist), label)
    if not valslist:
        raise UserError(f"X/Y/Z plot: no values given for the {label} axis.")

    typed = []
    for x in valslist:
        try:
            typed.append(opt.type(x))
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number"}.get(opt.type, "a valid value")
            hint = f" ({RANGE_HELP})" if opt.type in (int, float) else ""
            raise UserError(f"X/Y/Z plot: '{x}' in the {label} values is not {kind}{hint}.") from None
    if opt.confirm:
        opt.confirm(p, typed)
    return typed


def fix_axis_seeds(opt: AxisOption, values: list) -> list:
    """Seed axes: -1 (or empty) becomes a fixed random seed, so every cell of that row/column shares it."""
    if opt.label in ("Seed", "Var. seed"):
        return [int(random.randrange(4294967294)) if v is None or v == "" or v == -1 else v for v in values]
    return values


def processing_order(x_cost: float, y_cost: float, z_cost: float) -> tuple[str, str]:
    """(outermost, middle) axis of the loops: the costliest axis changes least often (A1111's tie rules)."""
    first, second = "z", "y"
    if x_cost > y_cost and x_cost > z_cost:
        first, second = "x", ("y" if y_cost > z_cost else "z")
    elif y_cost > x_cost and y_cost > z_cost:
        first, second = "y", ("x" if x_cost > z_cost else "z")
    elif z_cost > x_cost and z_cost > y_cost:
        first, second = "z", ("x" if x_cost > y_cost else "y")
    return first, second


# -- the grid -----------------------------------------------------------------------------------------------


def draw_xyz_grid(p, xs, ys, zs, x_labels, y_labels, z_labels, cell: Callable, draw_legend: bool,
                  include_lone_images: bool, include_sub_grids: bool, first_axes_processed: str,
                  second_axes_processed: str, margin_size: int) -> processing.Processed:
    """Run `cell(x, y, z, ix, iy, iz)` for every combination and assemble the result as A1111 does.

    Result images: the Z grid (every X/Y sub-grid side by side, titled by Z), then the sub-grids, then each
    cell's first image (index x + y·|X| + z·|X|·|Y|). A failed cell is a black image of the cell size.
    """
    hor_texts = [[images_grid.GridAnnotation(x)] for x in x_labels]
    ver_texts = [[images_grid.GridAnnotation(y)] for y in y_labels]
    title_texts = [[images_grid.GridAnnotation(z)] for z in z_labels]
    list_size = len(xs) * len(ys) * len(zs)
    state.job_count = list_size * p.n_iter
    result: processing.Processed | None = None
    succeeded = 0

    def index(ix: int, iy: int, iz: int) -> int:
        return ix + iy * len(xs) + iz * len(xs) * len(ys)

    def process_cell(x, y, z, ix, iy, iz) -> None:
        nonlocal result, succeeded
        state.job = f"{index(ix, iy, iz) + 1} out of {list_size}"
        processed = cell(x, y, z, ix, iy, iz)
        if result is None:  # the first result holds everyone's images
            result = copy(processed)
            result.images = [None] * list_size
            result.all_prompts = [None] * list_size
            result.all_seeds = [None] * list_size
            result.infotexts = [None] * list_size
            result.index_of_first_image = 1
        idx = index(ix, iy, iz)
        if processed.images:
            succeeded += 1
            result.images[idx] = processed.images[0]
            result.all_prompts[idx] = processed.prompt
            result.all_seeds[idx] = processed.seed
            result.infotexts[idx] = processed.infotexts[0] if processed.infotexts else processed.info
        else:
            first = next((im for im in result.images if im is not None), None)
            size = first.size if first is not None else (result.width, result.height)
            result.images[idx] = Image.new(first.mode if first is not None else "RGB", size)

    axes = {"x": list(enumerate(xs)), "y": list(enumerate(ys)), "z": list(enumerate(zs))}
    third = ({"x", "y", "z"} - {first_axes_processed, second_axes_processed}).pop()
    for outer in axes[first_axes_processed]:
        for middle in axes[second_axes_processed]:
            for inner in axes[third]:
                picked = {first_axes_processed: outer, second_axes_processed: middle, third: inner}
                (ix, x), (iy, y), (iz, z) = picked["x"], picked["y"], picked["z"]
                process_cell(x, y, z, ix, iy, iz)

    if result is None or not succeeded:
        return processing.Processed(p, [])

    z_count = len(zs)
    per_grid = len(xs) * len(ys)
    for i in range(z_count):
        start = i * per_grid + i  # earlier sub-grids are already inserted before the cells
        cells = result.images[start:start + per_grid]
        grid = images_grid.image_grid(cells, rows=len(ys))
        if draw_legend:
            max_w, max_h = (max(sizes) for sizes in zip(*(im.size for im in cells), strict=True))
            grid = images_grid.draw_grid_annotations(grid, max_w, max_h, hor_texts, ver_texts, margin_size)
        result.images.insert(i, grid)
        result.all_prompts.insert(i, result.all_prompts[start])
        result.all_seeds.insert(i, result.all_seeds[start])
        result.infotexts.insert(i, result.infotexts[start])

    sub_grids = result.images[:z_count]
    z_grid = images_grid.image_grid(sub_grids, rows=1)
    if draw_legend:
        max_w, max_h = (max(sizes) for sizes in zip(*(im.size for im in sub_grids), strict=True))
        z_grid = images_grid.draw_grid_annotations(z_grid, max_w, max_h, title_texts,
                                                   [[images_grid.GridAnnotation()]])
    result.images.insert(0, z_grid)
    # As A1111: the Z grid has an infotext of its own but shares prompts/seeds lists with the first sub-grid.
    result.infotexts.insert(0, result.infotexts[0])
    return result


def _restore_settings(snapshot: dict[str, Any], keep: set[str]) -> None:
    """Put back every setting a cell changed (one model reload at the end, not one per cell)."""
    changed = {k: v for k, v in snapshot.items() if k not in keep and opts.data.get(k) != v}
    if changed:
        processing.restore_settings(changed)


def run(p, axis_options: Sequence[AxisOption], axes: Sequence[tuple[Any, str, Sequence | None]], *,
        draw_legend: bool = True, include_lone_images: bool = False, include_sub_grids: bool = False,
        no_fixed_seeds: bool = False, vary_seeds: Sequence[bool] = (False, False, False), margin_size: int = 0,
        csv_mode: bool = False, title: str = "X/Y/Z plot") -> processing.Processed:
    """Run an X/Y/Z plot: `axes` are three (type index or name, values text, dropdown values) for X, Y, Z."""
    save = script_outputs.prepare(p)
    if not no_fixed_seeds:
        processing.fix_seed(p)
    if not opts.return_grid:
        p.batch_size = 1

    opts_xyz = []
    values_text = []
    values_list = []
    for name, (selected, text, dropdown) in zip("XYZ", axes, strict=True):
        opt = resolve_axis(axis_options, selected, name)
        if opt.choices is not None and not csv_mode and dropdown:
            text = list_to_csv_string(dropdown)
        vals = parse_axis_values(opt, text or "", dropdown, csv_mode, p, name)
        if not no_fixed_seeds:
            vals = fix_axis_seeds(opt, vals)
        opts_xyz.append(opt)
        values_text.append(text or "")
        values_list.append(vals)
    x_opt, y_opt, z_opt = opts_xyz
    xs, ys, zs = values_list
    vary_x, vary_y, vary_z = (bool(v) for v in vary_seeds)

    grid_mp = round(len(xs) * len(ys) * len(zs) * p.width * p.height / 1000000)
    if grid_mp >= opts.img_max_size_mp:
        raise UserError(f"Error: Resulting grid would be too large ({grid_mp} MPixels) (max configured size is "
                        f"{opts.img_max_size_mp} MPixels)")

    count = len(xs) * len(ys) * len(zs)
    total_steps = _total_steps(p, opts_xyz, values_list)
    per_cell = p.n_iter * p.batch_size
    log.info("X/Y/Z plot will create %d images on %d %dx%d grid%s%s. (Total steps to process: %d)",
             count * per_cell, len(zs), len(xs), len(ys), "s" if len(zs) > 1 else "",
             f"; {per_cell} images per cell" if per_cell > 1 else "", total_steps)
    state.xyz_plot_x, state.xyz_plot_y, state.xyz_plot_z = AxisInfo(x_opt, xs), AxisInfo(y_opt, ys), AxisInfo(z_opt, zs)
    first, second = processing_order(x_opt.cost, y_opt.cost, z_opt.cost)

    grid_infotext: list[str | None] = [None] * (1 + len(zs))
    errors_seen: list[BaseException] = []

    def axis_params(pc, axis_name: str, opt: AxisOption, text: str, vals: list) -> None:
        if opt.label == "Nothing":
            return
        pc.extra_generation_params[f"{axis_name} Type"] = opt.label
        pc.extra_generation_params[f"{axis_name} Values"] = text
        if opt.label in ("Seed", "Var. seed") and not no_fixed_seeds:
            pc.extra_generation_params[f"Fixed {axis_name} Values"] = ", ".join(str(v) for v in vals)

    def cell(x, y, z, ix, iy, iz) -> processing.Processed:
        if state.interrupted or state.stopping_generation:
            return processing.Processed(p, [], p.seed, "")
        pc = copy(p)
        pc.styles = list(pc.styles)
        pc.override_settings = dict(pc.override_settings)
        pc.override_settings_restore_afterwards = False  # restored once after the plot
        pc.extra_generation_params = dict(pc.extra_generation_params)
        try:
            x_opt.apply(pc, x, xs)
            y_opt.apply(pc, y, ys)
            z_opt.apply(pc, z, zs)
            xdim = len(xs) if vary_x else 1
            ydim = len(ys) if vary_y else 1
            if vary_x:
                pc.seed += ix
            if vary_y:
                pc.seed += iy * xdim
            if vary_z:
                pc.seed += iz * xdim * ydim
            res = processing.process_images(pc)
        except Exception as e:
            errors.display(e, "generating image for xyz plot")
            errors_seen.append(e)
            return processing.Processed(p, [], p.seed, "")

        if grid_infotext[1 + iz] is None and ix == 0 and iy == 0:
            pc.extra_generation_params = dict(pc.extra_generation_params)
            pc.extra_generation_params["Script"] = title
            axis_params(pc, "X", x_opt, values_text[0], xs)
            axis_params(pc, "Y", y_opt, values_text[1], ys)
            grid_infotext[1 + iz] = processing.create_infotext(pc, pc.all_prompts, pc.all_seeds, pc.all_subseeds)
        if grid_infotext[0] is None and ix == 0 and iy == 0 and iz == 0:
            pc.extra_generation_params = dict(pc.extra_generation_params)
            axis_params(pc, "Z", z_opt, values_text[2], zs)
            grid_infotext[0] = processing.create_infotext(pc, pc.all_prompts, pc.all_seeds, pc.all_subseeds)
        return res

    snapshot = dict(opts.data)
    keep = set(p.override_settings) if not p.override_settings_restore_afterwards else set()
    try:
        processed = draw_xyz_grid(
            p, xs=xs, ys=ys, zs=zs,
            x_labels=[x_opt.format_value(p, x_opt, x) for x in xs],
            y_labels=[y_opt.format_value(p, y_opt, y) for y in ys],
            z_labels=[z_opt.format_value(p, z_opt, z) for z in zs],
            cell=cell, draw_legend=draw_legend, include_lone_images=include_lone_images,
            include_sub_grids=include_sub_grids, first_axes_processed=first, second_axes_processed=second,
            margin_size=margin_size,
        )
    finally:
        _restore_settings(snapshot, keep)

    if not processed.images:
        if errors_seen:
            raise errors_seen[0]
        return processed

    z_count = len(zs)
    for i, text in enumerate(grid_infotext):
        if text is not None:
            processed.infotexts[i] = text
    if not include_lone_images:
        processed.images = processed.images[:z_count + 1]
        processed.infotexts = processed.infotexts[:z_count + 1]  # A1111 keeps the cells' texts: misaligned

    if save.grid:
        grid_count = z_count + 1 if z_count > 1 else 1
        for g in range(grid_count):
            adj = g - 1 if g > 0 else g  # the Z grid shares its prompt/seed entries with the first sub-grid
            images.save_image(processed.images[g], p.outpath_grids, "xyz_grid", info=processed.infotexts[g],
                              extension=opts.grid_format, prompt=processed.all_prompts[adj],
                              seed=processed.all_seeds[adj], grid=True, p=p)
            if not include_sub_grids:
                break

    if not include_sub_grids:
        for _ in range(z_count):
            del processed.images[1]
            del processed.all_prompts[1]
            del processed.all_seeds[1]
            del processed.infotexts[1]
    return processed


def _total_steps(p, axis_opts: Sequence[AxisOption], values: Sequence[list]) -> int:
    """Sampling steps of the whole plot (for progress), as A1111 counts them."""
    sizes = [len(v) for v in values]

    def over(label: str, default: int) -> int:
        for i, opt in enumerate(axis_opts):
            if opt.label == label:
                others = [s for j, s in enumerate(sizes) if j != i]
                return sum(values[i]) * others[0] * others[1]
        return default

    cells = sizes[0] * sizes[1] * sizes[2]
    total = over("Steps", p.steps * cells)
    if isinstance(p, processing.StableDiffusionProcessingTxt2Img) and p.enable_hr:
        hires = over("Hires steps", -1)
        if hires >= 0:
            total += hires
        elif p.hr_second_pass_steps:
            total += p.hr_second_pass_steps * cells
        else:
            total *= 2
    return total * p.n_iter
