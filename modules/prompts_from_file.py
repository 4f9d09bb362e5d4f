"""Prompts from file or textbox: one job per non-empty line (a1111-spec §8).

A line containing `--` is read shell-style as options, e.g.
`--prompt "a cat" --negative_prompt blurry, low quality --steps 30 --seed 5 --restore_faces true`. `--prompt` and
`--negative_prompt` take every word up to the next `--option`; the others take one value of the type A1111 gives
them (booleans are true only for the word `true`). A line whose options cannot be read is used as a plain prompt,
as in A1111 (the problem is logged). The line's prompt joins the UI prompt at its start or end.
"""

from __future__ import annotations

import copy
import logging
import random
import shlex
from collections.abc import Callable
from typing import Any

from modules import processing, sd_models, sd_samplers
from modules.errors import UserError
from modules.shared import state

log = logging.getLogger(__name__)


def _model(tag: str) -> str:
    info = sd_models.get_closet_checkpoint_match(tag)
    if info is None:
        raise UserError(f"Unknown checkpoint: {tag}")
    return info.name


def _string(tag: str) -> str:
    return tag


def _styles(tag: str) -> list[str]:
    # A1111 stores the raw string (so a style name is applied letter by letter); a list is what p.styles holds.
    return [s.strip() for s in tag.split(",") if s.strip()]


def _int(tag: str) -> int:
    return int(tag)


def _float(tag: str) -> float:
    return float(tag)


def _boolean(tag: str) -> bool:
    return tag == "true"


def _sampler(tag: str) -> str | None:
    name = sd_samplers.samplers_map.get(tag.lower())
    if name is None:
        log.warning("Prompts from file: unknown sampler %r; using the default", tag)
    return name


prompt_tags: dict[str, Callable[[str], Any]] = {
    "sd_model": _model,
    "outpath_samples": _string,
    "outpath_grids": _string,
    "prompt_for_display": _string,
    "prompt": _string,
    "negative_prompt": _string,
    "styles": _styles,
    "seed": _int,
    "subseed_strength": _float,
    "subseed": _int,
    "seed_resize_from_h": _int,
    "seed_resize_from_w": _int,
    "sampler_index": _int,
    "sampler_name": _sampler,
    "batch_size": _int,
    "n_iter": _int,
    "steps": _int,
    "cfg_scale": _float,
    "width": _int,
    "height": _int,
    "restore_faces": _boolean,
    "tiling": _boolean,
    "do_not_save_samples": _boolean,
    "do_not_save_grid": _boolean,
}
MULTI_WORD = ("prompt", "negative_prompt")


def cmdargs(line: str) -> dict[str, Any]:
    """The options of one line; UserError naming the problem (unknown option, missing or bad value)."""
    try:
        args = shlex.split(line)
    except ValueError as e:
        raise UserError(f"cannot split the line into words ({e})") from e
    pos = 0
    res: dict[str, Any] = {}
    while pos < len(args):
        arg = args[pos]
        if not arg.startswith("--"):
            raise UserError(f'must start with "--": {arg}')
        if pos + 1 >= len(args):
            raise UserError(f"missing argument for command line option {arg}")
        tag = arg[2:]
        if tag in MULTI_WORD:
            pos += 1
            words = [args[pos]]
            pos += 1
            while pos < len(args) and not args[pos].startswith("--"):
                words.append(args[pos])
                pos += 1
            res[tag] = " ".join(words)
            continue
        func = prompt_tags.get(tag)
        if func is None:
            raise UserError(f"unknown commandline option: {arg}")
        try:
            res[tag] = func(args[pos + 1])
        except ValueError as e:
            raise UserError(f"bad value {args[pos + 1]!r} for {arg} ({e})") from e
        pos += 2
    return res


def parse_lines(text: str) -> list[dict[str, Any]]:
    """One job (dict of processing fields) per non-empty line."""
    jobs = []
    for line in (x.strip() for x in (text or "").splitlines()):
        if not line:
            continue
        if "--" in line:
            try:
                jobs.append(cmdargs(line))
            except UserError as e:
                log.warning("Error parsing line %s as commandline: %s; using it as the prompt", line, e)
                jobs.append({"prompt": line})
        else:
            jobs.append({"prompt": line})
    return jobs


def run(p: processing.StableDiffusionProcessing, checkbox_iterate: bool = False, checkbox_iterate_batch: bool = False,
        prompt_position: str = "start", prompt_txt: str = "") -> processing.Processed:
    jobs = parse_lines(prompt_txt)
    p.do_not_save_grid = True
    job_count = sum(job.get("n_iter", p.n_iter) for job in jobs)
    log.info("Will process %d lines in %d jobs.", len(jobs), job_count)
    if (checkbox_iterate or checkbox_iterate_batch) and p.seed == -1:
        p.seed = int(random.randrange(4294967294))
    state.job_count = job_count

    images = []
    all_prompts: list[str] = []
    infotexts: list[str] = []
    for args in jobs:
        state.job = f"{state.job_no + 1} out of {state.job_count}"
        copy_p = copy.copy(p)
        copy_p.override_settings = dict(p.override_settings)
        copy_p.extra_generation_params = dict(p.extra_generation_params)
        for k, v in args.items():
            if k == "sd_model":
                copy_p.override_settings["sd_model_checkpoint"] = v
            else:
                setattr(copy_p, k, v)
        for field in MULTI_WORD:
            line_text, ui_text = args.get(field), getattr(p, field)
            if line_text and ui_text:
                both = (line_text, ui_text) if prompt_position == "start" else (ui_text, line_text)
                setattr(copy_p, field, " ".join(both))
        proc = processing.process_images(copy_p)
        images += proc.images
        if checkbox_iterate:
            p.seed = p.seed + (p.batch_size * p.n_iter)
        all_prompts += proc.all_prompts
        infotexts += proc.infotexts
        if state.interrupted or state.stopping_generation:
            break
    return processing.Processed(p, images, p.seed, "", all_prompts=all_prompts, infotexts=infotexts)
